//! The accept layer, for blocking and evented executors alike: the accept loops, the connection
//! cap and its shedding of idle connections, the back-off after a failed accept, and the
//! shutdown's drain (stop accepting, close idle connections, wait out the grace period).
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::config::ConnLimits;
use crate::shutdown::Stop;
use crate::site::Site;

/// How long to back off after accept() failed for a reason other than shutdown, logging it.
/// Out of descriptors (EMFILE/ENFILE) or memory: 50 ms, so a full descriptor table never turns
/// into a busy loop (the pending connection keeps the listener ready); a connection aborted
/// before we took it (ECONNABORTED) or a signal: no wait.
pub fn backoff(e: &io::Error) -> Duration {
    match e.raw_os_error() {
        Some(libc::ECONNABORTED) | Some(libc::EINTR) => Duration::ZERO,
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            tracing::warn!("accept: {e}; backing off");
            Duration::from_millis(50)
        }
        _ => {
            tracing::warn!("accept: {e}");
            Duration::from_millis(10)
        }
    }
}

/// accept4 with the given flags, without retrying on EINTR (std's accept retries, and a
/// blocking worker would sleep through SIGTERM).
fn accept4(listener: &TcpListener, flags: libc::c_int) -> io::Result<std::net::TcpStream> {
    // SAFETY: accept4 on a listening fd we own; null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh connected socket fd owned by nobody else.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// How often a blocking accept() wakes to notice a shutdown (the listener's SO_RCVTIMEO, which
/// accept honours). Not shutdown(SHUT_RD) on the listener: the socket may be shared with the
/// server that replaced this one (see `upgrade`), and that would stop it for both.
const ACCEPT_POLL: Duration = Duration::from_millis(200);

/// A blocking worker's loop (a `threads` thread, a `processes` worker): accept a connection,
/// serve it to its end, until shutdown. A blocking worker holds one connection at a time, so
/// the worker count is the connection cap: the others wait in the backlog.
///
/// One listener: the worker blocks in accept(), and the kernel wakes one waiting worker per
/// connection. Several (`--listen` twice): a blocking accept() waits on one socket only, so
/// the worker waits in poll() on all of them and then accepts without blocking from those
/// ready (Apache's prefork does the same). Every idle worker wakes for a connection and all but
/// one find nothing (EAGAIN): at the 5 workers of the default, 4 extra wake-ups per connection.
pub fn blocking_loop(
    listeners: &[TcpListener],
    site: &Site,
    limits: &ConnLimits,
    tls: Option<&crate::tls::Tls>,
) {
    let polled = listeners.len() > 1;
    for listener in listeners {
        let sock = socket2::SockRef::from(listener);
        let set = if polled {
            // The file description is shared by this server's workers only, all polling.
            sock.set_nonblocking(true)
        } else {
            sock.set_read_timeout(Some(ACCEPT_POLL))
        };
        if let Err(e) = set {
            tracing::warn!("listener setup: {e}; shutdown waits for a connection");
        }
    }
    let mut next = 0;
    while !Stop.is_set() {
        let ready = if polled {
            match poll_readable(listeners, &mut next) {
                Ok(Some(i)) => accept4(&listeners[i], 0),
                Ok(None) => continue,
                Err(e) => Err(e),
            }
        } else {
            accept4(&listeners[0], 0)
        };
        match ready {
            Ok(stream) => super::blocking::serve(stream, site, &limits.rules, Stop, tls),
            Err(_) if Stop.is_set() => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => std::thread::sleep(backoff(&e)),
        }
    }
}

/// Waits up to [`ACCEPT_POLL`] for one of `listeners` to have a connection; the index of one
/// that has, taking them in turn from `*next` so a busy one cannot starve the others.
fn poll_readable(listeners: &[TcpListener], next: &mut usize) -> io::Result<Option<usize>> {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = ACCEPT_POLL.as_millis() as libc::c_int;
    // SAFETY: a valid array of pollfd of the length passed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let count = fds.len();
    let found = (0..count)
        .map(|k| (*next + k) % count)
        .find(|&i| fds[i].revents != 0);
    if let Some(i) = found {
        *next = (i + 1) % count;
    }
    Ok(found)
}

/// What every connection task of one event loop (or runtime) shares.
#[derive(Debug)]
pub struct Shared {
    pub site: Site,
    pub limits: ConnLimits,
    /// HTTPS: every connection is served by `evented_tls` with this configuration.
    pub tls: Option<crate::tls::Tls>,
    /// Wakes kept-alive connections waiting for their next request so they close: all of them
    /// when shutdown begins (`notify_waiters`), a few when the connection cap is reached
    /// (`notify_one`).
    pub close_idle: Notify,
    /// Wakes new connections still waiting for their first request when shutdown begins. Not
    /// `close_idle`: making room at the cap closes kept-alive connections only (as nginx's
    /// "reusable" ones), never one that has just been accepted and whose request is on its way;
    /// and a `notify_one` permit left over at the cap must not close the next new connection.
    pub stopping: Notify,
    /// Open connections of this event loop / runtime.
    pub active: AtomicUsize,
    /// Signalled when a connection ends while the cap is reached or shutdown is under way (the
    /// acceptor waits on it).
    pub freed: Notify,
}

impl Shared {
    pub fn new(site: Site, limits: ConnLimits, tls: Option<crate::tls::Tls>) -> Shared {
        Shared {
            site,
            limits,
            tls,
            close_idle: Notify::new(),
            stopping: Notify::new(),
            active: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }
}

/// Counts a connection in `Shared::active` for as long as its task lives (the guard handed to
/// `evented::serve`), however the task ends.
pub struct Active(Arc<Shared>);

impl Active {
    pub fn new(shared: &Arc<Shared>) -> Active {
        shared.active.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(shared))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let before = self.0.active.fetch_sub(1, Ordering::AcqRel);
        if before >= self.0.limits.max_conns || Stop.is_set() {
            self.0.freed.notify_one();
        }
    }
}

/// How many idle connections to close at once when the cap is reached (nginx drains 32).
pub const SHED_BATCH: usize = 32;

/// Accepts a connection for an event loop. It is registered as not ready: without deferred
/// accept (`--no-defer-accept`), on a busy server the client has usually not sent its request
/// yet, and a first read tried at once failed with EAGAIN for 97% of connections
/// (`h2load --h1 -c64 -H 'Connection: close'`, perf's syscall tracepoints: 1.97 `recvfrom` per
/// connection); waiting for epoll to report the request (an edge-triggered registration reports
/// data that is already there at once), as nginx does: 1.00. (With deferred accept, the default,
/// the request is there already and `evented::serve` reads it at once, see its `read_at_once`.)
async fn accept(listeners: &Listeners) -> io::Result<tokio::net::TcpStream> {
    let stream = std::future::poll_fn(|cx| listeners.poll_accept(cx)).await?;
    tokio::net::TcpStream::from_std(stream)
}

/// An event loop's listening sockets (one per `--listen` address), registered with its reactor,
/// and which one to look at first next time: each accept starts at the socket after the one
/// that last gave a connection, so a busy address cannot starve the others.
struct Listeners {
    sockets: Vec<AsyncFd<TcpListener>>,
    next: std::cell::Cell<usize>,
}

impl Listeners {
    fn register(listeners: Vec<TcpListener>) -> io::Result<Listeners> {
        let sockets = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true)?;
                // SAFETY: the AsyncFd owns the listener, which nothing closes or replaces while
                // registered.
                Ok(unsafe { AsyncFd::register_with_interest(l, Interest::READABLE)? })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners {
            sockets,
            next: std::cell::Cell::new(0),
        })
    }

    /// Accepts from the first socket, in turn, that has a connection; Pending (each socket's
    /// readiness registered for a wake-up) when none has.
    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<std::net::TcpStream>> {
        use std::task::Poll;
        let count = self.sockets.len();
        for k in 0..count {
            let i = (self.next.get() + k) % count;
            loop {
                let mut guard = match self.sockets[i].poll_read_ready(cx) {
                    Poll::Ready(Ok(guard)) => guard,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                };
                match guard.try_io(|l| accept4(l.get_ref(), libc::SOCK_NONBLOCK)) {
                    Ok(result) => {
                        self.next.set((i + 1) % count);
                        return Poll::Ready(result);
                    }
                    // Not ready after all: readiness cleared, polled again (registers the waker).
                    Err(_would_block) => continue,
                }
            }
        }
        Poll::Pending
    }

    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.sockets
            .iter()
            .map(|s| s.get_ref().as_raw_fd())
            .collect()
    }
}

