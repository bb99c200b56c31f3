#!/bin/bash
# Paired, interleaved A/B: archserve (hybrid, 2 workers) vs nginx (2 workers), same cert and files.
B=/work/wt-tls/target/release/archserve
cd /tmp/tlst
cpu() { # total utime+stime ticks of pids given
  local t=0; for p in "$@"; do for s in /proc/$p/task/*/stat; do :; done; read -r -a f < /proc/$p/stat; t=$((t+f[13]+f[14])); done; echo $t; }
pids_of() { if [ "$1" = nginx ]; then pgrep -f "nginx: worker"; else pgrep -f "archserve serve --arch hybrid"; fi; }
echo "round,server,workload,value,unit"
for round in 1 2 3; do
 for srv in archserve nginx; do
  if [ $srv = archserve ]; then port=18443; else port=19443; fi
  pids=$(pids_of $srv)
  c0=$(cpu $pids); out=$(h2load --h1 -c 16 -n 30000 https://localhost:$port/small.txt 2>&1); c1=$(cpu $pids)
  ok=$(echo "$out" | awk '/^requests:/{print $8}')
  echo "$round,$srv,keepalive_small_cpu_us_per_req,$(echo "scale=2; ($c1-$c0)*10000/$ok" | bc),us"
  echo "$round,$srv,keepalive_small_req_per_s,$(echo "$out" | awk '/^finished in/{print $4}'),req/s"
  out=$(h2load --h1 -c 4 -n 300 https://localhost:$port/1m.bin 2>&1)
  echo "$round,$srv,1mib_throughput,$(echo "$out" | awk '/^finished in/{print $6}'),$(echo "$out" | awk '/^finished in/{print $7}')"
  n=$(timeout 10 openssl s_time -connect 127.0.0.1:$port -new -time 4 2>/dev/null | awk '/real seconds/{printf "%.1f", $1/$4; exit}')
  echo "$round,$srv,full_handshakes_per_s_1client,$n,conn/s"
  n=$(timeout 10 openssl s_time -connect 127.0.0.1:$port -reuse -time 4 2>/dev/null | awk '/real seconds/{printf "%.1f", $1/$4; exit}')
  echo "$round,$srv,resumed_handshakes_per_s_1client,$n,conn/s"
 done
done
