//! CGI scripts on the `uring` executor, run without blocking the loop: the child is spawned
//! (a vfork/exec), the kept request body goes to its stdin with `WRITE`s on the pipe and its
//! stdout comes back with `READ`s, both through the ring; each chunk read is fed to the shared
//! relay (`conn::cgi`) and what it produces is sent with the executor's send path (plain or
//! TLS), one chunk at a time: read, send, read again. While it waits on the script the slot is in
//! `Phase::Cgi` with the script's deadline (`--cgi-timeout`); while it sends, in `Phase::Write`
//! with the write timeout, as any reply.
//!
//! A run ends one way ([`Worker::cgi_end`]): the script's group is killed unless it answered
//! whole, pipe operations still out are cancelled, and once none is in flight (their buffers
//! are in the run, in the slot's Busy) the outcome is carried out. A closed connection kills the
//! group too. The child is then reaped off the loop: its pidfd is polled through the ring, and a
//! script that answered whole but has not exited is given until its deadline, then killed.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::Instant;

use io_uring::{opcode, squeue, types};

use super::ring::{Op, Token};
use super::{Phase, Worker};
use crate::conn::cgi::{command, kill_group, Fail, Outcome, Passed, Relay, CHUNK};
use crate::conn::{cgi_failure, log_request};
use crate::shutdown::Stop;
use crate::site::cgi::{Peer, Running, Script};

/// A script being run for a connection (boxed in its Busy). Every buffer a pipe operation
/// points into (`body`, `buf`) lives here until the operation's completion.
pub struct Run {
    /// Taken when the run ends, to be reaped (see [`Worker::reap_later`]).
    child: Option<Child>,
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    body: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    reading: bool,
    writing: bool,
    relay: Relay,
    status: u16,
    deadline: Instant,
    head_only: bool,
    /// Stdout ended and the body's end is being sent: whether the answer is whole.
    ending: Option<bool>,
    /// How the run ends, once decided; carried out when no pipe operation is in flight.
    after: Option<Outcome>,
    /// The connection is closing: the run only waits for its operations, then is reaped with
    /// the slot (see [`Worker::maybe_free`]).
    abandoned: bool,
    _place: Running,
}

impl Run {
    /// The child, taken out to be reaped, and its deadline.
    pub fn into_child(mut self) -> (Option<Child>, Instant) {
        (self.child.take(), self.deadline)
    }
}

impl Drop for Run {
    /// Only when the worker exits at the end of the grace period with the script still
    /// running: kill its group and reap it (a killed process exits at once).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            let _ = child.wait();
        }
    }
}

/// A script whose run is over, waiting to be reaped.
pub struct Orphan {
    child: Option<Child>,
    pid: u32,
    pidfd: OwnedFd,
    /// Killed at this time if it has not exited (its `--cgi-timeout` deadline).
    until: Instant,
    killed: bool,
}

impl Drop for Orphan {
    /// Only when the worker exits with the script unreaped: kill and reap it.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            let _ = child.wait();
        }
    }
}

impl Worker {
    /// Starts `script` for the connection: 503 at `--cgi-max-scripts` or while stopping, 500
    /// if it cannot be spawned; else its stdout is read (and its stdin written) through the ring.
    pub(super) fn cgi_start(&mut self, idx: u32, script: &Script) {
        let max = self.site.cgi().map_or(1, |o| o.max_scripts);
        let place = match Running::acquire(max) {
            Some(_) if Stop.closes_idle() => Err(Fail::Stopping),
            Some(place) => Ok(place),
            None => Err(Fail::Busy),
        };
        let local = self.local_addr(idx);
        let s = &mut self.slots[idx as usize];
        let peer = Peer {
            remote: s.peer,
            local,
            https: s.tls.is_some(),
        };
        let spawned = place.and_then(|place| match command(script, peer).spawn() {
            Ok(child) => Ok((child, place)),
            Err(e) => {
                tracing::warn!("CGI {}: {e}", script.program.display());
                Err(Fail::Spawn)
            }
        });
        let (mut child, place) = match spawned {
            Ok(started) => started,
            Err(fail) => {
                let reply = cgi_failure(&self.site, fail, script.head_only);
                return self.start_reply(idx, reply);
            }
        };
        let (Some(stdin), Some(stdout), Some(b)) =
            (child.stdin.take(), child.stdout.take(), s.busy.as_mut())
        else {
            kill_group(child.id());
            self.reap_later(child, self.now, true);
            return self.close(idx, false);
        };
        let body = std::mem::take(&mut b.body);
        b.cgi = Some(Box::new(Run {
            pid: child.id(),
            child: Some(child),
            // An empty body: stdin closes at once, so the script reads end of input.
            stdin: (!body.is_empty()).then_some(stdin),
            stdout,
            body,
            written: 0,
            buf: vec![0; CHUNK],
            reading: false,
            writing: false,
            relay: Relay::new(script),
            status: 0,
            deadline: self.now + script.timeout,
            head_only: script.head_only,
            ending: None,
            after: None,
            abandoned: false,
            _place: place,
        }));
        self.cgi_write(idx);
        self.cgi_wait(idx);
    }

