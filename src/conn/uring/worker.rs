//! The `uring` worker's loop: one ring per worker, one `io_uring_enter` per turn that submits
//! the turn's operations and waits for completions (or the earliest deadline), then every
//! completion handed to its connection. Also the worker-wide parts: the multishot accepts (one
//! per listening address), the
//! connection cap and its shedding of idle connections (the accept layer's rules and back-off,
//! `conn::accept`), the termination signals read through the ring, and the graceful drain.
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::cgi::Orphan;
use super::ring::{self, BufRing, Op, Token};
use super::timers::Deadlines;
use super::tls::Tls;
use super::{Phase, Pipe, Slot};
use crate::config::ConnLimits;
use crate::conn::accept::{backoff, SHED_BATCH};
use crate::shutdown::{Signals, Stop};
use crate::site::Site;

/// The accept operation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Not queued; queue it.
    Idle,
    Armed,
    /// At the connection cap: not queued until a connection closes.
    Paused,
    /// Accept failed (out of descriptors): not queued until then.
    BackOff(Instant),
    /// Shutdown.
    Stopped,
}

/// One listening socket of a worker and its accept operation (the operation's token carries
/// the socket's index in place of a connection slot).
struct Acceptor {
    listener: TcpListener,
    state: Accept,
    /// An accept operation is in the kernel (its last completion, without MORE, has not come):
    /// the worker does not exit before it has (see [`Worker::accept_ended`]).
    live: bool,
    /// Sweeps of the accept queue made since shutdown began (see [`Worker::accept_ended`]).
    sweeps: u8,
    /// With the access log on, the peer address the single-shot accept fills in.
    peer: Box<(libc::sockaddr_storage, libc::socklen_t)>,
}

/// One worker: its ring, its connections, and what they share.
pub struct Worker {
    // Declared first, so dropped first: closing the ring ends every operation before the
    // buffers they point into (the provided group, a reply in a slot) are freed.
    ring: IoUring,
    pub(super) bufs: BufRing,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<u32>,
    pub(super) timers: Deadlines,
    pub(super) site: Site,
    pub(super) limits: ConnLimits,
    /// The time, read once per turn (and after inline work).
    pub(super) now: Instant,
    pub(super) pipes: Vec<Pipe>,
    /// Connections taking their last look, polled after the next turn.
    pub(super) looks: Vec<(u32, u16)>,
    accepts: Vec<Acceptor>,
    /// The access log is on, or CGI scripts are run (REMOTE_ADDR): accept one connection at a
    /// time with its address.
    log_peers: bool,
    /// CGI scripts whose run is over, waiting to be reaped (see [`super::cgi`]).
    pub(super) orphans: Vec<Option<Orphan>>,
    signal: OwnedFd,
    siginfo: Box<[u8; std::mem::size_of::<libc::signalfd_siginfo>()]>,
    active: usize,
    grace: Duration,
    drain_until: Option<Instant>,
    cqes: Vec<cqueue::Entry>,
    /// HTTPS: the server configuration every connection's TLS session is made from.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Worker {
    /// Sets up the ring, its provided buffers and its direct-descriptor table for `listeners`.
    /// `signals` are blocked in this process; they are read through the ring.
    pub fn new(
        listeners: Vec<TcpListener>,
        site: Site,
        limits: ConnLimits,
        grace: Duration,
        signals: &Signals,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Worker> {
        let ring = ring::build(ring::SQ_ENTRIES)?;
        let bufs = BufRing::new(ring::BUFFERS, ring::BUFFER_SIZE);
        bufs.register(&ring)?;
        // One direct descriptor per connection under the cap, and some room for the accepts
        // already under way when the cap is reached; never more than the descriptor limit
        // allows (the kernel refuses a larger table).
        let table = (limits.max_conns as u64 + 64).min(crate::descriptors::nofile_limit());
        ring.submitter()
            .register_files_sparse(table.clamp(1, u32::MAX as u64) as u32)?;
        // SAFETY: a valid signal set; the descriptor is new and ours.
        let sfd = unsafe { libc::signalfd(-1, signals.set().as_ref(), libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let log_peers = crate::access_log::enabled() || site.cgi().is_some();
        Ok(Worker {
            ring,
            bufs,
            slots: Vec::new(),
            free: Vec::new(),
            timers: Deadlines::default(),
            site,
            limits,
            now: Instant::now(),
            pipes: Vec::new(),
            looks: Vec::new(),
            accepts: listeners
                .into_iter()
                .map(|listener| Acceptor {
                    listener,
                    state: Accept::Idle,
                    live: false,
                    sweeps: 0,
                    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
                    peer: Box::new((unsafe { std::mem::zeroed() }, 0)),
                })
                .collect(),
            log_peers,
            orphans: Vec::new(),
            // SAFETY: the descriptor was just created.
            signal: unsafe { OwnedFd::from_raw_fd(sfd) },
            siginfo: Box::new([0; std::mem::size_of::<libc::signalfd_siginfo>()]),
            active: 0,
            grace,
            drain_until: None,
            cqes: Vec::with_capacity(ring::CQ_ENTRIES as usize),
            tls,
        })
    }

    /// Serves until a termination signal, then drains: idle connections close, the rest get
    /// the grace period.
    pub fn run(mut self) -> io::Result<()> {
        self.read_signal();
        for i in 0..self.accepts.len() {
            self.arm_accept(i);
        }
        loop {
            let accepting = self.accepts.iter().any(|a| a.live);
            if self.drain_until.is_some() && self.active == 0 && !accepting {
                break;
            }
            let looks = std::mem::take(&mut self.looks);
            self.wait(!looks.is_empty())?;
            self.now = Instant::now();
            self.reap();
            for (idx, gen) in looks {
                let s = &self.slots[idx as usize];
                if s.gen == gen && s.phase == Phase::Look {
                    self.drive(idx);
                }
            }
            self.expire();
            self.expire_orphans();
            for i in 0..self.accepts.len() {
                if let Accept::BackOff(until) = self.accepts[i].state {
                    if self.now >= until {
                        self.accepts[i].state = Accept::Idle;
                        self.arm_accept(i);
                    }
                }
            }
            if self.drain_until.is_some_and(|t| self.now >= t) {
                tracing::warn!("grace period over with requests still in flight; exiting");
                break;
            }
        }
        crate::access_log::flush();
        Ok(())
    }

    /// Queues `e`, submitting first if the submission queue is full.
    ///
    /// # Safety
    /// Whatever `e` points to must stay valid until its completion arrives.
    pub(super) unsafe fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: the caller's promise.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                tracing::warn!("io_uring submit: {err}");
            }
        }
    }

