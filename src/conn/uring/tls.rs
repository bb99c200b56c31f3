//! HTTPS on the `uring` executor: rustls' server connection between the ring's receive and send
//! and the state machine. Received records are decrypted straight from the provided buffer the
//! multishot receive filled, and the plaintext goes to the connection as a plain receive's bytes
//! would. Every byte sent comes from the connection's record buffer: the reply's head, its small
//! parts and its file (read through the ring, [`FILE_CHUNK`] at a time: no splice, the bytes must
//! pass through rustls) are encrypted into it and sent with one `SEND`, one in flight at a time.
//!
//! The handshake has no deadline of its own: it happens inside the first receives, and the first
//! request's header deadline counts from the accept, so a client that stops mid-handshake is
//! closed by it like a slow request head. A connection ends with a close_notify sent before the
//! socket is closed (or half-closed to linger); a TLS error (plain HTTP on this port, garbage)
//! sends rustls' alert, then closes.
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use io_uring::{opcode, types};
use rustls::{ServerConfig, ServerConnection};

use super::ring::Op;
use super::{take, Phase, Worker};
use crate::http::Request;

/// A file body is read and encrypted this much at a time: four full 16 KiB records (TLS's
/// largest), so a connection holds at most one chunk of plaintext and its records at once.
pub const FILE_CHUNK: u64 = crate::conn::tls::FILE_CHUNK as u64;

/// One HTTPS connection's TLS state (boxed in its slot; a plain connection holds none).
pub struct Tls {
    conn: ServerConnection,
    /// Records being sent; not touched while `sending`.
    out: Vec<u8>,
    sent: usize,
    sending: bool,
    /// A close_notify (or an alert) is queued: once every record is out, close (with linger or
    /// not).
    closing: Option<bool>,
}

impl Tls {
    pub fn new(config: &Arc<ServerConfig>) -> Option<Box<Tls>> {
        match ServerConnection::new(Arc::clone(config)) {
            Ok(mut conn) => {
                // Bounded by the executor instead: it encrypts at most a reply head, a small
                // part or one FILE_CHUNK before sending it.
                conn.set_buffer_limit(None);
                Some(Box::new(Tls {
                    conn,
                    out: Vec::new(),
                    sent: 0,
                    sending: false,
                    closing: None,
                }))
            }
            Err(e) => {
                tracing::warn!("TLS session: {e}");
                None
            }
        }
    }

    /// Idle between requests: gives the record buffer back.
    pub fn idle(&mut self) {
        if !self.sending {
            self.out = Vec::new();
        }
    }
}

/// What a receive's records held.
enum Records {
    Plain(Vec<u8>, bool),
    Failed,
}

impl Tls {
    /// Decrypts `bytes`; the plaintext, and whether the client sent its close_notify.
    fn decrypt(&mut self, mut bytes: &[u8]) -> Records {
        let mut plain = Vec::new();
        let mut closed = false;
        while !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(n) if n > 0 => {}
                _ => return Records::Failed,
            }
            if let Err(e) = self.conn.process_new_packets() {
                tracing::debug!("connection ended: TLS: {e}");
                return Records::Failed;
            }
            match self.conn.reader().read_to_end(&mut plain) {
                Ok(_) => closed = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
        }
        Records::Plain(plain, closed)
    }
}

impl Worker {
    /// `n` bytes of records arrived in buffer `bid`: decrypts them and hands the plaintext to the
    /// connection (a whole request in it is returned, as `take_bytes` does); sends what the
    /// handshake answers. A TLS error sends the alert and closes.
    pub(super) fn tls_recv(&mut self, idx: u32, bid: u16, n: usize) -> Option<Request> {
        let bytes = self.bufs.get(bid, n);
        let s = &mut self.slots[idx as usize];
        let records = s.tls.as_mut()?.decrypt(bytes);
        let req = match records {
            Records::Plain(plain, closed) => {
                let req = if plain.is_empty() {
                    None
                } else {
                    take(s, &self.limits.rules, self.now, &plain)
                };
                if closed {
                    s.conn.on_eof();
                }
                req
            }
            Records::Failed => {
                // Whatever the state machine held is dropped with the connection.
                if let Some(tls) = s.tls.as_mut() {
                    tls.closing = Some(false);
                }
                s.phase = Phase::Write;
                let until = self.now + self.limits.rules.write_timeout;
                self.set_deadline(idx, until);
                if !self.tls_flush(idx) {
                    self.close(idx, false);
                }
                return None;
            }
        };
        self.tls_flush(idx);
        req
    }