/// At the connection cap: asks some idle connections to close, and waits until one has.
/// Returns the signal if one came first.
async fn make_room(shared: &Shared, signals: &mut Signals) -> Option<Asked> {
    while shared.active.load(Ordering::Acquire) >= shared.limits.max_conns {
        for _ in 0..SHED_BATCH {
            shared.close_idle.notify_one();
        }
        let freed = shared.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if shared.active.load(Ordering::Acquire) >= shared.limits.max_conns {
            tokio::select! {
                _ = freed => {}
                asked = signals.recv() => return Some(asked),
            }
        }
    }
    None
}

/// SIGTERM, SIGINT and SIGUSR2, as tokio streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

/// What a signal asks of an event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Stop,
    /// SIGUSR2: replace this server (a master) or drain (a worker whose master was replaced).
    Upgrade,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    async fn recv(&mut self) -> Asked {
        tokio::select! {
            _ = self.term.recv() => Asked::Stop,
            _ = self.int.recv() => Asked::Stop,
            _ = self.usr2.recv() => Asked::Upgrade,
        }
    }
}

/// What an event loop is to its server: how it answers SIGUSR2 and how it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server's own process (`async`, `work-stealing`): SIGUSR2 starts the successor, then
    /// drains. Accepts greedily: no other process would take the connections it leaves.
    Server,
    /// One of several worker processes sharing the listener (`hybrid`): SIGUSR2 means its master
    /// was replaced, so it drains. Accepts one connection per turn (see [`evented_loop`]).
    Worker,
}

