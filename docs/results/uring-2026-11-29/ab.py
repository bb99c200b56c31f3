#!/usr/bin/env python3
"""Paired A/B rounds for the `uring` architecture: keep-alive small file (server CPU µs per
request and req/s), connection per request, 1 MiB file. Servers run one after another in each
round, in a rotated order, so drift (other work on the machine) spreads over all of them.
Server CPU = utime+stime of every process in the server's process group (/proc/PID/stat),
before and after the h2load run.

usage: ab.py BIN ROOT ROUNDS WORKLOAD [SERVER...]   (servers: uring async hybrid lighttpd)
prints CSV: round,server,workload,requests,seconds,req_per_s,cpu_us_per_req"""
import os, re, signal, subprocess, sys, tempfile, time

BIN, ROOT, ROUNDS, WORKLOAD = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
SERVERS = sys.argv[5:] or ["uring", "async", "hybrid", "lighttpd"]
TCK = os.sysconf("SC_CLK_TCK")
LOADS = {
    "keepalive": (["-c64", "-n300000"], "/index.html"),
    "connclose": (["-c64", "-n60000", "-H", "Connection: close"], "/index.html"),
    "big": (["-c4", "-n3000"], "/big.bin"),
}


def group_cpu(pgid):
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TCK


def start(server, port):
    if server == "lighttpd":
        d = tempfile.mkdtemp()
        conf = os.path.join(d, "l.conf")
        with open(conf, "w") as f:
            f.write(f'server.document-root = "{ROOT}"\nserver.bind = "127.0.0.1"\n'
                    f'server.port = {port}\nserver.errorlog = "{d}/err.log"\n'
                    'server.max-fds = 20000\nserver.max-connections = 16384\n'
                    'server.max-keep-alive-requests = 1000\nserver.max-keep-alive-idle = 75\n'
                    'server.network-backend = "sendfile"\nindex-file.names = ("index.html")\n'
                    'mimetype.assign = (".html" => "text/html", ".bin" => "application/octet-stream")\n')
        cmd = ["lighttpd", "-D", "-f", conf]
    else:
        cmd = [BIN, "serve", "--arch", server, "--port", str(port), "--root", ROOT]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(0.6)
    return p


def run(server, port):
    p = start(server, port)
    args, path = LOADS[WORKLOAD]
    url = f"http://127.0.0.1:{port}{path}"
    subprocess.run(["h2load", "--h1", "-c4", "-n2000", url], capture_output=True)  # warm
    c0 = group_cpu(p.pid)
    out = subprocess.run(["h2load", "--h1", *args, url], capture_output=True, text=True).stdout
    c1 = group_cpu(p.pid)
    os.killpg(p.pid, signal.SIGTERM)
    p.wait()
    secs = float(re.search(r"finished in ([\d.]+)s", out).group(1))
    done = int(re.search(r"(\d+) succeeded", out).group(1))
    return done, secs, (c1 - c0) * 1e6 / max(done, 1)


print("round,server,workload,requests,seconds,req_per_s,cpu_us_per_req")
for r in range(ROUNDS):
    order = SERVERS[r % len(SERVERS):] + SERVERS[:r % len(SERVERS)]
    for i, s in enumerate(order):
        done, secs, cpu = run(s, 2400 + i)
        print(f"{r},{s},{WORKLOAD},{done},{secs:.3f},{done / secs:.0f},{cpu:.2f}", flush=True)
