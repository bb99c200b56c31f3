//! The io_uring executor: many connections per worker, each carried out as operations queued on
//! the worker's ring (receive, send, splice, read, close) whose completions move it on. It does
//! what the connection state machine (`http::conn`) says and holds no protocol rule. Used by the
//! `uring` architecture; the loop around it (accept, cap, signals, the wait) is [`worker`].
//!
//! Completion, not readiness: the other event loops ask the kernel which sockets are ready, then
//! make a syscall per read and per write. Here the reads and writes themselves are queued; the
//! kernel does them when it can and reports the results, and one `io_uring_enter` per loop turn
//! submits the whole batch and collects the completions.
//!
//! Per connection: one multishot receive stays armed from accept to close, taking a buffer from
//! the worker's provided-buffer group only when bytes arrive (an idle connection holds no
//! buffer); the socket is a direct descriptor (no file-table lookup per operation). A reply goes
//! out with one `SEND` (a small body behind the head, MSG_MORE when a file body follows); a file
//! body is spliced file → pipe → socket through the ring, and a small file not yet in the
//! open-file cache is read through the ring, never by a blocking read on the loop. `/cpu` runs
//! inline; `/io` and every deadline are entries of [`timers`], waited for by the ring. Over
//! HTTPS the bytes pass through rustls on their way in and out ([`tls`]). A CGI script's pipes
//! are read and written through the ring too ([`cgi`]).
pub mod cgi;
pub mod ring;
pub mod timers;
pub mod tls;
pub mod worker;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use io_uring::{opcode, squeue, types};

use super::{after_work, log_request, plan, plan_at_head, refusal};
use crate::http::conn::{Conn, Rules, Step, LINGER, LINGER_BYTES};
use crate::http::Request;
use crate::shutdown::Stop;
use crate::site::{Body, Part, Plan, Reply, Work, SMALL_FILE};
use ring::{Op, Token};
pub use worker::Worker;

/// Whether io_uring can be used here (see [`ring::probe`]).
pub fn available() -> Result<(), String> {
    ring::probe()
}

/// While a reply is being sent, bytes the client sends ahead (pipelined requests) are kept, up
/// to this much; beyond it the receive is cancelled until the state machine asks for bytes
/// again, so a client cannot grow a connection's buffer without bound.
const RECV_HOLD: usize = 64 * 1024;

/// A closing connection with operations still out cancels them again this often (see
/// [`Worker::cancel_all`]).
const CANCEL_AGAIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Where a connection is, as far as the executor is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    /// Waiting for bytes (`idle`: between requests, so it may be shed at the cap).
    Read {
        idle: bool,
    },
    /// Shutdown began while idle: after one more turn of the ring, poll again.
    Look,
    /// Waiting out an `/io` request.
    Work,
    /// Waiting on a CGI script's output (or for its run's operations to end, see [`cgi`]).
    Cgi,
    /// A reply is being written.
    Write,
    /// Half-closed, draining what the client still sends.
    Linger,
    /// Cancelled and closed; freed once no operation of it is in flight.
    Closing,
}

/// The multishot receive of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Off,
    On,
    Cancelling,
}

/// One connection. Every open connection holds one of these in the worker's slot table (about
/// 190 bytes); a request being answered adds a [`Busy`].
struct Slot {
    conn: Conn,
    /// Bytes received and not yet consumed (part of a request, or pipelined ones).
    buf: Vec<u8>,
    busy: Option<Box<Busy>>,
    /// The current deadline, and the slot's entry in the worker's deadline set.
    deadline: Option<Instant>,
    armed: Option<Instant>,
    /// The client's address: known when accepted one at a time (the access log, CGI).
    peer: Option<SocketAddr>,
    /// The direct descriptor.
    fd: u32,
    /// The index of the listener that accepted it.
    listener: u8,
    gen: u16,
    phase: Phase,
    recv: Recv,
    /// Operations in flight other than the receive; their buffers are in `busy`.
    inflight: u8,
    /// Bytes drained while lingering.
    drained: u32,
    /// HTTPS: the connection's TLS state (see [`tls`]).
    tls: Option<Box<tls::Tls>>,
}

