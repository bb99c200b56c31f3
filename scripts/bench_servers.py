#!/usr/bin/env python3
"""Measures every archserve architecture and the nginx / lighttpd baselines side by side.

Driven by scripts/bench-servers (which installs the tools, builds archserve and writes the
baseline configs into a temporary directory); usable alone for a subset:

    scripts/bench_servers.py --bin target/release/archserve --tmp DIR --servers hybrid,lighttpd

Every server is started in its own session (process group), so "all its processes" (master and
workers) are the processes whose pgrp is the pid we started; CPU time and RSS are summed over
them. Each repetition starts every server afresh and runs the tests in the same order, servers
interleaved, so slow drift on a shared machine spreads over all of them; the report quotes
medians over the repetitions.

Loopback only; every load is bounded in count and time; every server is stopped at the end.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
ARCHES = ["threads", "processes", "async", "work-stealing", "hybrid"]
# The targets of issue 3 apply to these two.
TARGETED = ["async", "hybrid"]
BIG = 1 << 20  # the 1 MiB file
RSS_CONNS = 10_000


# Repetitions of everything, servers interleaved: 5 take about 8 minutes on 2 cores.
REPS = 5


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Servers


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_stat(pid):
    """(pgrp, utime+stime ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state): field k is rest[k - 3].
    return int(rest[5 - 3]), int(rest[14 - 3]) + int(rest[15 - 3])


