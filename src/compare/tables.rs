//! What the reports say, laid out once for both (and for the docs): a section per workload
//! measured, each with its explanation, its chart and its tables, and the paired ratios against
//! the baselines. Built from raw.csv's rows; [`super::render`] writes it as Markdown or HTML.
use super::plan::{Baseline, Workload};
use super::report::{cell, median, num, scaled_cell, summarize, PointSummary, Sample, Setup};
use super::upgrade::{FAILURES, MODES, UPGRADES};

/// A table: a stable id (docs name tables by it), a header row, body rows, a footnote.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub id: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub note: String,
}

/// A part of the report: a heading, a paragraph, a chart (file stem), tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub heading: String,
    pub intro: String,
    pub chart: Option<String>,
    pub tables: Vec<Table>,
}

/// Every section the samples have data for, in the order of [`Workload::ALL`], then the
/// ratios against the baselines.
pub fn sections(setup: Option<&Setup>, samples: &[Sample]) -> Vec<Section> {
    let points = summarize(samples);
    let t = Tables { points: &points };
    let mut out = Vec::new();
    for w in Workload::ALL {
        if !points.iter().any(|p| p.workload == w.name()) {
            continue;
        }
        let (heading, intro) = describe(w, setup);
        let table = t.of(w);
        let chart = matches!(
            w,
            Workload::Cpu | Workload::Io | Workload::Static | Workload::Idle
        )
        .then(|| w.name().to_string());
        out.push(Section {
            heading,
            intro,
            chart,
            tables: vec![table],
        });
    }
    let ratios = ratios(samples);
    if !ratios.rows.is_empty() {
        out.push(Section {
            heading: "Against the baselines".into(),
            intro: "Paired ratios: in each round every server ran within a minute of the others, \
                    so archserve's figure divided by the baseline's in the same round is less \
                    exposed to the machine's drift than two medians are. Each cell is the median \
                    ratio over the rounds, then how many rounds were as good or better than the \
                    baseline (more requests/s and MiB/s; less CPU and memory)."
                .into(),
            chart: None,
            tables: vec![ratios],
        });
    }
    out
}

/// A section's heading and paragraph (with the parameters when the setup is known).
fn describe(w: Workload, setup: Option<&Setup>) -> (String, String) {
    let p = setup.map(|s| &s.params);
    let d = p.map_or(String::new(), |p| {
        format!(" for {} s per point", num(p.duration_s))
    });
    let (h, i) = match w {
        Workload::Cpu => ("CPU Bound Task", "N clients at once, each one `GET /cpu` on a new connection; response time = total wall time until the last of the N answered, in ms (the seed's measurement).".to_string()),
        Workload::Io => ("I/O Bound Task", "N clients at once, each one `GET /io` on a new connection; response time = total wall time until the last of the N answered, in ms.".to_string()),
        Workload::Static => ("Static file, keep-alive", format!("Closed loop{d}: each connection sends its next request when the previous answer is complete, after an unmeasured warm-up. Server CPU is utime + stime of every process of the server (/proc/PID/stat) over the measured part, divided by the requests answered. Latency from a request's start to its last byte.")),
        Workload::Close => ("Connection per request", format!("Closed loop{d}: every request on a new connection (handshake, one request with `Connection: close`, close). Server CPU as for the static file.")),
        Workload::Big => ("1 MiB file", format!("Keep-alive closed loop{d} on a 1 MiB file of random bytes; MiB/s of body.")),
        Workload::Fresh => ("Changed file served new", "A file is rewritten in place with the same length between two requests on one kept-alive connection, then replaced by rename with a longer version and asked on a new connection; every answer must carry the content on disk at the time.".to_string()),
        Workload::Idle => ("Memory per idle keep-alive connection", "Connections are opened 100 at a time, each sends one request, and each batch's answers are awaited before the next; those answered are held open and idle. Opening stops when a batch is not answered in full. RSS is VmRSS summed over the server's processes (from /proc), before opening and after the answers; the difference is divided by the connections held. Kernel socket buffers are not in RSS. A blocking architecture holds at most one connection per worker: the rest of its first batch waits unanswered in the listen backlog.".to_string()),
        Workload::IoBurst => ("`/io` with many clients at once", "Every client opens its own connection and sends one `/io` at the same moment; the time until the last answer, in ms. The blocking architectures are not run (they serve one client per worker at a time).".to_string()),
        Workload::Syscalls => ("System calls per request", format!("Small-file requests on the load connections{d}, keep-alive (ka) and connection-per-request (close), every process and thread of the server traced; calls per request answered, calls made less than 0.01 times per request left out. The tracer's output is in `servers/`.")),
        Workload::Loadgen => ("Load generators", format!("`archserve load` against h2load and wrk, each driving the same server with keep-alive on the same connections{d}, one after the other. req/s as each reports it; generator CPU is its own utime + stime (every thread) per request; server CPU is the server's under that generator.")),
        Workload::Upgrade => ("Upgrades under load", upgrade_intro(p)),
        Workload::Tls => ("HTTPS", format!("Each server serves HTTPS with the same certificate, made for the run (P-256, rcgen): ours with `--tls-cert/--tls-key` (rustls, ring), nginx with `ssl` on its listener (OpenSSL, its default protocols and ciphers, session tickets on). `archserve load` is the HTTPS client (rustls, ring), trusting that certificate. Keep-alive small file{d} on the `close` connections: requests/s and server CPU µs per request. A new connection per request{d}: first with every handshake full (`--no-resume`), then resumed (each connection offers a ticket an earlier one received; `share resumed` is the fraction that was); handshakes/s and server CPU µs per handshake (request included). 1 MiB file over keep-alive{d} on the `big` connections: MiB/s. Then, on a fresh server: connections opened one at a time (a resumed handshake and one request each) and held idle; RSS of the server's processes after minus before, divided by the connections held.")),
        Workload::Cgi => ("CGI", "N clients at once, each one `GET /cgi-bin/bench.sh` (a POSIX sh script printing a head and one line) on a new connection: a fork, an exec and two pipes per request. Total wall time until the last of the N answered, in ms, and the server's own CPU per request (utime + stime of its processes, the scripts' excluded: they are children, not the server), in µs. lighttpd runs the same script through mod_cgi.".to_string()),
    };
    (h.to_string(), i)
}