    /// Waits for the script's next output, under its deadline.
    fn cgi_wait(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let token = s.token(Op::CgiRead, idx);
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        s.phase = Phase::Cgi;
        let deadline = run.deadline;
        let e = opcode::Read::new(
            types::Fd(run.stdout.as_raw_fd()),
            run.buf.as_mut_ptr(),
            run.buf.len() as u32,
        )
        .offset(u64::MAX)
        .build()
        .user_data(token);
        run.reading = true;
        s.inflight += 1;
        // SAFETY: `buf` is in the run, in the slot's Busy, which is neither dropped nor touched
        // while the read is in flight (`reading`, `inflight`).
        unsafe { self.push(e) };
        self.set_deadline(idx, deadline);
    }

    /// Writes the rest of the request body to the script's stdin, or closes it once all is in.
    fn cgi_write(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let token = s.token(Op::CgiWrite, idx);
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        let Some(stdin) = run.stdin.as_ref().filter(|_| run.written < run.body.len()) else {
            run.stdin = None;
            run.body = Vec::new();
            return;
        };
        let rest = &run.body[run.written..];
        let e = opcode::Write::new(
            types::Fd(stdin.as_raw_fd()),
            rest.as_ptr(),
            rest.len().min(u32::MAX as usize) as u32,
        )
        .offset(u64::MAX)
        .build()
        .user_data(token);
        run.writing = true;
        s.inflight += 1;
        // SAFETY: `body` is in the run, in the slot's Busy, which is neither dropped nor touched
        // while the write is in flight (`writing`, `inflight`).
        unsafe { self.push(e) };
    }