    /// One turn's `io_uring_enter`: submits what was queued and waits for a completion, until
    /// the earliest deadline (`at_once`: not at all, only collecting what the kernel has).
    fn wait(&mut self, at_once: bool) -> io::Result<()> {
        self.bufs.publish();
        let until = [
            self.timers.next(),
            self.drain_until,
            self.backoff_until(),
            self.orphan_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = if at_once {
            Some(Duration::ZERO)
        } else {
            until.map(|t| t.saturating_duration_since(Instant::now()))
        };
        let r = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn backoff_until(&self) -> Option<Instant> {
        let until = |a: &Acceptor| match a.state {
            Accept::BackOff(t) => Some(t),
            _ => None,
        };
        self.accepts.iter().filter_map(until).min()
    }

    /// Hands every completion to its owner.
    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion());
        // Every byte answered in this turn is in these completions (or held from earlier ones):
        // one inotify check serves the turn's file lookups.
        crate::site::open_files::turn_begins();
        for cqe in cqes.drain(..) {
            self.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
        self.cqes = cqes;
    }

    fn complete(&mut self, data: u64, res: i32, flags: u32) {
        let t = Token::decode(data);
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        match t.op {
            Op::Ignore => {}
            Op::Accept => self.on_accept(t.slot as usize, res, more),
            Op::Signal => self.begin_shutdown(self.signalled_upgrade()),
            Op::Reap => self.on_reap(t.slot),
            op => {
                let live = self
                    .slots
                    .get(t.slot as usize)
                    .is_some_and(|s| s.gen == t.gen && s.phase != Phase::Free);
                if !live {
                    if let Some(bid) = bid {
                        self.bufs.give_back(bid);
                    }
                    return;
                }
                match op {
                    Op::Recv => self.on_recv(t.slot, res, bid, more),
                    Op::Send => self.on_send(t.slot, res),
                    Op::Read => self.on_read(t.slot, res),
                    Op::Shutdown => self.on_shutdown(t.slot),
                    Op::CgiRead => self.on_cgi_read(t.slot, res),
                    Op::CgiWrite => self.on_cgi_write(t.slot, res),
                    _ => self.on_splice(t.slot, op, res),
                }
            }
        }
    }

    /// Pops the deadlines that are due; a slot whose real deadline is later is filed again.
    fn expire(&mut self) {
        while let Some(idx) = self.timers.pop_due(self.now) {
            let s = &mut self.slots[idx as usize];
            s.armed = None;
            match s.deadline {
                Some(at) if at <= self.now => self.expired(idx),
                Some(at) => self.timers.set(idx, &mut s.armed, at),
                None => {}
            }
        }
    }

    /// Queues the accept: multishot into direct descriptors, or with the access log on, one at
    /// a time with the peer's address (multishot accept reports none).
    fn arm_accept(&mut self, i: usize) {
        if self.accepts[i].state != Accept::Idle || Stop.is_set() {
            return;
        }
        if self.active >= self.limits.max_conns {
            self.accepts[i].state = Accept::Paused;
            return;
        }
        let e = self.accept_entry(i);
        // SAFETY: the address buffer is boxed in the worker, which outlives the ring.
        unsafe { self.push(e) };
        self.accepts[i].live = true;
        self.accepts[i].state = Accept::Armed;
    }

    /// The accept operation: multishot into direct descriptors, or with the access log on, one
    /// at a time with the peer's address (multishot accept reports none).
    fn accept_entry(&mut self, i: usize) -> squeue::Entry {
        let a = &mut self.accepts[i];
        let fd = types::Fd(a.listener.as_raw_fd());
        let token = Token::new(Op::Accept, i as u32, 0).encode();
        let e = if self.log_peers {
            a.peer.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let addr = std::ptr::addr_of_mut!(a.peer.0).cast();
            opcode::Accept::new(fd, addr, std::ptr::addr_of_mut!(a.peer.1))
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build()
        } else {
            opcode::AcceptMulti::new(fd)
                .allocate_file_index(true)
                .build()
        };
        e.user_data(token)
    }

    /// The completion of listener `i`'s accept.
    fn on_accept(&mut self, i: usize, res: i32, more: bool) {
        if i >= self.accepts.len() {
            return;
        }
        if !more {
            self.accepts[i].live = false;
            if self.accepts[i].state == Accept::Stopped {
                self.accept_ended(i);
            }
        }
        let a = &mut self.accepts[i];
        if !more && a.state == Accept::Armed {
            a.state = Accept::Idle;
        }
        if res < 0 {
            if res != -libc::ECANCELED && a.state == Accept::Idle {
                let wait = backoff(&io::Error::from_raw_os_error(-res));
                a.state = Accept::BackOff(self.now + wait);
            }
            return;
        }
        // A connection the kernel accepted for this worker (a multishot accept may complete
        // after shutdown began) is served like any other: closing it unanswered would drop a
        // request the client has already sent.
        let fd = res as u32;
        let peer = if self.log_peers {
            peer_addr(&self.accepts[i].peer)
        } else {
            None
        };
        let idx = self.alloc_slot(fd, peer);
        self.slots[idx as usize].listener = i.min(u8::MAX as usize) as u8;
        if let Some(config) = &self.tls {
            match Tls::new(config) {
                Some(tls) => self.slots[idx as usize].tls = Some(tls),
                None => {
                    self.close(idx, false);
                    return self.arm_accept(i);
                }
            }
        }
        self.drive(idx);
        if self.active >= self.limits.max_conns {
            self.pause_accept();
            self.shed();
        }
        self.arm_accept(i);
    }

    fn alloc_slot(&mut self, fd: u32, peer: Option<SocketAddr>) -> u32 {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::free());
            (self.slots.len() - 1) as u32
        });
        let s = &mut self.slots[idx as usize];
        let gen = s.gen.wrapping_add(1);
        *s = Slot {
            conn: crate::http::conn::Conn::new(self.now),
            fd,
            gen,
            peer,
            phase: Phase::Read { idle: true },
            ..Slot::free()
        };
        self.active += 1;
        idx
    }

    /// The address of the listener that accepted connection `idx` (a CGI script's SERVER_ADDR
    /// and SERVER_PORT: a direct descriptor has no getsockname).
    pub(super) fn local_addr(&self, idx: u32) -> Option<SocketAddr> {
        let i = self.slots[idx as usize].listener as usize;
        self.accepts.get(i)?.listener.local_addr().ok()
    }

    /// A connection's slot was freed: below the cap again, accepting resumes.
    pub(super) fn freed(&mut self) {
        self.active -= 1;
        for i in 0..self.accepts.len() {
            if self.accepts[i].state == Accept::Paused && self.active < self.limits.max_conns {
                self.accepts[i].state = Accept::Idle;
                self.arm_accept(i);
            }
        }
    }

    /// Shutdown began and the accept operation has ended: its wait-queue entry is off the
    /// listening socket now, while this process still runs. The socket wakes one waiting
    /// accept per connection (io_uring accepts wait exclusively), so a connection whose wake
    /// came to this worker's accept just before it was cancelled stays queued and no other
    /// worker is woken for it; when every client is waiting in such connections (each
    /// reconnecting kept-alive client of an upgrade at once), no new connection ever wakes
    /// anyone and all of them time out. So the queue is swept once: what is queued now is
    /// accepted (an accept tries at once, before it waits) and served, and the accept is
    /// cancelled right behind it in the same submission. And the worker never exits while its
    /// accept is queued (see `run`): a dying ring's entry stays on the socket until the
    /// kernel's teardown of the ring runs, and takes every wake meanwhile (compare's `upgrade`
    /// without these two: 64 of 64 connections timed out in 1 round of 5,
    /// docs/results/uring-upgrade-2026-11-29-repro).
    fn accept_ended(&mut self, i: usize) {
        if self.accepts[i].sweeps > 0
            || self.active >= self.limits.max_conns
            || !listener_pending(&self.accepts[i].listener)
        {
            return;
        }
        self.accepts[i].sweeps += 1;
        let e = self.accept_entry(i);
        let cancel = opcode::AsyncCancel::new(Token::new(Op::Accept, i as u32, 0).encode())
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        // SAFETY: as in `arm_accept`; the cancel has no buffer.
        unsafe {
            self.push(e);
            self.push(cancel);
        }
        self.accepts[i].live = true;
    }

    /// At the connection cap: stop accepting until a connection closes.
    fn pause_accept(&mut self) {
        for i in 0..self.accepts.len() {
            if self.accepts[i].state == Accept::Armed {
                let e = opcode::AsyncCancel::new(Token::new(Op::Accept, i as u32, 0).encode())
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(0);
                // SAFETY: no buffer.
                unsafe { self.push(e) };
            }
            let a = &mut self.accepts[i];
            if matches!(a.state, Accept::Armed | Accept::Idle) {
                a.state = Accept::Paused;
            }
        }
    }

    /// Whether idle connections are being closed to make room (the cap is reached).
    pub(super) fn accept_paused(&self) -> bool {
        self.accepts.iter().any(|a| a.state == Accept::Paused)
    }

    /// Makes room at the cap: closes up to [`SHED_BATCH`] kept-alive connections waiting for
    /// their next request (never one just accepted, whose request is on its way); while the cap
    /// holds, a connection that becomes idle is closed too (see `drive`).
    fn shed(&mut self) {
        let idle: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| {
                let s = &self.slots[i as usize];
                s.phase == (Phase::Read { idle: true }) && s.conn.served() > 0
            })
            .take(SHED_BATCH)
            .collect();
        for idx in idle {
            self.close(idx, false);
        }
    }

    /// Queues the read of the termination signals' descriptor.
    fn read_signal(&mut self) {
        let buf = self.siginfo.as_mut_ptr();
        let len = self.siginfo.len() as u32;
        let e = opcode::Read::new(types::Fd(self.signal.as_raw_fd()), buf, len)
            .build()
            .user_data(Token::new(Op::Signal, 0, 0).encode());
        // SAFETY: the buffer is boxed in the worker, which outlives the ring.
        unsafe { self.push(e) };
    }

    /// Whether the signal just read is SIGUSR2: this worker's master was replaced (see
    /// `upgrade`), so drain rather than stop.
    fn signalled_upgrade(&self) -> bool {
        // SAFETY: the buffer holds the signalfd_siginfo the completed read filled in.
        let info = unsafe { &*(self.siginfo.as_ptr() as *const libc::signalfd_siginfo) };
        info.ssi_signo == libc::SIGUSR2 as u32
    }

    /// SIGTERM/SIGINT: stop accepting, let idle connections take a last look and close, and
    /// give the rest the grace period. SIGUSR2 (`drain`): the same, but an idle keep-alive
    /// connection is kept until its next request, answered with `Connection: close`.
    fn begin_shutdown(&mut self, drain: bool) {
        if self.drain_until.is_some() {
            return;
        }
        tracing::info!("stopping, grace {:?}", self.grace);
        if drain {
            Stop.drain();
        } else {
            Stop.trigger();
        }
        self.drain_until = Some(self.now + self.grace);
        self.pause_accept();
        for a in &mut self.accepts {
            a.state = Accept::Stopped;
        }
        for idx in 0..self.slots.len() as u32 {
            match self.slots[idx as usize].phase {
                Phase::Read { idle: true } => self.drive(idx),
                Phase::Cgi => self.cgi_stop(idx),
                _ => {}
            }
        }
    }
}

/// Whether connections are waiting in the listening socket's accept queue.
fn listener_pending(listener: &TcpListener) -> bool {
    let mut p = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

/// The peer's address from an accept's sockaddr.
fn peer_addr(peer: &(libc::sockaddr_storage, libc::socklen_t)) -> Option<SocketAddr> {
    let ss = &peer.0;
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let port = u16::from_be(sin.sin_port);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn peer_addresses_are_read_from_either_family() {
        // SAFETY: plain data.
        let mut peer: (libc::sockaddr_storage, libc::socklen_t) =
            (unsafe { std::mem::zeroed() }, 0);
        // SAFETY: the storage is large enough for a sockaddr_in.
        let sin = unsafe { &mut *(&mut peer.0 as *mut _ as *mut libc::sockaddr_in) };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(Ipv4Addr::new(127, 0, 0, 1)).to_be();
        sin.sin_port = 8080u16.to_be();
        let want = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
        assert_eq!(peer_addr(&peer), Some(want));
        peer.0.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(peer_addr(&peer), None);
    }
}
