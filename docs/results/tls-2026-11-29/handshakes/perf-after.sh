#!/bin/bash
# perf profile of the server (async, one worker) under resumed handshakes: archserve.after.
cd /tmp/tlsdev
L=/tmp/tlsdev/archserve.after
./archserve.after serve --root www --port 18951 --arch async --tls-cert cert.pem --tls-key key.pem --log-level error > /dev/null 2>&1 &
sp=$!; sleep 0.5
$L load -q --cacert cert.pem --no-keepalive -c 8 -t 1 -d 1s https://localhost:18951/index.html > /dev/null
perf record -F 2000 -g -p $sp -o perf.resumed.after.data -- sleep 4 > /dev/null 2>&1 &
$L load -q --cacert cert.pem --no-keepalive -c 8 -t 1 -d 4s https://localhost:18951/index.html | grep -E 'throughput|tls '
wait %2 2>/dev/null; sleep 0.5
kill $sp
perf report -i perf.resumed.after.data --no-children --percent-limit 0.8 --stdio -g none 2>/dev/null | grep -v "^$" | cut -c1-140 > perf-resumed-after.txt
perf stat -e syscalls:sys_enter_writev -p 0 true 2>/dev/null