    /// A write to the script's stdin completed: write the rest, or stop (the script exited or
    /// closed its stdin: it reads no more).
    pub(super) fn on_cgi_write(&mut self, idx: u32, res: i32) {
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        let closing = s.phase == Phase::Closing;
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return self.maybe_free(idx);
        };
        run.writing = false;
        if closing || run.abandoned {
            return self.maybe_free(idx);
        }
        if run.after.is_some() {
            return self.cgi_settle(idx);
        }
        if res > 0 {
            run.written += res as usize;
        } else {
            run.stdin = None;
        }
        self.cgi_write(idx);
    }

    /// A read of the script's stdout completed: relay the bytes, or end at end of output.
    pub(super) fn on_cgi_read(&mut self, idx: u32, res: i32) {
        let rules = self.limits.rules;
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        let closing = s.phase == Phase::Closing;
        let Some(b) = s.busy.as_deref_mut() else {
            return self.maybe_free(idx);
        };
        let Some(run) = b.cgi.as_deref_mut() else {
            return self.maybe_free(idx);
        };
        run.reading = false;
        if closing || run.abandoned {
            return self.maybe_free(idx);
        }
        if run.after.is_some() {
            return self.cgi_settle(idx);
        }
        if res <= 0 {
            // 0: the script closed its stdout; an error reads as the same end.
            return self.cgi_eof(idx);
        }
        let mut out = std::mem::take(&mut b.out);
        let passed = run
            .relay
            .pass(&run.buf[..res as usize], (&mut s.conn, &rules), &mut out);
        b.out = out;
        match passed {
            Err(fail) => {
                let outcome = Outcome::of(fail, run.relay.started());
                return self.cgi_end(idx, outcome);
            }
            Ok(Passed::Head(code)) => run.status = code,
            Ok(Passed::Body) => {}
            Ok(Passed::Nothing) => return self.cgi_wait(idx),
        }
        self.cgi_send(idx);
    }

    /// Sends what the relay produced (`out`) with the executor's send path; once it is out,
    /// [`Worker::cgi_sent`] goes on.
    fn cgi_send(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.phase = Phase::Write;
        if let Some(b) = s.busy.as_mut() {
            b.sent = 0;
            b.more = false;
        }
        self.set_deadline(idx, self.now + self.limits.rules.write_timeout);
        self.send_next(idx);
    }

    /// The script's stdout ended: send the body's end, or fail if no head came.
    fn cgi_eof(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(b) = s.busy.as_deref_mut() else {
            return;
        };
        let Some(run) = b.cgi.as_deref_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut b.out);
        out.clear();
        match run.relay.finish(&mut out) {
            Err(fail) => self.cgi_end(idx, Outcome::Failed(fail)),
            Ok(whole) => {
                run.ending = Some(whole);
                b.out = out;
                self.cgi_send(idx);
            }
        }
    }

    /// What the relay produced is sent: read on, or end the run after the body's end.
    pub(super) fn cgi_sent(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        match run.ending {
            Some(true) => self.cgi_end(idx, Outcome::Sent),
            Some(false) => self.cgi_end(idx, Outcome::Cut),
            None if Stop.closes_idle() => {
                let outcome = Outcome::of(Fail::Stopping, run.relay.started());
                self.cgi_end(idx, outcome)
            }
            None => self.cgi_wait(idx),
        }
    }

    /// The run ends with `outcome` (once; a later call is ignored): the group is killed unless
    /// the answer was whole, and the outcome is carried out once no pipe operation is out.
    pub(super) fn cgi_end(&mut self, idx: u32, outcome: Outcome) {
        let s = &mut self.slots[idx as usize];
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        if run.after.is_some() || run.abandoned {
            return;
        }
        if outcome != Outcome::Sent {
            kill_group(run.pid);
        }
        run.after = Some(outcome);
        s.phase = Phase::Cgi;
        s.deadline = None;
        self.cgi_cancel(idx);
        self.cgi_settle(idx);
    }

    /// The connection is closing while its script runs: kill the group and cancel the pipe
    /// operations; the run is reaped when the slot is freed.
    pub(super) fn cgi_abandon(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        if !run.abandoned {
            run.abandoned = true;
            kill_group(run.pid);
        }
        self.cgi_cancel(idx);
    }

    /// Cancels the pipe operations in flight (a killed script's pipes usually end them first;
    /// a grandchild that left the group may still hold them open). Repeated with the slot's
    /// cancel deadline until they have reported.
    pub(super) fn cgi_cancel(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return;
        };
        let mut fds = Vec::with_capacity(2);
        if run.reading {
            fds.push(run.stdout.as_raw_fd());
        }
        if let Some(stdin) = run.stdin.as_ref().filter(|_| run.writing) {
            fds.push(stdin.as_raw_fd());
        }
        let again = !fds.is_empty();
        for fd in fds {
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(0);
            // SAFETY: no buffer; the cancelled operations report their own completions.
            unsafe { self.push(e) };
        }
        if again && self.slots[idx as usize].phase != Phase::Closing {
            self.set_deadline(idx, self.now + super::CANCEL_AGAIN);
        }
    }

    /// Carries out the run's outcome once no pipe operation is in flight: the child goes to be
    /// reaped, then the answer is finished, cut (close), or replaced by the failure's page.
    fn cgi_settle(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let peer = s.peer.map(|a| a.ip());
        let Some(b) = s.busy.as_mut() else { return };
        if b.cgi.as_ref().is_none_or(|r| r.reading || r.writing) {
            return;
        }
        let Some(mut run) = b.cgi.take() else { return };
        let outcome = run.after.take().unwrap_or(Outcome::Cut);
        let log = |b: &super::Busy| {
            log_request(peer, b.req.as_ref(), run.status, run.relay.printed());
        };
        match &outcome {
            Outcome::Failed(_) => {}
            _ => log(b),
        }
        s.deadline = None;
        let (head_only, until) = (run.head_only, run.deadline);
        if let Some(child) = run.child.take() {
            self.reap_later(child, until, outcome != Outcome::Sent);
        }
        drop(run);
        match outcome {
            Outcome::Sent => self.finished(idx),
            Outcome::Cut => self.close(idx, false),
            Outcome::Failed(fail) => {
                let reply = cgi_failure(&self.site, fail, head_only);
                self.start_reply(idx, reply)
            }
        }
    }

    /// The slot's deadline came while it waits on its script: the script's deadline (504, or
    /// the connection cut if the head was sent), or the repeat of a cancel.
    pub(super) fn cgi_expired(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let Some(run) = s.busy.as_mut().and_then(|b| b.cgi.as_mut()) else {
            return self.close(idx, false);
        };
        if run.after.is_some() {
            return self.cgi_cancel(idx);
        }
        let outcome = Outcome::of(Fail::Timeout, run.relay.started());
        self.cgi_end(idx, outcome);
    }

    /// Shutdown began: a script being waited on is killed (503 if nothing was sent); one whose
    /// answer is being sent ends after this chunk (see [`Worker::cgi_sent`]).
    pub(super) fn cgi_stop(&mut self, idx: u32) {
        let s = &self.slots[idx as usize];
        let Some(run) = s.busy.as_ref().and_then(|b| b.cgi.as_ref()) else {
            return;
        };
        if s.phase == Phase::Cgi && run.reading {
            let outcome = Outcome::of(Fail::Stopping, run.relay.started());
            self.cgi_end(idx, outcome);
        }
    }

    /// Reaps `child` now if it has exited, else when its pidfd says so (polled through the
    /// ring); a script not `killed` is killed if it still runs at `until`.
    pub(super) fn reap_later(&mut self, mut child: Child, until: Instant, killed: bool) {
        let pid = child.id();
        if killed {
            kill_group(pid);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let Some(pidfd) = pidfd_open(pid) else {
            // Out of descriptors: kill it and wait here (a killed process exits at once).
            kill_group(pid);
            let _ = child.wait();
            return;
        };
        let at = self.orphans.iter().position(Option::is_none);
        let at = at.unwrap_or_else(|| {
            self.orphans.push(None);
            self.orphans.len() - 1
        });
        let e = opcode::PollAdd::new(types::Fd(pidfd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(Token::new(Op::Reap, at as u32, 0).encode());
        self.orphans[at] = Some(Orphan {
            child: Some(child),
            pid,
            pidfd,
            until,
            killed,
        });
        // SAFETY: no buffer; the pidfd stays open in the orphan until the poll completes.
        unsafe { self.push(e) };
    }

    /// An orphan's pidfd became readable (or the poll ended): reap it, or poll again.
    pub(super) fn on_reap(&mut self, at: u32) {
        let Some(Some(orphan)) = self.orphans.get_mut(at as usize) else {
            return;
        };
        let exited = orphan
            .child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
        if exited {
            orphan.child = None;
            self.orphans[at as usize] = None;
            return;
        }
        let e = opcode::PollAdd::new(types::Fd(orphan.pidfd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(Token::new(Op::Reap, at, 0).encode());
        // SAFETY: as in `reap_later`.
        unsafe { self.push(e) };
    }

    /// Kills the orphans still running past their deadline (their pidfd then reports).
    pub(super) fn expire_orphans(&mut self) {
        for orphan in self.orphans.iter_mut().flatten() {
            if !orphan.killed && orphan.until <= self.now {
                kill_group(orphan.pid);
                orphan.killed = true;
            }
        }
    }

    /// The earliest deadline of an orphan not yet killed.
    pub(super) fn orphan_deadline(&self) -> Option<Instant> {
        let live = self.orphans.iter().flatten().filter(|o| !o.killed);
        live.map(|o| o.until).min()
    }
}

/// A pidfd for `pid` (Linux 5.3), `None` if it cannot be had.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
