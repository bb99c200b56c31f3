//! The workload endpoints: `/cpu` (prime count, `?n=` bounded) and `/io` (`?ms=` bounded) answer 200 text/plain with the right result, reject bad parameters with 400, and run concurrently with keep-alive intact. No timing assertions.

use super::harness::*;
use std::thread;

fn expect_text_200(srv: &ArchServer, target: &str) -> Response {
    let r = srv.get(target);
    let what = format!("GET {target}");
    assert_eq!(r.status, 200, "{what}: {}", r.summary());
    check_common(&r, &what);
    let ct = r.must("content-type");
    assert!(ct.starts_with("text/plain"), "{what}: Content-Type {ct:?}");
    assert_eq!(r.must("content-length"), r.body.len().to_string());
    r
}

#[test]
fn cpu_counts_primes_for_small_n() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (n, count) in [(100, "25"), (10, "4"), (2, "1"), (1000, "168")] {
            let target = format!("/cpu?n={n}");
            let r = expect_text_200(&srv, &target);
            let nums = numbers_in(&r.body_text());
            assert!(
                nums.iter().any(|x| x == count),
                "GET {target}: body should contain the prime count {count}: {:?}",
                r.body_text()
            );
        }
    });
}

#[test]
fn cpu_default_counts_primes_to_one_million() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let r = expect_text_200(&srv, "/cpu");
        assert!(
            numbers_in(&r.body_text()).iter().any(|x| x == "78498"),
            "GET /cpu: body should contain 78498: {:?}",
            r.body_text()
        );
    });
}

#[test]
fn io_waits_then_answers() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        expect_text_200(&srv, "/io?ms=50");
        expect_text_200(&srv, "/io?ms=0");
    });
}

#[test]
fn workload_parameters_out_of_range_are_400() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in [
            "/cpu?n=0",
            "/cpu?n=10000001",
            "/cpu?n=abc",
            "/cpu?n=-5",
            "/cpu?n=",
            "/cpu?n=1e3",
            "/cpu?n=99999999999999999999999",
            "/io?ms=60001",
            "/io?ms=x",
            "/io?ms=-1",
            "/io?ms=",
            "/io?ms=1.5",
        ] {
            let r = srv.get(target);
            let what = format!("GET {target}");
            assert_eq!(r.status, 400, "{what}: {}", r.summary());
            check_common(&r, &what);
        }
    });
}

#[test]
fn workloads_keep_the_connection_alive_and_support_head() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut c = srv.connect();
        let mut all = req("GET", "/io?ms=50", &[]);
        all.extend(req("GET", "/cpu?n=100", &[]));
        all.extend(req("HEAD", "/io?ms=10", &[]));
        all.extend(req("GET", "/a.txt", &["Connection: close"]));
        c.send(&all);
        let r = c.response();
        assert_eq!(r.status, 200, "/io pipelined: {}", r.summary());
        assert!(r.says_keep_alive(), "/io: {}", r.summary());
        let r = c.response();
        assert_eq!(r.status, 200, "/cpu pipelined: {}", r.summary());
        assert!(numbers_in(&r.body_text()).iter().any(|x| x == "25"));
        let h = c.head_response();
        assert_eq!(h.status, 200, "HEAD /io: {}", h.summary());
        let r = c.response();
        assert_eq!(r.body_text(), A_TXT, "{}", r.summary());
        c.assert_closed("after Connection: close");
    });
}

#[test]
fn concurrent_workloads_all_succeed() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // More clients than the 2 workers: every one must still get its answer.
        thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let srv = &srv;
                    s.spawn(move || {
                        if i % 2 == 0 {
                            let r = srv.get("/io?ms=100");
                            assert_eq!(r.status, 200, "concurrent /io #{i}: {}", r.summary());
                        } else {
                            let r = srv.get("/cpu?n=100");
                            assert_eq!(r.status, 200, "concurrent /cpu #{i}: {}", r.summary());
                            assert!(numbers_in(&r.body_text()).iter().any(|x| x == "25"));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("client thread");
            }
        });
    });
}

#[test]
fn many_concurrent_keep_alive_clients_get_correct_answers() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        thread::scope(|s| {
            let handles: Vec<_> = (0..12)
                .map(|i| {
                    let srv = &srv;
                    s.spawn(move || {
                        let mut c = srv.connect();
                        for (j, (target, body)) in [
                            ("/a.txt", A_TXT),
                            ("/style.css", STYLE_CSS),
                            ("/sub/", SUB_INDEX_HTML),
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            let extra: &[&str] = if j == 2 { &["Connection: close"] } else { &[] };
                            c.send(&req("GET", target, extra));
                            let r = c.response();
                            assert_eq!(r.status, 200, "client {i} request {j}: {}", r.summary());
                            assert_eq!(r.body_text(), body, "client {i} request {j}");
                        }
                        let r = c.read_to_close();
                        assert!(r.is_ok_and(|b| b.is_empty()), "client {i}: not closed");
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("client thread");
            }
        });
    });
}