impl Slot {
    fn free() -> Slot {
        Slot {
            conn: Conn::new(Instant::now()),
            buf: Vec::new(),
            busy: None,
            deadline: None,
            armed: None,
            peer: None,
            fd: 0,
            listener: 0,
            gen: 0,
            phase: Phase::Free,
            recv: Recv::Off,
            inflight: 0,
            drained: 0,
            tls: None,
        }
    }

    fn token(&self, op: Op, slot: u32) -> u64 {
        Token::new(op, slot, self.gen).encode()
    }
}

/// A request being answered and its reply being written. Every buffer an operation in flight
/// points into lives here, and a slot is freed only when none is in flight.
#[derive(Default)]
struct Busy {
    req: Option<Request>,
    /// What is being sent: the head (with a small body behind it), then each generated part.
    out: Vec<u8>,
    sent: usize,
    /// MSG_MORE on `out`: more of the body follows.
    more: bool,
    file: Option<Arc<File>>,
    parts: std::vec::IntoIter<Part>,
    /// The file range being read or spliced: (offset, bytes left).
    span: Option<(u64, u64)>,
    pipe: Option<Pipe>,
    /// Bytes spliced into the pipe and not yet out of it.
    in_pipe: u32,
    /// A file operation failed or found the file shorter than promised: close.
    failed: bool,
    work: Option<Work>,
    /// The plan made at the head when a CGI folder is served (see `plan_at_head`).
    plan: Option<Plan>,
    /// A CGI script's request body, kept as the state machine hands it out.
    body: Vec<u8>,
    /// The CGI script being run.
    cgi: Option<Box<cgi::Run>>,
}

/// A pipe for splicing a file body (file → pipe → socket: the pages are not copied through user
/// space). Kept for reuse by the worker.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: u32,
}

/// Pipes kept for reuse (each is two descriptors; a connection sending a file holds one).
const SPARE_PIPES: usize = 16;

/// Pipe capacity asked for: 1 MiB (the default `pipe-max-size`), so a 1 MiB file goes out in
/// one splice pair instead of sixteen with the default 64 KiB.
const PIPE_SIZE: libc::c_int = 1 << 20;

impl Pipe {
    fn new() -> std::io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our pipe; failure leaves the default size, which F_GETPIPE_SZ reads.
        let mut cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        if cap < 0 {
            // SAFETY: as above.
            cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        Ok(Pipe {
            r,
            w,
            cap: cap.max(4096) as u32,
        })
    }
}

impl Worker {
    /// Carries out the state machine's steps until one needs a completion or a deadline.
    fn drive(&mut self, idx: u32) {
        loop {
            let stopping = Stop.closes_idle();
            let paused = self.accept_paused();
            let s = &mut self.slots[idx as usize];
            match s.conn.poll(&self.limits.rules, self.now, &s.buf, stopping) {
                Step::Read { deadline, idle } => {
                    if idle && s.conn.served() > 0 && paused {
                        // Kept alive while the cap holds: close it to make room.
                        return self.close(idx, false);
                    }
                    s.phase = Phase::Read { idle };
                    if s.buf.is_empty() && s.buf.capacity() > 0 {
                        // Idle: give the buffer back while we wait.
                        s.buf = Vec::new();
                    }
                    if let Some(tls) = s.tls.as_mut().filter(|_| idle) {
                        tls.idle();
                    }
                    self.set_deadline(idx, deadline);
                    self.arm_recv(idx);
                    return;
                }
                Step::LastLook => {
                    s.phase = Phase::Look;
                    s.deadline = None;
                    self.looks.push((idx, s.gen));
                    return;
                }
                Step::Request(req, used) => {
                    s.buf.drain(..used);
                    s.busy = Some(busy_for(&self.site, &mut s.conn, req));
                }
                Step::Discard(n) => {
                    s.buf.drain(..n);
                }
                // A CGI script's body (kept: `plan_at_head`).
                Step::Body(n) => {
                    if let Some(b) = s.busy.as_mut() {
                        b.body.extend(s.buf.drain(..n));
                    }
                }
                Step::Respond => return self.respond(idx),
                Step::Refuse(status) => {
                    let reply = refusal(&self.site, status);
                    s.busy = Some(Box::default());
                    return self.start_reply(idx, reply);
                }
                Step::Close { linger } => return self.close(idx, linger),
            }
        }
    }