/// The upgrade section's paragraph (with the load's length and connections when known).
fn upgrade_intro(p: Option<&super::plan::Params>) -> String {
    let (d, c) = p.map_or((String::new(), String::new()), |p| {
        (
            format!(" for {} s", num(p.upgrade_duration_s)),
            format!(" on {} connections", p.load_conns),
        )
    });
    format!("`archserve load`{d}{c}, keep-alive and then a new connection per request (each on a fresh server), while the server is upgraded {UPGRADES} times in a row, spread over the first four fifths of the run. Ours: `USR2` to the process serving, then its `Upgraded:` line names the next. nginx (started as a daemon, whose `USR2` it honours): `USR2`, the new master's pid file, `QUIT` to the old master, its exit. lighttpd is not run: it hands no listening socket to a new binary (its SIGUSR1 reloads the configuration in the running one). Failed requests are those that got no complete answer (timeout, reset, closed before the answer ended, invalid) or a status other than 2xx; refused connections are those that could not be made. Median (min–max) over the rounds.")
}

struct Tables<'a> {
    points: &'a [PointSummary],
}

impl Tables<'_> {
    /// The table of workload `w`.
    fn of(&self, w: Workload) -> Table {
        match w {
            Workload::Cpu | Workload::Io | Workload::IoBurst => self.seed(w),
            Workload::Static => self.per_server(
                w,
                &[
                    ("requests/s", "req_per_s"),
                    ("server CPU µs/request", "cpu_us"),
                    ("p50 ms", "p50_ms"),
                    ("p99 ms", "p99_ms"),
                ],
            ),
            Workload::Close => self.per_server(
                w,
                &[
                    ("requests/s", "req_per_s"),
                    ("server CPU µs/request", "cpu_us"),
                ],
            ),
            Workload::Big => self.per_server(w, &[("MiB/s", "mib_per_s")]),
            Workload::Fresh => self.fresh(),
            Workload::Idle => self.idle(),
            Workload::Syscalls => self.syscalls(),
            Workload::Loadgen => self.loadgen(),
            Workload::Upgrade => self.upgrade(),
            Workload::Tls => self.per_server(
                w,
                &[
                    ("keep-alive req/s", "ka_req_per_s"),
                    ("keep-alive server CPU µs/req", "ka_cpu_us"),
                    ("full handshakes/s", "full_per_s"),
                    ("server CPU µs/full", "full_cpu_us"),
                    ("resumed handshakes/s", "resumed_per_s"),
                    ("server CPU µs/resumed", "resumed_cpu_us"),
                    ("share resumed", "resumed_resumed_share"),
                    ("1 MiB MiB/s", "big_mib_per_s"),
                    ("idle conns held", "idle_held"),
                    ("idle KiB/conn", "idle_kib_per_conn"),
                ],
            ),
            Workload::Cgi => self.per_server(
                w,
                &[
                    ("total ms", "total_ms"),
                    ("server CPU µs/request", "cpu_us"),
                ],
            ),
        }
    }

    fn find(&self, server: &str, w: &str, x: u32, metric: &str) -> Option<&PointSummary> {
        self.points
            .iter()
            .find(|p| p.server == server && p.workload == w && p.x == x && p.metric == metric)
    }

    fn servers(&self, w: &str) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in self.points.iter().filter(|p| p.workload == w) {
            if !v.contains(&p.server) {
                v.push(p.server.clone());
            }
        }
        v
    }

    fn xs(&self, w: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .points
            .iter()
            .filter(|p| p.workload == w)
            .map(|p| p.x)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Footnote listing the points where requests failed.
    fn error_note(&self, w: &str) -> String {
        let bad: std::collections::BTreeSet<String> = self
            .points
            .iter()
            .filter(|p| p.workload == w && p.errors > 0)
            .map(|p| {
                format!(
                    "{} at {}: {} failed of {}",
                    p.server,
                    p.x,
                    p.errors,
                    p.ok + p.errors
                )
            })
            .collect();
        if bad.is_empty() {
            return String::new();
        }
        let bad: Vec<String> = bad.into_iter().collect();
        format!(
            "† requests failed (summed over repeats): {}.",
            bad.join("; ")
        )
    }

    /// The seed's sheet: one row per client count, one column per server, total time in ms.
    fn seed(&self, w: Workload) -> Table {
        let servers = self.servers(w.name());
        let rows = self
            .xs(w.name())
            .into_iter()
            .map(|x| {
                std::iter::once(x.to_string())
                    .chain(servers.iter().map(|s| {
                        self.find(s, w.name(), x, "total_ms")
                            .map_or(String::new(), cell)
                    }))
                    .collect()
            })
            .collect();
        Table {
            id: w.name().into(),
            head: std::iter::once(w.x_name().to_string())
                .chain(servers)
                .collect(),
            rows,
            note: self.error_note(w.name()),
        }
    }

    /// A row per server and point: server, workers, x, then one column per metric.
    fn per_server(&self, w: Workload, cols: &[(&str, &str)]) -> Table {
        let name = w.name();
        let mut rows = Vec::new();
        for s in self.servers(name) {
            for x in self.xs(name) {
                let Some(first) = self.find(&s, name, x, cols[0].1) else {
                    continue;
                };
                let mut row = vec![s.clone(), first.workers.to_string(), x.to_string()];
                row.extend(
                    cols.iter()
                        .map(|(_, m)| self.find(&s, name, x, m).map_or(String::new(), cell)),
                );
                rows.push(row);
            }
        }
        let head = ["server", "workers", w.x_name()]
            .into_iter()
            .chain(cols.iter().map(|c| c.0));
        Table {
            id: name.into(),
            head: head.map(String::from).collect(),
            rows,
            note: self.error_note(name),
        }
    }

    fn fresh(&self) -> Table {
        let w = Workload::Fresh.name();
        let rows = self
            .servers(w)
            .into_iter()
            .filter_map(|s| {
                let p = self
                    .points
                    .iter()
                    .find(|p| p.server == s && p.workload == w && p.metric == "fresh")?;
                let verdict = if p.min >= 1.0 { "yes" } else { "**no**" };
                Some(vec![s, verdict.to_string()])
            })
            .collect();
        Table {
            id: w.into(),
            head: vec!["server".into(), "served the new content".into()],
            rows,
            note: String::new(),
        }
    }

    fn idle(&self) -> Table {
        let w = Workload::Idle.name();
        let mut rows = Vec::new();
        for s in self.servers(w) {
            for x in self.xs(w) {
                let Some(per) = self.find(&s, w, x, "kib_per_conn") else {
                    continue;
                };
                let get = |m| self.find(&s, w, x, m).map_or(String::new(), cell);
                rows.push(vec![
                    s.clone(),
                    per.workers.to_string(),
                    x.to_string(),
                    get("opened"),
                    get("held"),
                    get("rss_before_kib"),
                    get("rss_after_kib"),
                    scaled_cell(per, 1024.0),
                ]);
            }
        }
        let head = [
            "server",
            "workers",
            "connections wanted",
            "opened",
            "held (answered)",
            "RSS before KiB",
            "RSS after KiB",
            "B per held connection",
        ];
        Table {
            id: w.into(),
            head: head.map(String::from).to_vec(),
            rows,
            note: self.error_note(w),
        }
    }

    fn syscalls(&self) -> Table {
        let w = Workload::Syscalls.name();
        let mut rows = Vec::new();
        for s in self.servers(w) {
            for mode in ["ka", "close"] {
                let of = |p: &&PointSummary| {
                    p.server == s && p.workload == w && p.metric.starts_with(&format!("{mode}."))
                };
                let mut calls: Vec<&PointSummary> = self.points.iter().filter(of).collect();
                let Some(total) = calls.iter().position(|p| p.metric.ends_with(".total")) else {
                    continue;
                };
                let total = calls.remove(total);
                calls.sort_by(|a, b| b.median.total_cmp(&a.median));
                let each: Vec<String> = calls
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p.metric.split_once('.').map_or("", |m| m.1),
                            num(p.median)
                        )
                    })
                    .collect();
                rows.push(vec![
                    s.clone(),
                    mode.to_string(),
                    num(total.median),
                    each.join(", "),
                ]);
            }
        }
        let head = ["server", "mode", "syscalls per request", "per call"];
        Table {
            id: w.into(),
            head: head.map(String::from).to_vec(),
            rows,
            note: String::new(),
        }
    }

    /// A row per server and mode: upgrades completed, requests answered, failed, refused,
    /// and the failures by kind (those that happened in any round).
    fn upgrade(&self) -> Table {
        let w = Workload::Upgrade.name();
        // The counts are the table: no † on them.
        let plain = |p: &PointSummary| {
            cell(&PointSummary {
                errors: 0,
                ..p.clone()
            })
        };
        let mut rows = Vec::new();
        for s in self.servers(w) {
            for x in self.xs(w) {
                for (mode, keep_alive) in MODES {
                    let get = |m: &str| self.find(&s, w, x, &format!("{mode}.{m}"));
                    let Some(upgrades) = get("upgrades") else {
                        continue;
                    };
                    let kinds: Vec<String> = FAILURES
                        .iter()
                        .filter_map(|k| get(&format!("failed.{k}")).map(|p| (k, p)))
                        .filter(|(_, p)| p.max > 0.0)
                        .map(|(k, p)| format!("{k} {}", plain(p)))
                        .collect();
                    rows.push(vec![
                        s.clone(),
                        upgrades.workers.to_string(),
                        if keep_alive {
                            "keep-alive"
                        } else {
                            "connection per request"
                        }
                        .into(),
                        plain(upgrades),
                        get("answered").map_or(String::new(), plain),
                        get("failed").map_or(String::new(), plain),
                        get("refused").map_or(String::new(), plain),
                        if kinds.is_empty() {
                            "–".into()
                        } else {
                            kinds.join(", ")
                        },
                    ]);
                }
            }
        }
        let head = [
            "server",
            "workers",
            "mode",
            "upgrades",
            "requests answered",
            "failed requests",
            "refused connections",
            "failures by kind",
        ];
        Table {
            id: w.into(),
            head: head.map(String::from).to_vec(),
            rows,
            note: String::new(),
        }
    }

    fn loadgen(&self) -> Table {
        let w = Workload::Loadgen.name();
        let mut gens: Vec<&str> = Vec::new();
        for p in self.points.iter().filter(|p| p.workload == w) {
            let g = p.metric.rsplit_once('.').map_or("", |m| m.0);
            if !gens.contains(&g) {
                gens.push(g);
            }
        }
        let metric = |g: &str, m: &str| {
            self.points
                .iter()
                .find(|p| p.workload == w && p.metric == format!("{g}.{m}"))
        };
        let base = |prefix: &str| {
            gens.iter()
                .find(|g| g.starts_with(prefix))
                .and_then(|g| metric(g, "req_per_s"))
                .map(|p| p.median)
        };
        let (h2load, wrk) = (base("h2load"), base("wrk"));
        let vs = |v: f64, b: Option<f64>| b.map_or("–".to_string(), |b| format!("{:.2}×", v / b));
        let mut rows = Vec::new();
        for g in &gens {
            let Some(rps) = metric(g, "req_per_s") else {
                continue;
            };
            let get = |m| metric(g, m).map_or(String::new(), cell);
            rows.push(vec![
                format!("`{g}`"),
                rps.server.clone(),
                cell(rps),
                vs(rps.median, h2load),
                vs(rps.median, wrk),
                get("cpu_us"),
                get("server_cpu_us"),
                get("failed"),
            ]);
        }
        let head = [
            "generator",
            "server",
            "req/s",
            "vs h2load",
            "vs wrk",
            "generator CPU µs/request",
            "server CPU µs/request",
            "failed requests",
        ];
        Table {
            id: w.into(),
            head: head.map(String::from).to_vec(),
            rows,
            note: String::new(),
        }
    }
}

