#!/bin/bash
# Paired A/B of resumed and full handshakes: archserve.before vs archserve.after (async, one worker),
# interleaved, 3 rounds; server CPU from /proc/PID/stat (utime+stime) per connection.
cd /tmp/tlsdev
L=/tmp/tlsdev/archserve.after
tick=$(getconf CLK_TCK)
cpu() { awk -v t=$tick '{print ($14+$15)/t}' /proc/$1/stat; }
echo "round,binary,mode,conn_per_s,server_cpu_us_per_conn,resumed,full"
for r in 1 2 3; do
 for b in before after; do
  ./archserve.$b serve --root www --port 18950 --arch async --tls-cert cert.pem --tls-key key.pem --log-level error > /dev/null 2>&1 &
  sp=$!; sleep 0.5
  for mode in resumed full; do
   flag=""; [ $mode = full ] && flag="--no-resume"
   $L load -q $flag --cacert cert.pem --no-keepalive -c 8 -t 1 -d 0.5s https://localhost:18950/index.html > /dev/null
   c0=$(cpu $sp)
   out=$($L load -q --json $flag --cacert cert.pem --no-keepalive -c 8 -t 1 -d 3s https://localhost:18950/index.html)
   c1=$(cpu $sp)
   echo "$out" | python3 -c "
import json,sys; r=json.load(sys.stdin); n=r['responses']
print(f\"$r,$b,$mode,{r['requests_per_s']:.0f},{($c1-$c0)*1e6/max(n,1):.1f},{r['tls']['resumed']},{r['tls']['full']}\")"
  done
  kill $sp; wait $sp 2>/dev/null
 done
done