    /// The request is whole (and its body dropped): plan the answer, run `/cpu` inline, or wait
    /// out `/io` as a deadline.
    fn respond(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(b) = s.busy.as_mut() else {
            return self.close(idx, false);
        };
        let planned = b.plan.take();
        let Some(req) = b.req.as_ref() else {
            return self.close(idx, false);
        };
        let reply = match planned.unwrap_or_else(|| plan(&self.site, req)) {
            Plan::Reply(reply) => reply,
            Plan::Cgi(script) => return self.cgi_start(idx, &script),
            Plan::Work(work @ Work::Primes(n)) => {
                let primes = crate::site::workload::count_primes(n);
                self.now = Instant::now();
                after_work(&self.site, req, work, Some(primes))
            }
            Plan::Work(work @ Work::Sleep(d)) => {
                s.phase = Phase::Work;
                if let Some(b) = s.busy.as_mut() {
                    b.work = Some(work);
                }
                return self.set_deadline(idx, self.now + d);
            }
        };
        self.start_reply(idx, reply);
    }

    /// An `/io` wait is over: answer it.
    fn work_done(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(b) = s.busy.as_mut() else {
            return self.close(idx, false);
        };
        let (Some(work), Some(req)) = (b.work.take(), b.req.as_ref()) else {
            return self.close(idx, false);
        };
        let reply = after_work(&self.site, req, work, None);
        self.start_reply(idx, reply);
    }

    /// Ends the reply's head, logs it, and starts writing it.
    fn start_reply(&mut self, idx: u32, mut reply: Reply) {
        let rules = self.limits.rules;
        let s = &mut self.slots[idx as usize];
        s.conn.finish_head(&rules, &mut reply.head, Stop.is_set());
        let Some(b) = s.busy.as_mut() else {
            return self.close(idx, false);
        };
        let peer = s.peer.map(|a| a.ip());
        log_request(peer, b.req.as_ref(), reply.status, reply.body.len());
        s.phase = Phase::Write;
        b.out = reply.head;
        b.sent = 0;
        match reply.body {
            Body::Empty => {}
            Body::Bytes(bytes) => b.out.extend_from_slice(&bytes),
            Body::File { file, parts, len } => {
                let small = match parts.as_slice() {
                    [Part::File { offset, len: part }] if len <= SMALL_FILE => {
                        Some((*offset, *part))
                    }
                    _ => None,
                };
                b.file = Some(file);
                if let Some(span) = small {
                    // Read into the head's buffer through the ring, then one send.
                    b.span = Some(span);
                    b.out.reserve(span.1 as usize);
                    self.set_deadline(idx, self.now + rules.write_timeout);
                    return self.read_small(idx);
                }
                b.parts = parts.into_iter();
                b.more = true;
            }
        }
        self.set_deadline(idx, self.now + rules.write_timeout);
        self.send_next(idx);
    }

    /// Queues the next piece of the reply: the rest of `out`, a generated part, a file part;
    /// or, when all is written, tells the state machine and goes on.
    fn send_next(&mut self, idx: u32) {
        if self.slots[idx as usize].tls.is_some() {
            return self.tls_send_next(idx);
        }
        let s = &mut self.slots[idx as usize];
        let token = s.token(Op::Send, idx);
        let fd = types::Fixed(s.fd);
        let Some(b) = s.busy.as_mut() else {
            return self.close(idx, false);
        };
        loop {
            if b.sent < b.out.len() {
                let flags = libc::MSG_NOSIGNAL | if b.more { libc::MSG_MORE } else { 0 };
                let rest = &b.out[b.sent..];
                let len = rest.len().min(u32::MAX as usize) as u32;
                let e = opcode::Send::new(fd, rest.as_ptr(), len)
                    .flags(flags)
                    .build()
                    .user_data(token);
                s.inflight += 1;
                // SAFETY: `out` is in the slot's Busy, which is not dropped or changed while the
                // send is in flight (`inflight`).
                return unsafe { self.push(e) };
            }
            if b.cgi.is_some() {
                return self.cgi_sent(idx);
            }
            if b.span.is_some() {
                return self.splice_next(idx);
            }
            match b.parts.next() {
                Some(Part::Bytes(bytes)) => {
                    b.more = !b.parts.as_slice().is_empty();
                    b.out = bytes;
                    b.sent = 0;
                }
                Some(Part::File { offset, len }) => b.span = Some((offset, len)),
                None => return self.finished(idx),
            }
        }
    }