/// The measures compared with the baselines: (workload, metric, label, higher is better).
const RATIO_MEASURES: &[(&str, &str, &str, bool)] = &[
    ("static", "req_per_s", "keep-alive req/s", true),
    ("static", "cpu_us", "keep-alive CPU µs/request", false),
    ("close", "req_per_s", "connection-per-request req/s", true),
    (
        "close",
        "cpu_us",
        "connection-per-request CPU µs/request",
        false,
    ),
    ("big", "mib_per_s", "1 MiB file MiB/s", true),
    ("idle", "kib_per_conn", "RSS per idle connection", false),
];

/// The paired-ratio table: a row per measure, point and architecture, a column per baseline
/// (an `ARCH@LABEL` server from `--against` is a baseline of `ARCH` only).
pub fn ratios(samples: &[Sample]) -> Table {
    let is_base = |s: &str| s.contains('@') || Baseline::ALL.iter().any(|b| b.name() == s);
    let mut servers: Vec<&str> = Vec::new();
    for s in samples {
        if !servers.contains(&s.server.as_str()) {
            servers.push(&s.server);
        }
    }
    let bases: Vec<&str> = servers.iter().copied().filter(|s| is_base(s)).collect();
    let ours: Vec<&str> = servers.iter().copied().filter(|s| !is_base(s)).collect();
    let mut rows = Vec::new();
    for &(w, metric, label, higher) in RATIO_MEASURES {
        let mut xs: Vec<u32> = samples
            .iter()
            .filter(|s| s.workload == w && s.metric == metric)
            .map(|s| s.x)
            .collect();
        xs.sort_unstable();
        xs.dedup();
        for x in xs {
            for s in &ours {
                let cells: Vec<String> = bases
                    .iter()
                    .map(|b| match b.split_once('@') {
                        Some((arch, _)) if arch != *s => "–".to_string(),
                        _ => paired(samples, (w, metric, x), s, b, higher),
                    })
                    .collect();
                if cells.iter().all(|c| c == "–") {
                    continue;
                }
                let mut row = vec![format!("{label} at {x}"), s.to_string()];
                row.extend(cells);
                rows.push(row);
            }
        }
    }
    let head = ["measure", "server"]
        .into_iter()
        .map(String::from)
        .chain(bases.iter().map(|b| format!("vs {b}")));
    Table {
        id: "ratios".into(),
        head: head.collect(),
        rows,
        note: String::new(),
    }
}

