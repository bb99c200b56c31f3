//! The soak's descriptor measure: at each sample point a burst of quick looks at
//! /proc/PID/fd over every process of the server (one every [`GAP`] for [`SPAN`]), summarised
//! as the floor (the fewest open), the instant value (the first look) and the most open. A
//! leaked descriptor is never closed, so it raises the floor; a connection, a slow reader or a
//! file being streamed comes and goes within the burst and moves only the instant value and
//! the maximum. Sockets are counted apart, so the floor of the descriptors that are not
//! sockets is there too.
//!
//! The floor of all descriptors still moves with transients that outlast a burst: a slow
//! reader's connection (about 3 s), a keep-alive connection closed after its 1,000th request
//! or at the 75 s idle timeout, a pipe uring drops from its pool, the open-file cache's entry
//! for the file the soak changes every second (dropped at each change, opened again at the next
//! request). So the figure the soak judges is [`Burst::held`]: the descriptors a leak would add
//! and neither a client nor a bounded pool explains — the floor of those that are not sockets,
//! pipes or the changing file, plus the sockets open through the whole burst in a state no
//! client explains (tcp_states.rs): listening, CLOSE_WAIT (the client closed, the server never
//! did), CLOSE, or not TCP. A connection that is live or being closed in order (ESTABLISHED,
//! FIN_WAIT, LAST_ACK, …) is the client's; one the server forgets while its client waits shows
//! as that client's timeout, an error of the soak. Counted apart and bounded: pipes (uring keeps
//! up to 16 spare per worker, src/conn/uring.rs, and drops one that still holds bytes), and the
//! changing file (one open-file cache entry per worker thread per version still being sent).
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Between two looks of a burst: 10 ms, so that a connection-per-request client's socket
/// (open for about a millisecond at 100/s) is seldom seen twice.
pub const GAP: Duration = Duration::from_millis(10);
/// A burst's length: 500 ms, 51 looks; a tenth of the 5 s sample period.
pub const SPAN: Duration = Duration::from_millis(500);

/// One look: the descriptors open, and the sockets, pipes and the changing file among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub all: u64,
    pub sockets: u64,
    pub pipes: u64,
    /// Descriptors of the file the soak changes every second (any version).
    pub changing: u64,
}

impl Count {
    pub fn non_socket(&self) -> u64 {
        self.all - self.sockets
    }

    /// Neither sockets, pipes nor the changing file: files, directories,
    /// epoll/eventfd/inotify/io_uring.
    pub fn other(&self) -> u64 {
        self.all - self.sockets - self.pipes - self.changing
    }
}

/// One quantity over a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spread {
    pub floor: u64,
    pub instant: u64,
    pub max: u64,
}

impl Spread {
    /// The spread of `f` over `looks` (the first look is the instant one); zeros when empty.
    pub fn of(looks: &[Count], f: fn(&Count) -> u64) -> Spread {
        let values = || looks.iter().map(f);
        Spread {
            floor: values().min().unwrap_or(0),
            instant: values().next().unwrap_or(0),
            max: values().max().unwrap_or(0),
        }
    }
}

/// A burst summarised: every descriptor, and those that are not sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Burst {
    pub all: Spread,
    pub non_socket: Spread,
    pub pipes: Spread,
    pub changing: Spread,
    /// The floor of [`Count::other`] plus [`Burst::held_sockets`] (module comment).
    pub held: u64,
    /// The sockets open through the whole burst: connections live or closing in order, and
    /// the rest (listening, CLOSE_WAIT, CLOSE, not TCP).
    pub connections: u64,
    pub held_sockets: u64,
    /// The looks taken.
    pub looks: u64,
}

/// `(pid, fd, target)` of every descriptor of `pids`, as /proc shows them at one instant
/// (a process or descriptor gone between the listing and the read is skipped).
pub type Listing = Vec<(i32, u32, String)>;