/// The accept loop of one event loop: spawns a task per connection until SIGINT/SIGTERM, then
/// stops accepting, tells idle connections to close, and waits (up to `grace`) for the rest.
/// On SIGUSR2, as `role` says: replace the server, then drain (see `upgrade`).
/// `deferred`: the listener has TCP_DEFER_ACCEPT (see `evented::serve`'s `read_at_once`).
///
/// A [`Role::Worker`] takes one connection per turn (nginx's `multi_accept off`): after each
/// accept the loop lets the new connection's task run (and a `/cpu` request compute) before it
/// takes another, so simultaneous connections are left to the idle workers the kernel also
/// woke, instead of one worker taking them all and running their workloads one after another.
/// It costs a connection-per-request load more `epoll_wait`s (each check of the queue comes
/// sooner, so finds it empty more often), which a [`Role::Server`] loop, alone on its
/// listener, does not pay: it accepts until the queue is empty.
pub async fn evented_loop(
    listeners: Vec<TcpListener>,
    deferred: bool,
    shared: Arc<Shared>,
    signals: crate::shutdown::Signals,
    grace: Duration,
    role: Role,
) -> io::Result<()> {
    let listeners = Listeners::register(listeners)?;
    // Register tokio's handlers, and only then let the signals through.
    let mut sig = Signals::new()?;
    signals.unblock()?;
    let drain_only = loop {
        let asked = match make_room(&shared, &mut sig).await {
            Some(asked) => Some(asked),
            None => accept_one(&listeners, &shared, deferred, role, &mut sig).await,
        };
        match (asked, role) {
            (None, _) => {}
            (Some(Asked::Stop), _) => break false,
            (Some(Asked::Upgrade), Role::Worker) => break true,
            (Some(Asked::Upgrade), Role::Server) => {
                let fds = listeners.fds();
                let replaced =
                    tokio::task::spawn_blocking(move || crate::upgrade::replace_self(&fds));
                if replaced.await.unwrap_or(false) {
                    break true;
                }
            }
        }
    };
    drop(listeners);
    drain(&shared, grace, drain_only).await;
    Ok(())
}

/// Accepts one connection and spawns its task, unless a signal comes first.
async fn accept_one(
    listeners: &Listeners,
    shared: &Arc<Shared>,
    deferred: bool,
    role: Role,
    sig: &mut Signals,
) -> Option<Asked> {
    tokio::select! {
        r = accept(listeners) => match r {
            Ok(stream) => {
                // Counted now, not when the task first runs, so the cap check sees it.
                let guard = Active::new(shared);
                if shared.tls.is_some() {
                    tokio::spawn(super::evented_tls::serve(stream, Arc::clone(shared), guard));
                } else {
                    tokio::spawn(super::evented::serve(stream, Arc::clone(shared), guard, deferred));
                }
                if role == Role::Worker {
                    RunReadyFirst(false).await;
                }
            }
            Err(e) => tokio::time::sleep(backoff(&e)).await,
        },
        asked = sig.recv() => return Some(asked),
    }
    None
}

/// Lets the tasks already queued (the connection just spawned) run before the accept loop goes
/// on, without waiting a reactor turn. tokio's `yield_now` defers the task until after the next
/// poll of the I/O driver: one more `epoll_wait` per accepted connection (measured with
/// `compare --workload syscalls`, `async`, connection per request: 1.23 `epoll_wait` per
/// connection with `yield_now`, 0.24 before the loop yielded at all). Waking itself puts this
/// task at the back of the run queue instead, behind the new connection's task.
struct RunReadyFirst(bool);

impl std::future::Future for RunReadyFirst {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Shutdown: idle connections close (`drain_only`: after their next request), the rest get up
/// to `grace` to finish.
async fn drain(shared: &Shared, grace: Duration, drain_only: bool) {
    tracing::info!("stopping, grace {grace:?}");
    if drain_only {
        Stop.drain();
    } else {
        Stop.trigger();
        shared.close_idle.notify_waiters();
        shared.stopping.notify_waiters();
    }
    // Every connection task holds an `Active`; each one ending wakes us (Stop is set).
    let drained = tokio::time::timeout(grace, async {
        loop {
            let freed = shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if shared.active.load(Ordering::Acquire) == 0 {
                return;
            }
            freed.await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    crate::access_log::flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_waits_only_on_exhaustion() {
        let err = io::Error::from_raw_os_error;
        assert_eq!(backoff(&err(libc::ECONNABORTED)), Duration::ZERO);
        assert_eq!(backoff(&err(libc::EMFILE)), Duration::from_millis(50));
        assert_eq!(backoff(&err(libc::ENFILE)), Duration::from_millis(50));
    }
}
