//! The tokio executors' wait for a connection's next bytes: readability, the state machine's
//! deadline, or (between requests) the notice of shutdown or of the connection cap, in one poll.
//! Shared by the plain and the TLS executor, so both end idle connections by the same rules.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::accept::Shared;
use crate::shutdown::Stop;

/// Why the wait returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Bytes, or the client's close, to read.
    Ready,
    /// The deadline passed: the state machine decides what that means (408, or a quiet close).
    TimedOut,
    /// Idle, and the connection cap needs room: close now.
    Shed,
    /// Idle, and shutdown began: the state machine takes its last look.
    Stopping,
}

/// The notice that ends a connection's idle wait: a connection that has served nothing yet is
/// closed by shutdown only, a kept-alive one also to make room under the cap.
pub(super) fn notice(shared: &Shared, served: u64) -> &Notify {
    if served == 0 {
        &shared.stopping
    } else {
        &shared.close_idle
    }
}

/// Waits on `stream` until `deadline`; `idle` (no byte of a request yet) also for `notice`
/// (see [`notice`]).
pub(super) fn readable<'a>(
    stream: &'a TcpStream,
    notice: &'a Notify,
    deadline: Instant,
    idle: bool,
) -> Readable<'a> {
    Readable {
        stream,
        notice,
        sleep: tokio::time::sleep_until(deadline.into()),
        notified: notice.notified(),
        idle,
        enabled: false,
    }
}

pin_project_lite::pin_project! {
    /// The wait as one struct polled by hand, not an `async` block or a `select!`: the
    /// connection task is as large as its largest waiting state, and this is the state every
    /// idle connection waits in. An `async` block would also keep the pinned references, the
    /// `poll_fn` closure's captures and its own arguments: 432 bytes of `evented`'s task, where
    /// this struct makes it 360 (`connection_task_stays_small`).
    pub(super) struct Readable<'a> {
        stream: &'a TcpStream,
        notice: &'a Notify,
        #[pin]
        sleep: Sleep,
        #[pin]
        notified: Notified<'a>,
        idle: bool,
        enabled: bool,
    }
}

impl Future for Readable<'_> {
    type Output = io::Result<Wait>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<Wait>> {
        let mut me = self.project();
        if *me.idle && !*me.enabled {
            // Registered before the flag is checked, so a notice sent in between is not missed.
            me.notified.as_mut().enable();
            *me.enabled = true;
        }
        if *me.idle && Stop.closes_idle() {
            return Poll::Ready(Ok(Wait::Stopping));
        }
        if let Poll::Ready(r) = me.stream.poll_read_ready(cx) {
            if *me.idle && me.notified.as_mut().poll(cx).is_ready() {
                // A shedding notice this wait already took (`enable` takes a stored one) is
                // handed on, not dropped with it: the acceptor at the cap waits for a close,
                // and a lost notice held it (and the connection queued behind it) until the
                // idle timeout (75 s).
                me.notice.notify_one();
            }
            return Poll::Ready(r.map(|()| Wait::Ready));
        }
        if me.sleep.poll(cx).is_ready() {
            return Poll::Ready(Ok(Wait::TimedOut));
        }
        if *me.idle && me.notified.poll(cx).is_ready() {
            // Shutdown's notice (a last look), or the cap's (close now to make room).
            let why = if Stop.closes_idle() {
                Wait::Stopping
            } else {
                Wait::Shed
            };
            return Poll::Ready(Ok(why));
        }
        Poll::Pending
    }
}