/// The descriptors of `pids` now.
pub fn list(pids: &[i32]) -> Listing {
    let mut out = Vec::new();
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut fds: Vec<(i32, u32, String)> = dir
            .flatten()
            .filter_map(|e| {
                let fd = e.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((pid, fd, target.display().to_string()))
            })
            .collect();
        fds.sort();
        out.extend(fds);
    }
    out
}

/// The kinds in `listing`; `changing` is the changing file's path.
pub fn count(listing: &Listing, changing: &str) -> Count {
    let n = |f: &dyn Fn(&str) -> bool| listing.iter().filter(|(_, _, t)| f(t)).count() as u64;
    Count {
        all: listing.len() as u64,
        sockets: n(&is_socket),
        pipes: n(&|t| t.starts_with("pipe:")),
        changing: n(&|t| t.strip_suffix(" (deleted)").unwrap_or(t) == changing),
    }
}

/// The sockets of a listing by inode (`socket:[123]`).
fn socket_inodes(listing: &Listing) -> HashSet<u64> {
    listing
        .iter()
        .filter_map(|(_, _, t)| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// Whether a socket open through a burst in this TCP state (None: not TCP) is held by the
/// server rather than explained by a client: LISTEN (10), CLOSE (7), CLOSE_WAIT (8).
pub fn held_state(state: Option<u8>) -> bool {
    matches!(state, None | Some(7 | 8 | 10))
}

fn is_socket(target: &str) -> bool {
    target.starts_with("socket:")
}

/// Takes a burst over `pids` (listed once: the server's processes do not change under a
/// soak), `changing` the path of the file changed every second; returns its summary and the
/// listing of the look with the fewest descriptors.
pub fn take(pids: &[i32], changing: &str) -> (Burst, Listing) {
    let t0 = Instant::now();
    let mut looks = Vec::new();
    let mut lowest: Option<Listing> = None;
    let mut lasting: Option<HashSet<u64>> = None;
    let mut at = Duration::ZERO;
    while at <= SPAN {
        if let Some(wait) = at.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let listing = list(pids);
        let c = count(&listing, changing);
        let sockets = socket_inodes(&listing);
        lasting = Some(match lasting {
            None => sockets,
            Some(l) => l.intersection(&sockets).copied().collect(),
        });
        if lowest.as_ref().is_none_or(|l| (l.len() as u64) > c.all) {
            lowest = Some(listing);
        }
        looks.push(c);
        at += GAP;
    }
    let lasting = lasting.unwrap_or_default();
    // Unknown states (sock_diag and /proc both failing) count as held: the target then fails
    // rather than passes blind.
    let states = super::tcp_states::states().unwrap_or_default();
    let states: Vec<Option<u8>> = lasting.iter().map(|i| states.get(i).copied()).collect();
    (summarise(&looks, &states), lowest.unwrap_or_default())
}

/// A burst's summary from its looks and the TCP state of each socket open through all of them
/// (None: not a TCP socket).
pub fn summarise(looks: &[Count], lasting: &[Option<u8>]) -> Burst {
    let held_sockets = lasting.iter().filter(|&&s| held_state(s)).count() as u64;
    let other = Spread::of(looks, Count::other);
    Burst {
        all: Spread::of(looks, |c| c.all),
        non_socket: Spread::of(looks, Count::non_socket),
        pipes: Spread::of(looks, |c| c.pipes),
        changing: Spread::of(looks, |c| c.changing),
        held: other.floor + held_sockets,
        connections: lasting.len() as u64 - held_sockets,
        held_sockets,
        looks: looks.len() as u64,
    }
}

/// The level of `series` (`(t_s, value)`, in time order) at the first sample at or after
/// `from_s`, and the largest deviation from it from then on, in % of the level; None when no
/// sample is that late.
pub fn deviation(series: &[(f64, u64)], from_s: f64) -> Option<(u64, f64)> {
    let i = series.iter().position(|&(t, _)| t >= from_s)?;
    let base = series[i].1;
    let pct = series[i..]
        .iter()
        .map(|&(_, v)| (v as f64 - base as f64).abs() / (base.max(1) as f64) * 100.0)
        .fold(0.0, f64::max);
    Some((base, pct))
}

fn kind(target: &str) -> &str {
    if is_socket(target) {
        "socket"
    } else {
        target
    }
}

/// What changed between two floor listings, sockets by count (their inodes change with every
/// connection) and other descriptors by target: `+1 socket, -1 /www/a.txt (deleted)`.
pub fn difference(before: &Listing, after: &Listing) -> String {
    let mut n: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, _, t) in before {
        *n.entry(kind(t)).or_default() -= 1;
    }
    for (_, _, t) in after {
        *n.entry(kind(t)).or_default() += 1;
    }
    let parts: Vec<String> = n
        .into_iter()
        .filter(|&(_, d)| d != 0)
        .map(|(t, d)| format!("{d:+} {t}"))
        .collect();
    if parts.is_empty() {
        "same targets".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(all: u64, sockets: u64, pipes: u64) -> Count {
        Count {
            all,
            sockets,
            pipes,
            changing: 1,
        }
    }

    const ESTABLISHED: u8 = 1;
    const FIN_WAIT2: u8 = 5;
    const LISTEN: u8 = 0x0A;
    const CLOSE_WAIT: u8 = 0x08;

    #[test]
    fn a_burst_keeps_its_first_look_its_floor_and_its_top() {
        // Connections come and go (sockets 20, 14, 23); a file is being streamed in one look,
        // a pipe taken in another.
        let looks = [c(34, 20, 2), c(28, 14, 2), c(38, 23, 2), c(35, 20, 3)];
        // Open through the burst: a listener, two live connections, one being closed, a unix
        // socket, and one the client closed and the server did not.
        let lasting = [
            Some(LISTEN),
            Some(ESTABLISHED),
            Some(ESTABLISHED),
            Some(FIN_WAIT2),
            None,
            Some(CLOSE_WAIT),
        ];
        let b = summarise(&looks, &lasting);
        let spread = |floor, instant, max| Spread {
            floor,
            instant,
            max,
        };
        assert_eq!(b.all, spread(28, 34, 38));
        assert_eq!(b.non_socket, spread(14, 14, 15));
        assert_eq!(b.pipes, spread(2, 2, 3));
        assert_eq!((b.connections, b.held_sockets), (3, 3));
        // Neither sockets, pipes nor the changing file: 11, 11, 12, 11; floor 11, plus the
        // three sockets held.
        assert_eq!(b.held, 14);
        assert_eq!(b.looks, 4);
        assert_eq!(summarise(&[], &[]), Burst::default());
    }

    #[test]
    fn deviation_counts_from_the_first_sample_at_or_after_the_level() {
        let s = [(0.0, 10), (60.0, 20), (65.0, 20), (70.0, 21), (75.0, 19)];
        assert_eq!(deviation(&s, 60.0), Some((20, 5.0)));
        assert_eq!(deviation(&s, 61.0), Some((20, 5.0)));
        assert_eq!(deviation(&s, 70.0), Some((21, 100.0 * 2.0 / 21.0)));
        assert_eq!(deviation(&s, 80.0), None);
        // A flat series after minute one meets a ±1 % band; the rise before it does not count.
        let flat = [(0.0, 12), (60.0, 30), (65.0, 30), (600.0, 30)];
        assert_eq!(deviation(&flat, 60.0), Some((30, 0.0)));
    }

    /// A burst of 51 looks at a server holding `files` descriptors that are not sockets (two
    /// pipes and the changing file among them) and `listeners` listening sockets, up to 8
    /// connections in flight at a look, and `leaked` connections the clients closed
    /// (CLOSE_WAIT, open throughout).
    fn burst(files: u64, listeners: u64, leaked: u64, seed: u64) -> Burst {
        let looks: Vec<Count> = (0..51)
            .map(|i| {
                let inflight = (seed * 7 + i * 13) % 9 * u64::from(i % 5 != 4);
                let sockets = listeners + leaked + inflight;
                c(files + sockets, sockets, 2)
            })
            .collect();
        let mut lasting = vec![Some(LISTEN); listeners as usize];
        lasting.extend(vec![Some(CLOSE_WAIT); leaked as usize]);
        // A keep-alive connection open throughout some bursts and not others.
        lasting.extend(seed.is_multiple_of(3).then_some(Some(ESTABLISHED)));
        summarise(&looks, &lasting)
    }

    #[test]
    fn a_leak_raises_what_is_held_and_in_flight_sockets_do_not() {
        let series = |f: &dyn Fn(u64) -> u64, n: u64| -> Vec<(f64, u64)> {
            (0..n).map(|k| (k as f64 * 5.0, f(k))).collect()
        };
        let calm = series(&|k| burst(14, 2, 0, k).held, 20);
        assert_eq!(deviation(&calm, 60.0), Some((13, 0.0)));
        let instant = series(&|k| burst(14, 2, 0, k).all.instant, 20);
        assert!(deviation(&instant, 60.0).unwrap().1 > 1.0);
        // One connection left in CLOSE_WAIT every minute from minute two on.
        let leaking = series(&|k| burst(14, 2, k / 12, k).held, 40);
        assert!(deviation(&leaking, 60.0).unwrap().1 > 1.0);
        // A file descriptor never closed, one a minute: the floor of all rises too.
        let files = series(&|k| burst(14 + k / 12, 2, 0, k).all.floor, 40);
        assert!(deviation(&files, 60.0).unwrap().1 > 1.0);
    }

    #[test]
    fn listening_closed_and_unclosed_sockets_are_held_live_and_closing_ones_not() {
        let held: Vec<u8> = (1..=11).filter(|&s| held_state(Some(s))).collect();
        assert_eq!(held, vec![7, CLOSE_WAIT, LISTEN]);
        assert!(held_state(None));
    }

    #[test]
    fn differences_count_sockets_by_kind_and_files_by_target() {
        let l = |ts: &[&str]| -> Listing {
            ts.iter()
                .enumerate()
                .map(|(i, t)| (1, i as u32, t.to_string()))
                .collect()
        };
        let before = l(&[
            "socket:[1]",
            "socket:[2]",
            "/www/a.txt",
            "anon_inode:[eventfd]",
        ]);
        let after = l(&["socket:[3]", "/www/a.txt (deleted)", "anon_inode:[eventfd]"]);
        let kinds = |l: &Listing| {
            let n = count(l, "/www/a.txt");
            (n.all, n.sockets, n.pipes, n.changing, n.other())
        };
        assert_eq!(kinds(&before), (4, 2, 0, 1, 1));
        assert_eq!(kinds(&after), (3, 1, 0, 1, 1));
        assert_eq!(
            difference(&before, &after),
            "-1 /www/a.txt, +1 /www/a.txt (deleted), -1 socket"
        );
        assert_eq!(difference(&before, &before), "same targets");
        assert_eq!(
            socket_inodes(&before),
            HashSet::from([1, 2]),
            "sockets by inode"
        );
    }

    #[test]
    fn a_burst_of_this_process_sees_its_own_descriptors_and_listener() {
        let me = std::process::id() as i32;
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (b, lowest) = take(&[me], "/nowhere");
        assert_eq!(b.looks, 51);
        assert!(b.all.floor >= 2 && b.all.floor <= b.all.instant && b.all.instant <= b.all.max);
        assert!(lowest.iter().any(|(_, _, t)| t.ends_with("/stat")));
        // The listener is open throughout and not a connection: it is held.
        assert!(b.held_sockets >= 1);
        assert!(b.held >= 2);
        drop((file, listener));
    }
}