    /// Sends the records rustls has queued unless a send is in flight (its completion sends
    /// the rest). True if a send is in flight now.
    pub(super) fn tls_flush(&mut self, idx: u32) -> bool {
        let s = &mut self.slots[idx as usize];
        let token = s.token(Op::Send, idx);
        let fd = types::Fixed(s.fd);
        let Some(tls) = s.tls.as_mut() else {
            return false;
        };
        if tls.sending {
            return true;
        }
        if tls.sent >= tls.out.len() {
            // All sent: the buffer is reused from its start (a file body does not pile up).
            tls.out.clear();
            tls.sent = 0;
        }
        while tls.conn.wants_write() {
            match tls.conn.write_tls(&mut tls.out) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        if tls.out.is_empty() {
            return false;
        }
        let rest = &tls.out[tls.sent..];
        let e = opcode::Send::new(fd, rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token);
        tls.sending = true;
        s.inflight += 1;
        // SAFETY: `out` is in the slot's boxed Tls, which is neither dropped (the slot is freed
        // only with nothing in flight) nor written to while `sending`.
        unsafe { self.push(e) };
        true
    }

    /// A send of records completed: send the rest, then go on with the reply or the close.
    pub(super) fn on_tls_send(&mut self, idx: u32, res: i32) {
        let s = &mut self.slots[idx as usize];
        s.inflight -= 1;
        let Some(tls) = s.tls.as_mut() else { return };
        tls.sending = false;
        if s.phase == Phase::Closing {
            return self.maybe_free(idx);
        }
        if res <= 0 {
            tracing::debug!("connection ended: send: {}", super::errno(res));
            tls.closing = Some(false);
            return self.close(idx, false);
        }
        tls.sent += res as usize;
        let closing = tls.closing;
        let phase = s.phase;
        let until = self.now + self.limits.rules.write_timeout;
        if matches!(phase, Phase::Write) {
            self.set_deadline(idx, until);
        }
        if self.tls_flush(idx) {
            return;
        }
        match (closing, phase) {
            (Some(linger), _) => self.close(idx, linger),
            (None, Phase::Write) => self.tls_send_next(idx),
            _ => {}
        }
    }

    /// The next piece of the reply: encrypts the rest of `out` and sends it, reads the next
    /// chunk of a file part, or takes the next part; when all is sent, the reply is finished.
    pub(super) fn tls_send_next(&mut self, idx: u32) {
        loop {
            let s = &mut self.slots[idx as usize];
            let (Some(b), Some(tls)) = (s.busy.as_mut(), s.tls.as_mut()) else {
                return self.close(idx, false);
            };
            if tls.sending {
                return; // its completion comes back here
            }
            if b.sent < b.out.len() {
                if tls.conn.writer().write_all(&b.out[b.sent..]).is_err() {
                    return self.close(idx, false);
                }
                b.sent = b.out.len();
                if self.tls_flush(idx) {
                    return;
                }
                continue;
            }
            if b.cgi.is_some() {
                return self.cgi_sent(idx);
            }
            match b.span {
                Some((_, 0)) => b.span = None,
                Some(_) => {
                    b.out.clear();
                    b.sent = 0;
                    return self.read_small(idx);
                }
                None => match b.parts.next() {
                    Some(crate::site::Part::Bytes(bytes)) => {
                        b.out = bytes;
                        b.sent = 0;
                    }
                    Some(crate::site::Part::File { offset, len }) => b.span = Some((offset, len)),
                    None => return self.finished(idx),
                },
            }
        }
    }

    /// Before the socket is closed: queues a close_notify and sends it (true: the close waits
    /// for it). A second close, or one after a failed send, closes at once.
    pub(super) fn tls_close(&mut self, idx: u32, linger: bool) -> bool {
        let s = &mut self.slots[idx as usize];
        if matches!(s.phase, Phase::Closing | Phase::Free | Phase::Linger) {
            return false;
        }
        let Some(tls) = s.tls.as_mut() else {
            return false;
        };
        if tls.closing.is_some() {
            return false;
        }
        tls.closing = Some(linger);
        tls.conn.send_close_notify();
        s.phase = Phase::Write;
        let until = self.now + self.limits.rules.write_timeout;
        self.set_deadline(idx, until);
        self.tls_flush(idx)
    }
}
