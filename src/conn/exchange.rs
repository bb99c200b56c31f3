//! The request an executor is answering, gathered from the state machine's steps the same way
//! by the executors that keep a connection's bytes in one buffer (`blocking` and the TLS one):
//! its head, the plan made at the head, and the body kept for a CGI script.
use crate::http::conn::{Conn, Step};
use crate::http::Request;
use crate::site::{Plan, Site};

#[derive(Default)]
pub struct Exchange {
    req: Option<Request>,
    /// Made at the head when a CGI folder is served (see [`super::plan_at_head`]).
    plan: Option<Plan>,
    /// A CGI script's request body, as the state machine hands it out.
    body: Vec<u8>,
}

impl Exchange {
    /// Carries out the steps that only move bytes out of `buf`: a request's head, body bytes
    /// dropped or kept. Every other step is handed back to the executor.
    pub fn take(
        &mut self,
        site: &Site,
        conn: &mut Conn,
        buf: &mut Vec<u8>,
        step: Step,
    ) -> Option<Step> {
        match step {
            Step::Request(req, used) => {
                buf.drain(..used);
                self.plan = super::plan_at_head(site, &req, conn);
                self.req = Some(req);
            }
            Step::Discard(n) => {
                buf.drain(..n);
            }
            Step::Body(n) => self.body.extend(buf.drain(..n)),
            step => return Some(step),
        }
        None
    }

    /// At `Step::Respond`: the request, its plan (made now unless made at the head) and its
    /// kept body. `None` if no request came first, which the state machine never does.
    pub fn answer(&mut self, site: &Site) -> Option<(Request, Plan, Vec<u8>)> {
        let req = self.req.take()?;
        let plan = self.plan.take().unwrap_or_else(|| super::plan(site, &req));
        Some((req, plan, std::mem::take(&mut self.body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn::Rules;
    use std::time::Instant;

    /// Steps until one is handed back.
    fn until_handed_back(
        ex: &mut Exchange,
        site: &Site,
        conn: &mut Conn,
        buf: &mut Vec<u8>,
    ) -> Step {
        loop {
            let step = conn.poll(&Rules::default(), Instant::now(), buf, false);
            if let Some(step) = ex.take(site, conn, buf, step) {
                return step;
            }
        }
    }

    #[test]
    fn a_request_and_its_dropped_body_leave_the_pipelined_next_request_in_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let site = Site::new(dir.path()).unwrap();
        let mut conn = Conn::new(Instant::now());
        let mut buf =
            b"PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n"
                .to_vec();
        let mut ex = Exchange::default();
        let step = until_handed_back(&mut ex, &site, &mut conn, &mut buf);
        assert!(matches!(step, Step::Respond), "{step:?}");
        assert_eq!(buf, b"GET / HTTP/1.1\r\n");
        let (req, plan, body) = ex.answer(&site).expect("the request");
        assert_eq!(req.target, "/a.txt");
        // No CGI folder: the body was dropped, and the site refuses the method.
        assert!(body.is_empty());
        assert!(matches!(plan, Plan::Reply(ref r) if r.status == 405));
        assert!(ex.answer(&site).is_none(), "answered once");
    }

    #[test]
    fn steps_that_are_not_about_bytes_are_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::new(dir.path()).unwrap();
        let mut conn = Conn::new(Instant::now());
        let mut ex = Exchange::default();
        let mut buf = Vec::new();
        let step = until_handed_back(&mut ex, &site, &mut conn, &mut buf);
        assert!(matches!(step, Step::Read { idle: true, .. }), "{step:?}");
        assert!(ex.answer(&site).is_none());
    }
}
