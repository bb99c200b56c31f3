//! A TLS connection's transport, shared by the executors: rustls' buffered server connection
//! between the socket and the state machine. The executor still decides when to wait and how
//! (a blocking socket with timeouts, or readiness); this file only moves bytes through rustls:
//! TLS records in → plaintext out, plaintext and file bodies in → records out.
//!
//! The handshake has no deadline of its own: it happens inside the first reads, and the first
//! request's header deadline counts from the accept (`http::conn`), so a client that stops
//! mid-handshake is closed by that deadline like a slow request head.
//!
//! What this leaves open:
//! - kTLS: with `ServerConfig::enable_secret_extraction`, `ServerConnection::
//!   dangerous_extract_secrets` after the handshake gives the traffic keys for
//!   `setsockopt(SOL_TLS, TLS_TX/TLS_RX)`; from then on the kernel encrypts, and the connection
//!   goes back to the plain executors' path (`send`, `sendfile`) with no change to them. This
//!   kernel has no `tls` ULP, so it is not done here.
//! - io_uring: rustls' unbuffered API (`UnbufferedServerConnection`) encrypts into and decrypts
//!   from buffers the executor owns (registered buffers); the calls mirror [`Session`]'s
//!   (`read` ↔ decrypting a received buffer, `queue`/`queue_file` ↔ encrypting into one).
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// A file body is read this much at a time and encrypted at once: four full 16 KiB records
/// (TLS's largest), so records go out full and a connection never queues more than one chunk of
/// ciphertext (64 KiB + 4 × 22 bytes of record overhead) before the socket takes it.
pub const FILE_CHUNK: usize = 4 * 16 * 1024;

thread_local! {
    /// The file chunk being encrypted: one per thread, not per connection (used only between
    /// the file read and the encryption, never across a wait).
    static CHUNK: RefCell<Box<[u8]>> = RefCell::new(vec![0; FILE_CHUNK].into_boxed_slice());
}

/// One TLS connection's rustls state. Idle, it holds rustls' 4 KiB receive buffer and the keys
/// (rustls keeps the receive buffer at its 4 KiB read size once the handshake's larger messages
/// are consumed); sent records are freed as the socket takes them, and received plaintext as
/// the executor reads it.
pub struct Session {
    tls: ServerConnection,
}

impl Session {
    pub fn new(config: &Arc<ServerConfig>) -> io::Result<Session> {
        let mut tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        // Bounded by the executors instead: they queue at most a reply head, a small part or
        // one FILE_CHUNK before writing it out.
        tls.set_buffer_limit(None);
        Ok(Session { tls })
    }

    /// Reads plaintext into `dst`, reading the socket only when rustls holds none. Records
    /// rustls queued (a handshake flight, session tickets) are written before the socket is
    /// read, that is before any wait for the client; when plaintext is already there they stay
    /// queued and leave with the reply, in the same write: a resumed TLS 1.3 connection then
    /// costs the server one write for tickets and answer instead of two. What the socket does
    /// not take stays queued (see [`Session::wants_write`]). Ok(0): the client closed
    /// (close_notify, or end of stream).
    /// The socket's WouldBlock / TimedOut pass through. A TLS error (plain HTTP on this port,
    /// garbage, a bad record) is InvalidData, after a best-effort write of the alert rustls
    /// queued for it.
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: an end of stream like any other here (the
                // state machine never trusts a body's end to the stream's).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.flush(sock) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
            if self.tls.read_tls(sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.flush(sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Whether records are waiting to be written.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Encrypts `bytes` into queued records (no socket I/O; see [`Session::flush`]).
    pub fn queue(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.writer().write_all(bytes)
    }

    /// Encrypts `prefix` (a reply head, or nothing) followed by up to [`FILE_CHUNK`] bytes in
    /// all of `file` at `offset` (at most `len` of it) into queued records, so a head leaves in
    /// the first full record rather than a small one of its own. Returns how many file bytes; 0
    /// if the file ended early (truncated meanwhile).
    ///
    /// Copies: the page cache into the thread's chunk (pread), then rustls' copy into its
    /// record buffer, fused with the encryption. rustls has no call that encrypts a caller's
    /// buffer in place, so this is as few as it allows; mapping the file instead would save the
    /// first copy but turn a file truncated under us into SIGBUS.
    pub fn queue_file(
        &mut self,
        prefix: &[u8],
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> io::Result<usize> {
        if prefix.len() > FILE_CHUNK / 2 {
            self.queue(prefix)?;
            return self.queue_file(&[], file, offset, len);
        }
        CHUNK.with(|chunk| {
            let mut chunk = chunk.borrow_mut();
            chunk[..prefix.len()].copy_from_slice(prefix);
            let room = &mut chunk[prefix.len()..];
            let want = (len as usize).min(room.len());
            let n = loop {
                match file.read_at(&mut room[..want], offset) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if n > 0 {
                self.queue(&chunk[..prefix.len() + n])?;
            }
            Ok(n)
        })
    }

    /// Writes queued records until none are left. The socket's WouldBlock passes through (the
    /// rest stays queued for the next call).
    pub fn flush<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Queues a close_notify alert (the caller flushes it, best effort).
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
    }
}
