//! The executors: they carry out what the connection state machine (`http::conn`) decides, each
//! in its own I/O style, and hold no protocol rule of their own. `blocking` (std::net: a thread
//! or process per connection at a time), `evented` (tokio: many connections per thread), `uring`
//! (io_uring: many connections per worker, completions instead of readiness), and the accept
//! layer they use (`accept`: accept loops, the connection cap and its shedding, back-off).
//!
//! What they share is here: how a request becomes a reply (the site plans it; a workload runs
//! in the executor's own way of waiting, then the site describes it), the `send` with MSG_MORE,
//! and the access log.
pub mod accept;
pub mod blocking;
pub mod cgi;
pub mod cgi_blocking;
pub mod cgi_evented;
pub mod evented;
pub mod evented_tls;
pub mod exchange;
pub mod tls;
pub mod uring;
mod wait;

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::access_log;
use crate::http::conn::Conn;
use crate::http::date::DateCache;
use crate::http::Request;
use crate::site::{Ctx, Plan, Reply, Site, Work};

/// How much to grow the read buffer by for one read.
pub const READ_CHUNK: usize = 8 * 1024;

/// `send(2)` on a connection; `more`: a file body follows (MSG_MORE), so the head waits to
/// leave in the same segments as the body's start instead of as a small segment of its own (as
/// nginx's `tcp_nopush`, lighttpd's `TCP_CORK`). Measured on the 1 MiB file (`h2load --h1 -c4
/// -n4000`, `async`): 1.8-2.8 GB/s without, 3.1-3.8 GB/s with.
pub fn send(sock: &impl std::os::fd::AsFd, bytes: &[u8], more: bool) -> std::io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    socket2::SockRef::from(sock).send_with_flags(bytes, flags)
}

thread_local! {
    /// One Date cache per thread: formatting happens at most once a second per worker, and an
    /// idle connection holds no copy of it.
    static DATES: RefCell<DateCache> = RefCell::new(DateCache::new());
}

/// Calls `f` with the current `Date` value.
pub fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    DATES.with(|d| f(d.borrow_mut().get(SystemTime::now())))
}

/// What the site answers `req`: a reply, or a workload to run first.
pub fn plan(site: &Site, req: &Request) -> Plan {
    with_date(|date| site.plan(req, Ctx { date }))
}

/// The plan for `req` made as soon as its head is read, when the site may want its body (a CGI
/// folder is served): a script's body is then kept for it (see `Conn::keep_body`) instead of
/// dropped. `None` otherwise: the plan is made once the body is dropped, as before CGI.
pub fn plan_at_head(site: &Site, req: &Request, conn: &mut Conn) -> Option<Plan> {
    let opts = site.cgi()?;
    let planned = plan(site, req);
    if let Plan::Cgi(_) = &planned {
        conn.keep_body(req.body_len, opts.max_body, std::time::Instant::now());
    }
    Some(planned)
}

/// The error page for a CGI script that got no answer of its own.
pub fn cgi_failure(site: &Site, fail: cgi::Fail, head_only: bool) -> Reply {
    with_date(|date| site.error_page(fail.status(), Ctx { date }, head_only))
}

/// The reply once a workload has run (`primes`: the count for `/cpu`).
pub fn after_work(site: &Site, req: &Request, work: Work, primes: Option<u64>) -> Reply {
    with_date(|date| site.after_work(req, work, primes, Ctx { date }))
}

/// The refusal with `status` (the parser's, or 408).
pub fn refusal(site: &Site, status: u16) -> Reply {
    with_date(|date| site.refuse(status, date))
}

/// Writes the access-log line of one answered (or refused: `req` None) request.
pub fn log_request(peer: Option<IpAddr>, req: Option<&Request>, status: u16, body_bytes: u64) {
    if !access_log::enabled() {
        return;
    }
    with_date(|date| {
        access_log::record(&access_log::Entry {
            peer,
            date,
            request: req.map(|r| {
                (
                    r.method_text.as_str(),
                    r.target.as_str(),
                    r.version.as_str(),
                )
            }),
            status,
            body_bytes,
            referer: req.and_then(|r| r.referer.as_deref()),
            user_agent: req.and_then(|r| r.user_agent.as_deref()),
        })
    });
}