    /// The reply is written: give the pipe back, tell the state machine, go on.
    fn finished(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if let Some(pipe) = s.busy.take().and_then(|b| b.pipe) {
            if self.pipes.len() < SPARE_PIPES {
                self.pipes.push(pipe);
            }
        }
        s.conn.written(self.now, &s.buf);
        s.deadline = None;
        self.drive(idx);
    }

    fn on_send(&mut self, idx: u32, res: i32) {
        if self.slots[idx as usize].tls.is_some() {
            return self.on_tls_send(idx, res);
        }
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        if s.phase == Phase::Closing {
            return self.maybe_free(idx);
        }
        let Some(b) = s.busy.as_mut() else { return };
        if res <= 0 {
            tracing::debug!("connection ended: send: {}", errno(res));
            return self.close(idx, false);
        }
        b.sent += res as usize;
        self.set_deadline(idx, self.now + self.limits.rules.write_timeout);
        self.send_next(idx);
    }

    /// Reads the rest of a small file's range behind the head.
    fn read_small(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let token = s.token(Op::Read, idx);
        let Some(b) = s.busy.as_mut() else { return };
        let (Some(file), Some((offset, left))) = (&b.file, b.span) else {
            return self.close(idx, false);
        };
        // Over TLS a file part is read a chunk at a time (a small file is one chunk).
        let want = left.min(tls::FILE_CHUNK);
        b.out.reserve(want as usize);
        let spare = b.out.spare_capacity_mut();
        let e = opcode::Read::new(
            types::Fd(file.as_raw_fd()),
            spare.as_mut_ptr().cast(),
            want as u32,
        )
        .offset(offset)
        .build()
        .user_data(token);
        s.inflight += 1;
        // SAFETY: the read fills `out`'s spare capacity (reserved above, `left` bytes), and
        // `out` is neither dropped nor touched while the read is in flight (`inflight`).
        unsafe { self.push(e) };
    }

    fn on_read(&mut self, idx: u32, res: i32) {
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        if s.phase == Phase::Closing {
            return self.maybe_free(idx);
        }
        let Some(b) = s.busy.as_mut() else { return };
        let Some((offset, left)) = b.span else { return };
        if res <= 0 {
            // 0: the file is shorter than the length promised in the head (truncated
            // meanwhile): close rather than send fewer bytes.
            tracing::debug!("file read: {}", errno(res));
            return self.close(idx, false);
        }
        let n = (res as u64).min(left);
        // SAFETY: the kernel wrote `n` bytes into the spare capacity.
        unsafe { b.out.set_len(b.out.len() + n as usize) };
        if s.tls.is_some() {
            // Encrypt and send this chunk, then read the next (see `tls_send_next`).
            b.span = Some((offset + n, left - n));
            return self.send_next(idx);
        }
        if n < left {
            b.span = Some((offset + n, left - n));
            return self.read_small(idx);
        }
        b.span = None;
        self.send_next(idx);
    }