/// `×1.05 (4/5)`: the median of ours/theirs over the rounds both measured, and the rounds in
/// which ours was as good or better; `–` without two such rounds.
fn paired(
    samples: &[Sample],
    (w, metric, x): (&str, &str, u32),
    ours: &str,
    theirs: &str,
    higher: bool,
) -> String {
    let value = |server: &str, r: u32| {
        samples
            .iter()
            .find(|s| {
                s.server == server
                    && s.workload == w
                    && s.metric == metric
                    && s.x == x
                    && s.repeat == r
            })
            .map(|s| s.value)
            .filter(|v| v.is_finite())
    };
    let mut ratios = Vec::new();
    let mut wins = 0;
    let rounds = samples.iter().map(|s| s.repeat).max().unwrap_or(0);
    for r in 1..=rounds {
        let (Some(a), Some(b)) = (value(ours, r), value(theirs, r)) else {
            continue;
        };
        if b == 0.0 {
            continue;
        }
        ratios.push(a / b);
        if (higher && a >= b) || (!higher && a <= b) {
            wins += 1;
        }
    }
    if ratios.len() < 2 {
        return "–".into();
    }
    format!("×{:.2} ({wins}/{})", median(&ratios), ratios.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(server: &str, workload: &str, metric: &str, repeat: u32, value: f64) -> Sample {
        Sample {
            server: server.into(),
            workers: 5,
            workload: workload.into(),
            x: 64,
            repeat,
            metric: metric.into(),
            value,
            unit: "".into(),
            ok: 1,
            errors: 0,
        }
    }

    #[test]
    fn paired_ratios_are_medians_of_per_round_ratios() {
        let mut rows = Vec::new();
        for (r, ours, theirs) in [(1, 110.0, 100.0), (2, 90.0, 100.0), (3, 120.0, 100.0)] {
            rows.push(s("hybrid", "static", "req_per_s", r, ours));
            rows.push(s("nginx", "static", "req_per_s", r, theirs));
        }
        let t = ratios(&rows);
        assert_eq!(t.head, ["measure", "server", "vs nginx"]);
        assert_eq!(
            t.rows,
            [["keep-alive req/s at 64", "hybrid", "×1.10 (2/3)"]]
        );
    }

    #[test]
    fn a_build_measured_against_is_a_baseline_of_its_own_architecture_only() {
        let mut rows = Vec::new();
        for r in 1..=2 {
            rows.push(s("async", "static", "req_per_s", r, 120.0));
            rows.push(s("hybrid", "static", "req_per_s", r, 90.0));
            rows.push(s("hybrid@before", "static", "req_per_s", r, 100.0));
        }
        let t = ratios(&rows);
        assert_eq!(t.head, ["measure", "server", "vs hybrid@before"]);
        assert_eq!(
            t.rows,
            [["keep-alive req/s at 64", "hybrid", "×0.90 (0/2)"]]
        );
    }

    #[test]
    fn one_round_gives_no_ratio() {
        let rows = vec![
            s("async", "close", "cpu_us", 1, 20.0),
            s("lighttpd", "close", "cpu_us", 1, 30.0),
        ];
        assert!(ratios(&rows).rows.is_empty());
    }

    #[test]
    fn the_upgrade_table_has_a_row_per_server_and_mode_with_failures_by_kind() {
        let mut rows = Vec::new();
        for (r, closed) in [(1, 0.0), (2, 3.0), (3, 1.0)] {
            for (server, mode) in [("async", "ka"), ("async", "close"), ("nginx", "ka")] {
                let nginx_ka = server == "nginx";
                let metrics = [
                    ("upgrades", 5.0),
                    ("answered", 1000.0 * f64::from(r)),
                    ("failed", if nginx_ka { closed } else { 0.0 }),
                    ("refused", 0.0),
                    ("failed.closed", if nginx_ka { closed } else { 0.0 }),
                    ("failed.reset", 0.0),
                ];
                for (m, v) in metrics {
                    let mut row = s(server, "upgrade", &format!("{mode}.{m}"), r, v);
                    row.errors = if nginx_ka { closed as u64 } else { 0 };
                    rows.push(row);
                }
            }
        }
        let sections = sections(None, &rows);
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].heading, "Upgrades under load");
        let t = &sections[0].tables[0];
        assert_eq!(t.id, "upgrade");
        assert_eq!(t.head[2..5], ["mode", "upgrades", "requests answered"]);
        assert_eq!(
            t.rows,
            [
                [
                    "async",
                    "5",
                    "keep-alive",
                    "5",
                    "2000 (1000–3000)",
                    "0",
                    "0",
                    "–"
                ],
                [
                    "async",
                    "5",
                    "connection per request",
                    "5",
                    "2000 (1000–3000)",
                    "0",
                    "0",
                    "–"
                ],
                [
                    "nginx",
                    "5",
                    "keep-alive",
                    "5",
                    "2000 (1000–3000)",
                    "1 (0–3)",
                    "0",
                    "closed 1 (0–3)"
                ],
            ]
        );
    }

    #[test]
    fn a_section_per_workload_measured() {
        let rows = vec![
            s("async", "close", "req_per_s", 1, 20.0),
            s("async", "close", "cpu_us", 1, 30.0),
            s("async", "fresh", "fresh", 1, 1.0),
        ];
        let sections = sections(None, &rows);
        let heads: Vec<_> = sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(heads, ["Connection per request", "Changed file served new"]);
        assert_eq!(
            sections[0].tables[0].rows,
            [["async", "5", "64", "20", "30"]]
        );
        assert_eq!(sections[1].tables[0].rows, [["async", "yes"]]);
    }
}