def vm_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, name, argv, tmp, port, kind, blocking=False):
        self.name = name
        self.argv = argv
        self.tmp = tmp
        self.port = port
        self.kind = kind  # "archserve", "nginx" or "lighttpd"
        self.blocking = blocking
        self.proc = None

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def start(self):
        out = open(os.path.join(self.tmp, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.tmp,
        )
        out.close()
        with open(os.path.join(self.tmp, "pgids"), "a") as f:
            f.write(f"{self.proc.pid}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.tmp}/{self.name}.log")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not listen on {self.port}")
        # Let forked workers come up, then one request so every lazy start-up path has run.
        time.sleep(0.5)
        status, _ = get(self.port, "/")
        if status != 200:
            raise RuntimeError(f"{self.name}: GET / answered {status}")

    def pids(self):
        pgid = self.proc.pid
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = proc_stat(entry)
                if st and st[0] == pgid:
                    found.append(int(entry))
        return found

    def cpu_ticks(self):
        total = 0
        for pid in self.pids():
            st = proc_stat(pid)
            if st:
                total += st[1]
        return total

    def rss(self):
        return sum(vm_rss(pid) for pid in self.pids())

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # Whatever of the group is left (workers of a master that already exited, or a server
        # that ignored SIGTERM) is killed.
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pids():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        self.proc = None


def get(port, path, conn=None):
    """One GET; returns (status, body). Uses `conn` (kept alive) when given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


# ---------------------------------------------------------------------------------------------
# Loads

H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load(args, timeout):
    """Runs h2load --h1 with `args`; returns (seconds, req/s, succeeded 2xx, total asked)."""
    argv = ["h2load", "--h1", *args]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        log(f"    h2load timed out after {timeout} s: {' '.join(argv)}")
        return None
    fin = H2LOAD_FINISHED.search(out)
    req = H2LOAD_REQUESTS.search(out)
    st = H2LOAD_STATUS.search(out)
    if not (fin and req and st):
        log(f"    could not read h2load's output:\n{out}")
        return None
    secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    ok2xx = int(st.group(1))
    total = int(req.group(1))
    if ok2xx != total:
        log(f"    {total - ok2xx} of {total} requests did not get a 2xx: {req.group(0)}; {st.group(0)}")
    return secs, float(fin.group(3)), ok2xx, total


def cpu_run(server, args, timeout):
    """An h2load run with the server's CPU time around it: (req/s, µs of server CPU per request)."""
    before = server.cpu_ticks()
    r = h2load(args, timeout)
    after = server.cpu_ticks()
    if r is None or r[2] == 0:
        return None, None
    secs, rps, done, _ = r
    return rps, (after - before) / CLK_TCK / done * 1e6


def keep_alive(server, n):
    # A short warm-up (page cache, allocator, lazily created state), not measured.
    h2load(["-c64", "-n5000", server.url + "/"], 60)
    return cpu_run(server, ["-c64", f"-n{n}", server.url + "/"], 300)


def conn_per_request(server, n):
    return cpu_run(server, ["-c64", f"-n{n}", "-H", "Connection: close", server.url + "/"], 300)


def big_file(server, n):
    r = h2load(["-c4", f"-n{n}", server.url + "/big.bin"], 300)
    if r is None or r[2] == 0:
        return None
    secs, _, done, _ = r
    return done * BIG / secs / (1 << 20)  # MiB/s of body


SYSCALLS = ["read", "recvfrom", "write", "writev", "sendto", "sendfile64", "openat", "openat2",
            "statx", "newfstatat", "fstat", "close", "pread64", "epoll_wait", "epoll_ctl",
            "accept4", "setsockopt", "shutdown", "ioctl"]


def perf_tracepoints():
    """The syscall tracepoints `perf stat` can count here, or None (no perf, no tracefs)."""
    try:
        r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [s for s in SYSCALLS
            if os.path.isdir(f"/sys/kernel/tracing/events/syscalls/sys_enter_{s}")]


def syscalls(server, n, extra=()):
    """Syscalls per small-file keep-alive request (with `extra` h2load arguments, e.g. a
    `Connection: close` header: per connection) over all the server's processes and threads:
    `perf stat` on the syscall tracepoints (exact counts, little overhead) where it works, else
    `strace -c -f` (attached to every thread; it slows the server, the counts stay exact).
    Returns {"total": per request, "by_call": {name: per request}} or None."""
    h2load(["-c64", "-n5000", *extra, server.url + "/"], 60)
    pids = server.pids()
    events = perf_tracepoints()
    out = os.path.join(server.tmp, f"{server.name}.syscalls.txt")
    if events is not None:
        ev = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{e}" for e in events])
        tracer = subprocess.Popen(["perf", "stat", "-x,", "-e", ev, "-p",
                                   ",".join(map(str, pids)), "-o", out],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        argv = ["strace", "-c", "-f", "-o", out]
        for pid in pids:
            for tid in os.listdir(f"/proc/{pid}/task"):
                argv += ["-p", tid]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    r = h2load(["-c64", f"-n{n}", *extra, server.url + "/"], 300)
    time.sleep(0.3)
    tracer.send_signal(signal.SIGINT)
    try:
        tracer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
    if r is None or not os.path.exists(out):
        return None
    counts = {}
    with open(out) as f:
        for line in f:
            if events is not None:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].isdigit():
                    name = parts[2].split(":")[-1].removeprefix("sys_enter_")
                    counts["total" if name == "sys_enter" else name] = int(parts[0])
            else:
                parts = line.split()
                if len(parts) >= 5 and parts[3].isdigit():
                    counts[parts[-1]] = int(parts[3])
                elif len(parts) >= 4 and parts[-1] == "total" and parts[2].isdigit():
                    counts["total"] = int(parts[2])
    total = counts.pop("total", sum(counts.values()))
    return {
        "total": total / n,
        "by_call": {k: v / n for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                    if v / n >= 0.01},
        "tool": "perf stat (tracepoints)" if events is not None else "strace -c -f",
    }


def io_1000(server):
    r = h2load(["-c1000", "-n1000", server.url + "/io"], 120)
    if r is None or r[2] != 1000:
        return None
    return r[0]


def fresh_check(server, www):
    """A file changed on disk between requests is served with its new content: rewritten in place
    with the same length (same second, so the same mtime and ETag a cache might key on) on a
    kept-alive connection, then replaced by rename with another length, asked on a new one."""
    path = os.path.join(www, "fresh.txt")
    tmp = path + ".new"
    ok = True
    try:
        with open(path, "w") as f:
            f.write("version 1 of the file\n")
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
        status, body = get(server.port, "/fresh.txt", conn)
        ok &= status == 200 and body == b"version 1 of the file\n"
        with open(path, "w") as f:
            f.write("version 2 of the file\n")
        status, body = get(server.port, "/fresh.txt", conn)
        ok &= status == 200 and body == b"version 2 of the file\n"
        conn.close()
        with open(tmp, "w") as f:
            f.write("version 3, longer than the two before it\n")
        os.rename(tmp, path)
        status, body = get(server.port, "/fresh.txt")
        ok &= status == 200 and body == b"version 3, longer than the two before it\n"
        if not ok:
            log(f"    {server.name}: stale content served (last: {status} {body!r})")
    except (OSError, http.client.HTTPException) as e:
        log(f"    {server.name}: fresh check failed: {e}")
        ok = False
    return ok


def idle_rss(server, conns, budget=90.0):
    """RSS added per idle keep-alive connection: open `conns` connections, one request each, read
    the whole response, keep them open and idle; sum of VmRSS of every server process after minus
    before, over `conns`. Bytes per connection, or None if not all connections got their answer."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n\r\n".encode()
    before = server.rss()
    sel = selectors.DefaultSelector()
    socks = []
    pending_connects = 0
    answered = 0
    state = {}  # sock -> [phase, buffer]
    deadline = time.monotonic() + budget
    ok = True
    try:
        while answered < conns:
            if time.monotonic() > deadline:
                log(f"    {server.name}: only {answered}/{conns} answered in {budget:.0f} s")
                ok = False
                break
            # At most 256 handshakes in flight: the listen backlogs here are 511..1024.
            while len(socks) < conns and pending_connects < 256:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((HOST, server.port))
                socks.append(s)
                state[s] = ["connect", bytearray()]
                sel.register(s, selectors.EVENT_WRITE)
                pending_connects += 1
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                phase, buf = state[s]
                if phase == "connect":
                    pending_connects -= 1
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(request)  # tiny: fits the empty socket buffer
                    state[s][0] = "read"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("server closed a connection before answering")
                buf += chunk
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", bytes(buf[:end]))
                if m and len(buf) >= end + 4 + int(m.group(1)):
                    sel.unregister(s)
                    state[s] = ["idle", None]
                    answered += 1
        if ok:
            # Let the servers settle (buffers released after the last write), then measure.
            time.sleep(1.0)
            after = server.rss()
            still_open = 0
            for s in socks:
                try:
                    # Peek: an open idle connection has nothing to read and would block.
                    if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        continue
                except BlockingIOError:
                    still_open += 1
                except OSError:
                    pass
            if still_open < conns:
                log(f"    {server.name}: {conns - still_open} connections were closed while idle")
                ok = False
    except OSError as e:
        log(f"    {server.name}: idle connections: {e}")
        ok = False
    finally:
        for s in socks:
            s.close()
        sel.close()
    if not ok:
        return None
    return (after - before) / conns


# ---------------------------------------------------------------------------------------------
# The run


def make_servers(args):
    servers = []
    for arch in ARCHES:
        blocking = arch in ("threads", "processes")
        workers = args.blocking_workers if blocking else args.workers
        port = free_port()
        argv = [args.bin, "serve", "--arch", arch, "--port", str(port), "--root", args.www,
                "--log-level", "warn"]
        if arch != "async":
            argv += ["-w", str(workers)]
        servers.append(Server(arch, argv, args.tmp, port, "archserve", blocking))
        if arch == "hybrid" and not args.quick:
            port = free_port()
            argv = [args.bin, "serve", "--arch", arch, "--port", str(port), "--root", args.www,
                    "--log-level", "warn", "-w", str(workers), "--reuseport"]
            servers.append(Server("hybrid --reuseport", argv, args.tmp, port, "archserve"))
    # "nginx-deferred" (only when asked for by --servers): nginx with `listen ... deferred`,
    # TCP_DEFER_ACCEPT as archserve sets it by default; nginx's default is without.
    wanted = args.servers.split(",") if args.servers else []
    for name, deferred in (("nginx", ""), ("nginx-deferred", " deferred")):
        if deferred and name not in wanted:
            continue
        port = free_port()
        conf = os.path.join(args.tmp, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(workers=args.workers, port=port, tmp=args.tmp,
                                      www=args.www, deferred=deferred))
        servers.append(Server(name, ["nginx", "-p", args.tmp, "-c", conf, "-e",
                                     os.path.join(args.tmp, "nginx-error.log")],
                              args.tmp, port, "nginx"))
    port = free_port()
    conf = os.path.join(args.tmp, "lighttpd.conf")
    with open(conf, "w") as f:
        f.write(LIGHTTPD_CONF.format(port=port, tmp=args.tmp, www=args.www))
    servers.append(Server("lighttpd", ["lighttpd", "-D", "-f", conf], args.tmp, port, "lighttpd"))
    if args.servers:
        wanted = args.servers.split(",")
        servers = [s for s in servers if s.name in wanted]
    return servers


# Same page, same loopback, no access log, sendfile on, keep-alive like archserve's (75 s idle,
# 1000 requests per connection); room for the 10,000 idle connections of the RSS test.
NGINX_CONF = """\
worker_processes {workers};
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections 16384;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    charset utf-8;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen {HOST}:{port} backlog=1024{deferred};
        root {www};
        index index.html;
    }}
}}
""".replace("{HOST}", HOST)

# lighttpd is one process with one event loop (it has no worker processes to match N).
LIGHTTPD_CONF = """\
server.document-root = "{www}"
server.bind = "{HOST}"
server.port = {port}
server.errorlog = "{tmp}/lighttpd-error.log"
server.max-fds = 20000
server.max-connections = 16384
server.max-keep-alive-requests = 1000
server.max-keep-alive-idle = 75
server.listen-backlog = 1024
index-file.names = ( "index.html" )
mimetype.assign = (
    ".html" => "text/html; charset=utf-8",
    ".css"  => "text/css; charset=utf-8",
    ".txt"  => "text/plain; charset=utf-8",
    ".bin"  => "application/octet-stream",
)
""".replace("{HOST}", HOST)


def run(args):
    servers = make_servers(args)
    tests = args.tests.split(",")
    results = {s.name: {"kind": s.kind, "runs": []} for s in servers}
    with open(os.path.join(args.www, "big.bin"), "wb") as f:
        f.write(os.urandom(BIG))
    started = time.monotonic()
    try:
        for rep in range(args.reps):
            for server in servers:
                log(f"[rep {rep + 1}/{args.reps}, {time.monotonic() - started:.0f} s] {server.name}")
                r = {}
                server.start()
                try:
                    if "fresh" in tests and rep == 0:
                        r["fresh"] = fresh_check(server, args.www)
                    if "ka" in tests:
                        r["ka_rps"], r["ka_us"] = keep_alive(server, args.ka_n)
                    if "close" in tests:
                        r["close_rps"], r["close_us"] = conn_per_request(server, args.close_n)
                    if "big" in tests:
                        r["big_mibs"] = big_file(server, args.big_n)
                    if "rss" in tests and not server.blocking:
                        r["rss_per_conn"] = idle_rss(server, args.rss_conns)
                    # /io needs the workload endpoint (archserve only). A blocking architecture
                    # takes 1000 / workers seconds: measured once, for the record.
                    if "sys" in tests and rep == 0:
                        r["syscalls"] = syscalls(server, args.sys_n)
                        r["syscalls_close"] = syscalls(
                            server, args.close_n, ["-H", "Connection: close"])
                    if "io" in tests and server.kind == "archserve" and (
                        rep == 0 or not server.blocking
                    ):
                        r["io_secs"] = io_1000(server)
                finally:
                    server.stop()
                results[server.name]["runs"].append(r)
                log("    " + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()))
    finally:
        for server in servers:
            server.stop()
    for name, res in results.items():
        res["median"] = medians(res["runs"])
    return servers, results, time.monotonic() - started


def fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def medians(runs):
    keys = {k for r in runs for k in r}
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if k in r]
        if all(isinstance(v, bool) for v in vals):
            out[k] = all(vals)
        elif all(isinstance(v, dict) for v in vals):
            out[k] = vals[0]
        elif any(v is None for v in vals):
            nums = [v for v in vals if v is not None]
            out[k] = statistics.median(nums) if nums else None
            out[k + "_failed"] = len(vals) - len(nums)
        else:
            out[k] = statistics.median(vals)
        out[k + "_n"] = len(vals)
    return out


# ---------------------------------------------------------------------------------------------
# Report

COLUMNS = [
    ("ka_rps", "keep-alive req/s", lambda v: f"{v:,.0f}"),
    ("ka_us", "keep-alive CPU µs/req", lambda v: f"{v:.2f}"),
    ("close_rps", "conn-per-request req/s", lambda v: f"{v:,.0f}"),
    ("close_us", "conn-per-request CPU µs/req", lambda v: f"{v:.1f}"),
    ("big_mibs", "1 MiB file MiB/s", lambda v: f"{v:,.0f}"),
    ("fresh", "changed file served new", lambda v: "yes" if v else "**no**"),
    ("rss_per_conn", "RSS B / idle conn (10k)", lambda v: f"{v:,.0f}"),
    ("io_secs", "/io ×1000 clients, s", lambda v: f"{v:.2f}"),
]


def cell(med, key, f):
    if key not in med:
        return "–"
    v = med[key]
    if v is None:
        return "failed"
    s = f(v)
    n = med.get(key + "_n", 0)
    if key == "io_secs" and n == 1 and med.get("_reps", 1) > 1:
        s += " (1 run)"
    if med.get(key + "_failed"):
        s += f" ({med[key + '_failed']} failed)"
    return s


def table(servers, results, args):
    head = ["server", "workers"] + [c[1] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in servers:
        med = dict(results[s.name]["median"], _reps=args.reps)
        if s.kind == "lighttpd":
            workers = "1 (single process)"
        elif s.name == "async":
            workers = "1"
        elif s.blocking:
            workers = str(args.blocking_workers)
        else:
            workers = str(args.workers)
        row = [f"`{s.name}`" if s.kind == "archserve" else f"**{s.name}**", workers]
        row += [cell(med, k, f) for k, _, f in COLUMNS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def syscall_table(servers, results, key="syscalls"):
    """Markdown table of syscalls per keep-alive request (`key` "syscalls_close": per
    connection-per-request request), or "" when not measured."""
    rows = []
    tool = None
    for s in servers:
        sc = results[s.name]["median"].get(key)
        if not sc:
            continue
        tool = sc["tool"]
        calls = ", ".join(f"{k} {v:.2f}" for k, v in sc["by_call"].items())
        rows.append(f"| `{s.name}` | {sc['total']:.2f} | {calls} |")
    if not rows:
        return ""
    return ("| server | syscalls per request | per call (≥ 0.01 per request) |\n|---|---|---|\n"
            + "\n".join(rows) + f"\n\n(counted with {tool})\n")


def targets(results):
    """The targets of issue 3 for async and hybrid: (architecture, target, measured, met) rows,
    judged on the medians; "measured" also shows the range over the runs."""
    def med(name, key):
        return results.get(name, {}).get("median", {}).get(key)

    def spread(name, key, form):
        vals = [r[key] for r in results.get(name, {}).get("runs", [])
                if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if len(vals) < 2:
            return ""
        return f" ({form.format(min(vals))}–{form.format(max(vals))})"

    def paired(name, key, base, test):
        """Each repetition ran both servers within a minute of each other: the ratio per
        repetition is less exposed to the machine's drift than two medians are. Returns
        "median ratio, as good or better in k of n repetitions" or ""."""
        ours = results.get(name, {}).get("runs", [])
        theirs = results.get(base, {}).get("runs", [])
        pairs = [(a.get(key), b.get(key)) for a, b in zip(ours, theirs)]
        pairs = [(a, b) for a, b in pairs if isinstance(a, (int, float)) and
                 isinstance(b, (int, float)) and b]
        if len(pairs) < 2:
            return ""
        ratio = statistics.median(a / b for a, b in pairs)
        wins = sum(1 for a, b in pairs if test(a, b))
        return f"; paired ×{ratio:.3f}, as good or better in {wins} of {len(pairs)} runs"

    rows = []
    # (target, key, baseline server or None, fixed limit, test, number format, unit)
    checks = [
        ("keep-alive CPU/request ≤ lighttpd's", "ka_us", "lighttpd", None,
         lambda v, b: v <= b, "{:.2f}", " µs"),
        ("keep-alive req/s ≥ lighttpd's", "ka_rps", "lighttpd", None,
         lambda v, b: v >= b, "{:,.0f}", ""),
        ("connection-per-request req/s ≥ nginx's", "close_rps", "nginx", None,
         lambda v, b: v >= b, "{:,.0f}", ""),
        ("1 MiB file throughput ≥ nginx's", "big_mibs", "nginx", None,
         lambda v, b: v >= b, "{:,.0f}", " MiB/s"),
        ("a changed file is served with its new content", "fresh", None, True,
         lambda v, b: v is True, None, ""),
        ("≤ 1 KiB RSS per idle keep-alive connection (10k)", "rss_per_conn", None, 1024,
         lambda v, b: v <= b, "{:,.0f}", " B"),
        ("/io with 1,000 clients ≤ 1.1 s", "io_secs", None, 1.1,
         lambda v, b: v <= b, "{:.2f}", " s"),
    ]
    for name in TARGETED:
        if name not in results:
            continue
        for text, key, base_server, limit, test, form, unit in checks:
            v = med(name, key)
            b = med(base_server, key) if base_server else limit
            if v is None or b is None:
                rows.append((name, text, "not measured", None))
                continue
            if form is None:
                shown = "yes" if v else "no"
            else:
                shown = form.format(v) + unit + spread(name, key, form)
                if base_server:
                    shown += f" vs {form.format(b)}{unit}{spread(base_server, key, form)}"
                    shown += paired(name, key, base_server, test)
                else:
                    shown += f" (limit {form.format(b)}{unit})"
            rows.append((name, text, shown, bool(test(v, b))))
    return rows


def machine(args):
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    rev = first_line(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe",
                      "--always", "--dirty"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "archserve": f"{first_line([args.bin, '--version'])} (git {rev})",
        "rustc": first_line(["rustc", "--version"]),
        "nginx": first_line(["nginx", "-v"]).removeprefix("nginx version: "),
        "lighttpd": first_line(["lighttpd", "-v"]).split(" ")[0],
        "h2load": first_line(["h2load", "--version"]).removeprefix("h2load "),
        "python": platform.python_version(),
    }


def report(servers, results, args, secs):
    m = machine(args)
    tgt = targets(results)
    cmd = "scripts/bench-servers" + (" --quick" if args.quick else "")
    if not args.quick and args.reps != REPS:
        cmd += f" --reps {args.reps}"
    out = []
    out.append("## Servers\n")
    out.append(
        "archserve's architectures and two baselines (nginx, lighttpd, from Debian packages) "
        "serving the same `www/` on loopback, loaded by h2load on the same machine. Written by "
        f"`{cmd}`" + (f" ({secs / 60:.1f} min)" if secs else "") + "; reproduce with:\n")
    out.append(f"```sh\n{cmd}\n```\n")
    out.append("The raw runs are in `docs/bench-servers.json` (`scripts/bench-servers --from-json "
               "docs/bench-servers.json` renders this section again from them).\n")
    out.append(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, {m['os']}; measured "
        f"{m['date']}. Versions: {m['archserve']}, {m['rustc']}, {m['nginx']}, {m['lighttpd']}, "
        f"h2load ({m['h2load']}), Python {m['python']}. The machine is shared (other jobs compile "
        "on it), so figures move by several percent between runs; each is the median of "
        f"{args.reps} run{'s' if args.reps > 1 else ''}, servers interleaved.\n")
    out.append(table(servers, results, args) + "\n")
    sys_table = syscall_table(servers, results)
    if sys_table:
        out.append(f"Syscalls per small-file keep-alive request (`--tests sys`, -n{args.sys_n}):\n")
        out.append(sys_table)
    sys_table = syscall_table(servers, results, "syscalls_close")
    if sys_table:
        out.append("Syscalls per connection-per-request request (`--tests sys`, "
                   f"-n{args.close_n}, `Connection: close`):\n")
        out.append(sys_table)
    out.append("What each column is:\n")
    out.append(
        f"- **keep-alive**: `h2load --h1 -c64 -n{args.ka_n} URL/` (after a 5,000-request warm-up) "
        "for the 532-byte `index.html`. req/s as h2load reports it; CPU µs/req is the server's "
        "own CPU time, utime+stime (fields 14 and 15 of `/proc/PID/stat`, in CLK_TCK ticks) "
        "summed over all its processes (the session it was started in: master and workers) "
        "before and after the run, divided by the requests. On 2 cores h2load competes with the "
        "server for the CPUs, so req/s tells fast servers apart less well than CPU/request does.\n"
        f"- **conn-per-request**: the same with `-H 'Connection: close'`, `-n{args.close_n}`: "
        "a TCP handshake, one request and a close each time.\n"
        f"- **1 MiB file**: `h2load --h1 -c4 -n{args.big_n} URL/big.bin` (random bytes); body "
        "MiB/s.\n"
        "- **changed file**: `fresh.txt` rewritten in place with the same length between two "
        "requests on one kept-alive connection, then replaced (rename) by a longer version and "
        "asked on a new connection; every answer must carry the new content.\n"
        f"- **RSS / idle conn**: {RSS_CONNS:,} connections opened (Python, selectors), one "
        "`GET /` each, the whole response read, then left idle; sum of `VmRSS` of all server "
        "processes 1 s later minus before, divided by the connections. Blocking architectures "
        "cannot hold 10,000 idle clients with a worker each, so they are not measured.\n"
        "- **/io ×1000**: `h2load --h1 -c1000 -n1000 URL/io`: 1,000 clients at once, a new "
        "connection and one request each, every request waiting 1 s on the server; h2load's "
        "total wall time. archserve only (the baselines have no `/io`). The blocking "
        "architectures need 1000 / workers seconds, so they run it once.\n")
    out.append(
        f"Workers: {args.workers} (= CPUs) for `hybrid`, `work-stealing` and nginx "
        "(`worker_processes`); `async` and lighttpd are one process with one event loop. The "
        f"blocking `threads` and `processes` get {args.blocking_workers} workers, one per h2load "
        "connection: with fewer, the keep-alive clients beyond the worker count would wait in "
        "the backlog for a worker to drop its connection. `hybrid --reuseport` is hybrid with a "
        "listening socket per worker (SO_REUSEPORT) instead of one shared listener. nginx and "
        "lighttpd run with no access log, sendfile on, 75 s keep-alive and 1,000 requests per "
        "connection, like archserve's defaults (`scripts/bench-servers --keep` keeps the generated "
        "configs and the servers' logs in its scratch directory).\n")
    out.append("### Targets (issue 3)\n")
    out.append("Judged on the medians; in brackets, the lowest and highest of the runs. Against a "
               "baseline, \"paired\" is the median over the repetitions of our figure divided by "
               "the baseline's in the same repetition, and how many repetitions met the target on "
               "their own: the machine's speed drifts between repetitions, and a ratio taken "
               "within one repetition is less exposed to it.\n")
    out.append("| architecture | target | measured | met? |")
    out.append("|---|---|---|---|")
    for name, text, shown, met in tgt:
        verdict = "not measured" if met is None else ("met" if met else "**not met**")
        out.append(f"| `{name}` | {text} | {shown} | {verdict} |")
    out.append("")
    return "\n".join(out) + "\n", m


def write_doc(path, section):
    """Replaces the "## Servers" section of `path` (or appends it, or creates the file), keeping
    every other section as it is."""
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if not text.strip():
        text = "# Benchmarks\n\nHow archserve performs, measured side by side with its baselines.\n"
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.rstrip("\n") == "## Servers"]
    if not at:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        i = at[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        rest = "".join(lines[j:])
        text = "".join(lines[:i]) + section.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="archserve release binary")
    p.add_argument("--tmp", required=True, help="scratch directory (configs, logs, www copy)")
    p.add_argument("--www", help="document root to serve (default TMP/www)")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--blocking-workers", type=int, default=64)
    p.add_argument("--reps", type=int, default=REPS)
    p.add_argument("--quick", action="store_true", help="one short run of everything")
    p.add_argument("--servers", help="comma-separated subset, e.g. hybrid,async,lighttpd")
    p.add_argument("--tests", default="fresh,ka,close,big,rss,io",
                   help="comma-separated subset of fresh,ka,close,big,rss,io, and sys "
                        "(syscalls per keep-alive request; not in the default run)")
    p.add_argument("--sys-n", type=int, default=100_000)
    p.add_argument("--ka-n", type=int, default=400_000)
    p.add_argument("--close-n", type=int, default=40_000)
    p.add_argument("--big-n", type=int, default=2_000)
    p.add_argument("--rss-conns", type=int, default=RSS_CONNS)
    p.add_argument("--doc", help="write the Servers section into this Markdown file")
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--from-json", help="no measuring: write the report of a saved --json run")
    args = p.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.www = args.www or os.path.join(args.tmp, "www")
    if args.quick:
        args.reps = 1
        args.ka_n = min(args.ka_n, 100_000)
        args.close_n = min(args.close_n, 10_000)
        args.big_n = min(args.big_n, 500)
    # SIGTERM / SIGHUP from the driving script: unwind through the finally blocks (stop servers).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        for k, v in saved["args"].items():
            if k not in ("doc", "json", "from_json", "tmp", "bin", "www"):
                setattr(args, k, v)
        results = saved["results"]
        servers = [Server(name, [], args.tmp, 0, res["kind"],
                          blocking=name in ("threads", "processes"))
                   for name, res in results.items()]
        secs = saved.get("secs", 0)
        global machine
        machine = lambda _args: saved["machine"]  # noqa: E731 (the saved run's machine)
    else:
        servers, results, secs = run(args)
    section, m = report(servers, results, args, secs)
    print()
    print(table(servers, results, args))
    print()
    for key in ("syscalls", "syscalls_close"):
        sys_table = syscall_table(servers, results, key)
        if sys_table:
            print(sys_table)
    for name, text, shown, met in targets(results):
        verdict = "not measured" if met is None else ("met" if met else "NOT MET")
        print(f"{name:7} {text:52} {shown:32} {verdict}")
    if args.json and not args.from_json:
        with open(args.json, "w") as f:
            json.dump({"machine": m, "args": vars(args), "results": results, "secs": secs}, f,
                      indent=1)
    if args.doc:
        write_doc(args.doc, section)
        print(f"\nwrote the Servers section of {args.doc}")


if __name__ == "__main__":
    main()