    /// The next step of a file part: drain the pipe, or splice the next chunk of the file into
    /// it linked with splicing it out to the socket (one submission for both).
    fn splice_next(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let (tin, tout) = (s.token(Op::SpliceIn, idx), s.token(Op::SpliceOut, idx));
        let sock = types::Fixed(s.fd);
        let Some(b) = s.busy.as_mut() else { return };
        let Some((offset, left)) = b.span else { return };
        if b.failed {
            return self.close(idx, false);
        }
        if b.pipe.is_none() {
            match self.pipes.pop().map(Ok).unwrap_or_else(Pipe::new) {
                Ok(pipe) => b.pipe = Some(pipe),
                Err(e) => {
                    tracing::warn!("pipe for a file body: {e}");
                    return self.close(idx, false);
                }
            }
        }
        let (Some(pipe), Some(file)) = (&b.pipe, &b.file) else {
            return;
        };
        let more_after = !b.parts.as_slice().is_empty();
        if b.in_pipe > 0 || left == 0 {
            if b.in_pipe == 0 {
                b.span = None;
                return self.send_next(idx);
            }
            let more = if more_after || left > 0 {
                libc::SPLICE_F_MORE
            } else {
                0
            };
            let out = opcode::Splice::new(types::Fd(pipe.r.as_raw_fd()), -1, sock, -1, b.in_pipe)
                .flags(more)
                .build()
                .user_data(tout);
            s.inflight += 1;
            // SAFETY: splices name descriptors only; the pipe stays in Busy until done.
            return unsafe { self.push(out) };
        }
        let chunk = left.min(pipe.cap as u64) as u32;
        let more = if more_after || left > chunk as u64 {
            libc::SPLICE_F_MORE
        } else {
            0
        };
        let fin = opcode::Splice::new(
            types::Fd(file.as_raw_fd()),
            offset as i64,
            types::Fd(pipe.w.as_raw_fd()),
            -1,
            chunk,
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(tin);
        let out = opcode::Splice::new(types::Fd(pipe.r.as_raw_fd()), -1, sock, -1, chunk)
            .flags(more)
            .build()
            .user_data(tout);
        s.inflight += 2;
        // SAFETY: as above; the two are linked, so the second starts after the first.
        unsafe {
            self.push(fin);
            self.push(out);
        }
    }

    /// A splice completed. A short splice into the pipe (the file ended early) cancels the
    /// linked one; the file part goes on once both have reported.
    fn on_splice(&mut self, idx: u32, op: Op, res: i32) {
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        if s.phase == Phase::Closing {
            return self.maybe_free(idx);
        }
        let Some(b) = s.busy.as_mut() else { return };
        let Some((offset, left)) = b.span else { return };
        match (op, res) {
            (Op::SpliceIn, n) if n > 0 => {
                b.in_pipe += n as u32;
                b.span = Some((offset + n as u64, left - (n as u64).min(left)));
            }
            (Op::SpliceOut, n) if n > 0 => {
                b.in_pipe -= (n as u32).min(b.in_pipe);
                self.set_deadline(idx, self.now + self.limits.rules.write_timeout);
            }
            (Op::SpliceOut, n) if n == -libc::ECANCELED => {}
            (_, n) => {
                tracing::debug!("splice: {}", if n == 0 { "file shrank" } else { errno(n) });
                b.failed = true;
            }
        }
        if self.slots[idx as usize].inflight == 0 {
            self.splice_next(idx);
        }
    }

    /// Closes the connection: with `linger`, half-close and drain first.
    fn close(&mut self, idx: u32, linger: bool) {
        self.cgi_abandon(idx);
        if self.tls_close(idx, linger) {
            return; // closed once the close_notify is out
        }
        let s = &mut self.slots[idx as usize];
        if matches!(s.phase, Phase::Closing | Phase::Free) {
            return;
        }
        if linger && s.phase != Phase::Linger {
            s.phase = Phase::Linger;
            s.drained = 0;
            s.buf = Vec::new();
            let e = opcode::Shutdown::new(types::Fixed(s.fd), libc::SHUT_WR)
                .build()
                .user_data(s.token(Op::Shutdown, idx));
            s.inflight += 1;
            // SAFETY: no buffer.
            unsafe { self.push(e) };
            self.set_deadline(idx, self.now + LINGER);
            return self.arm_recv(idx);
        }
        s.phase = Phase::Closing;
        s.deadline = None;
        if s.recv == Recv::On {
            s.recv = Recv::Cancelling;
        }
        if s.recv != Recv::Off || s.inflight > 0 {
            self.cancel_all(idx);
        }
        self.maybe_free(idx);
    }

    /// Cancels whatever is still queued on a closing connection's socket (the receive, a send
    /// or splice that met the write timeout, the half-close). The kernel finds only operations
    /// that have their descriptor already; one still queued for an io-wq thread (splice and
    /// shutdown always go there) is missed, so the cancel is repeated until all have reported.
    fn cancel_all(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(s.fd)).all())
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        // SAFETY: no buffers; the cancelled operations report their own completions.
        unsafe { self.push(e) };
        self.cgi_cancel(idx);
        self.set_deadline(idx, self.now + CANCEL_AGAIN);
    }

    /// A closing slot whose operations have all completed closes its descriptor and is free
    /// again. The close waits for them: an operation that reaches an io-wq thread looks its
    /// direct descriptor up only there, and after the close that index may already hold the
    /// next accepted connection (a late half-close would end that one's replies).
    fn maybe_free(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if s.phase != Phase::Closing || s.recv != Recv::Off || s.inflight > 0 {
            return;
        }
        let close = opcode::Close::new(types::Fixed(s.fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        // SAFETY: no buffer.
        unsafe { self.push(close) };
        let s = &mut self.slots[idx as usize];
        let mut busy = s.busy.take();
        if let Some(pipe) = busy.as_mut().and_then(|b| b.pipe.take()) {
            // A pipe still holding bytes would send them on the next connection.
            if pipe_empty(&pipe) && self.pipes.len() < SPARE_PIPES {
                self.pipes.push(pipe);
            }
        }
        if let Some(run) = busy.and_then(|b| b.cgi) {
            // Killed when the connection closed (`cgi_abandon`); reaped off the loop.
            let (child, until) = (*run).into_child();
            if let Some(child) = child {
                self.reap_later(child, until, true);
            }
        }
        let s = &mut self.slots[idx as usize];
        s.phase = Phase::Free;
        s.buf = Vec::new();
        s.tls = None;
        s.deadline = None;
        self.timers.clear(idx, &mut s.armed);
        self.free.push(idx);
        self.freed();
    }

    /// The half-close completed (its result does not matter: the lingering receive sees how
    /// the connection ends).
    fn on_shutdown(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        self.maybe_free(idx);
    }

    /// Arms the connection's multishot receive if it is not.
    fn arm_recv(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if s.recv != Recv::Off {
            return;
        }
        s.recv = Recv::On;
        let e = opcode::RecvMulti::new(types::Fixed(s.fd), ring::GROUP)
            .build()
            .user_data(s.token(Op::Recv, idx));
        // SAFETY: the buffers come from the provided group, which outlives the ring.
        unsafe { self.push(e) };
    }

    /// A receive completed: `bytes` arrived (or `res` says why not). `more`: still armed.
    fn on_recv(&mut self, idx: u32, res: i32, bid: Option<u16>, more: bool) {
        let s = &mut self.slots[idx as usize];
        if !more {
            s.recv = Recv::Off;
        }
        let bytes = match (res, bid) {
            (n, Some(bid)) if n > 0 => Some((bid, n as usize)),
            _ => None,
        };
        let tls = s.tls.is_some() && !matches!(s.phase, Phase::Linger | Phase::Closing);
        let req = match bytes {
            Some((bid, n)) if tls => {
                let req = self.tls_recv(idx, bid, n);
                self.bufs.give_back(bid);
                req
            }
            Some((bid, n)) => {
                let req = self.take_bytes(idx, bid, n);
                self.bufs.give_back(bid);
                req
            }
            None => None,
        };
        let s = &mut self.slots[idx as usize];
        match (s.phase, res) {
            (Phase::Closing, _) => return self.maybe_free(idx),
            (_, 0) => s.conn.on_eof(),
            (_, n) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            (_, n) if n < 0 => {
                tracing::debug!("connection ended: recv: {}", errno(n));
                s.conn.on_eof();
            }
            _ => {}
        }
        if let Some(req) = req {
            s.busy = Some(busy_for(&self.site, &mut s.conn, req));
        }
        match s.phase {
            Phase::Read { .. } | Phase::Look => self.drive(idx),
            Phase::Linger => {
                s.drained = s.drained.saturating_add(res.max(0) as u32);
                if res <= 0 || s.drained as usize >= LINGER_BYTES {
                    self.close(idx, false);
                } else if s.recv == Recv::Off {
                    self.arm_recv(idx);
                }
            }
            _ if s.buf.len() > RECV_HOLD && s.recv == Recv::On => self.hold_recv(idx),
            _ => {}
        }
    }

    /// Takes `n` received bytes from buffer `bid` (see [`take`]).
    fn take_bytes(&mut self, idx: u32, bid: u16, n: usize) -> Option<Request> {
        let bytes = self.bufs.get(bid, n);
        take(
            &mut self.slots[idx as usize],
            &self.limits.rules,
            self.now,
            bytes,
        )
    }

    /// Stops receiving until the state machine asks for bytes again.
    fn hold_recv(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.recv = Recv::Cancelling;
        let target = s.token(Op::Recv, idx);
        let e = opcode::AsyncCancel::new(target)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        // SAFETY: no buffer.
        unsafe { self.push(e) };
    }

    /// The slot's deadline came (its real one, not an early entry).
    fn expired(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.deadline = None;
        match s.phase {
            Phase::Read { .. } => {
                s.conn.on_timeout();
                self.drive(idx);
            }
            Phase::Work => self.work_done(idx),
            Phase::Cgi => self.cgi_expired(idx),
            Phase::Write => {
                tracing::debug!("connection ended: write timeout");
                self.close(idx, false);
            }
            Phase::Linger => self.close(idx, false),
            Phase::Closing => self.cancel_all(idx),
            Phase::Look | Phase::Free => {}
        }
    }

    fn set_deadline(&mut self, idx: u32, at: Instant) {
        let s = &mut self.slots[idx as usize];
        s.deadline = Some(at);
        self.timers.set(idx, &mut s.armed, at);
    }
}

/// The Busy of a request just read; with a CGI folder served, planned at once, so a script's
/// body is kept for it (see `plan_at_head`).
fn busy_for(site: &crate::site::Site, conn: &mut Conn, req: Request) -> Box<Busy> {
    let plan = plan_at_head(site, &req, conn);
    Box::new(Busy {
        req: Some(req),
        plan,
        ..Busy::default()
    })
}

/// Takes received (plaintext) bytes into a connection. A connection holding no bytes has them
/// parsed where they are, and keeps only what the request did not use (usually nothing), so the
/// common request costs no copy and no allocation; otherwise they are appended.
fn take(s: &mut Slot, rules: &Rules, now: Instant, bytes: &[u8]) -> Option<Request> {
    match s.phase {
        Phase::Linger => return None,
        Phase::Read { .. } | Phase::Look if s.buf.is_empty() => {}
        _ => {
            s.buf.extend_from_slice(bytes);
            return None;
        }
    }
    match s.conn.poll(rules, now, bytes, Stop.closes_idle()) {
        Step::Request(req, used) => {
            s.buf.extend_from_slice(&bytes[used..]);
            Some(req)
        }
        Step::Discard(k) => {
            s.buf.extend_from_slice(&bytes[k..]);
            None
        }
        // A CGI script's body (kept: `plan_at_head`); handed out once, so taken here.
        Step::Body(k) => {
            if let Some(b) = s.busy.as_mut() {
                b.body.extend_from_slice(&bytes[..k]);
            }
            s.buf.extend_from_slice(&bytes[k..]);
            None
        }
        // A step that consumes no bytes is decided again on the connection's buffer (the
        // state machine repeats it).
        _ => {
            s.buf.extend_from_slice(bytes);
            None
        }
    }
}

/// Whether a pipe holds no bytes.
fn pipe_empty(pipe: &Pipe) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on our pipe into an int.
    unsafe { libc::ioctl(pipe.r.as_raw_fd(), libc::FIONREAD, &mut n) == 0 && n == 0 }
}

/// A completion's negative result as text.
fn errno(res: i32) -> &'static str {
    match -res {
        0 => "end of stream",
        libc::ECONNRESET => "connection reset",
        libc::EPIPE => "broken pipe",
        libc::ECANCELED => "cancelled",
        libc::ETIMEDOUT => "timed out",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_costs_one_small_slot() {
        // 10,000 idle keep-alive connections hold 10,000 of these and nothing else in user
        // space (no buffer: the provided group is shared).
        let size = std::mem::size_of::<Slot>();
        assert!(size <= 200, "the slot grew to {size} bytes");
    }

    #[test]
    fn a_pipe_reports_bytes_left_in_it() {
        let pipe = Pipe::new().unwrap();
        assert!(pipe.cap >= 4096);
        assert!(pipe_empty(&pipe));
        // SAFETY: writing one byte from a valid buffer to our pipe.
        let n = unsafe { libc::write(pipe.w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        assert!(!pipe_empty(&pipe));
    }
}
