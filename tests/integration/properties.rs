//! Property tests: the fuzz targets' properties (`tests/props/mod.rs`, shared with `fuzz/`)
//! replayed on a bounded number of generated inputs, so every `cargo test` checks them in seconds.
//!
//! Generators: valid requests built from parts (method, target, version, header fields, line
//! endings, bodies), fed whole, in random chunks and pipelined; the same requests with a few bytes
//! mutated; arbitrary bytes; path-like strings built from the tokens that matter (dots, slashes,
//! escapes, the fixture's symlink names) and arbitrary strings; Range headers from parts.
#[path = "../props/mod.rs"]
pub(crate) mod props;

use archserve::http::{parse, Limits, Method, Parsed, Request, Version};
use archserve::site::range::Ranges;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use props::Fixture;

/// Cases per property: enough to catch the easy regressions, few enough for seconds in CI.
const CASES: u32 = 512;

fn config() -> Config {
    Config {
        cases: CASES,
        // Shrunk failures are printed; nothing is written next to the sources.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Valid requests from parts
// ---------------------------------------------------------------------------------------------

/// One generated request and what the parser must make of it.
#[derive(Debug, Clone)]
struct Gen {
    /// The head as sent (leading empty lines included).
    head: Vec<u8>,
    /// The body that follows (Content-Length bytes).
    body: Vec<u8>,
    method: String,
    target: String,
    version: Version,
    keep_alive: bool,
    range: Option<String>,
}

impl Gen {
    fn check(&self, req: &Request) {
        assert_eq!(req.method_text, self.method);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" | "PUT" | "DELETE" | "PATCH" | "CONNECT" | "TRACE" => Method::NotAllowed,
            _ => Method::Unknown,
        };
        assert_eq!(req.method, method);
        assert_eq!(req.target, self.target);
        assert_eq!(req.version, self.version);
        assert_eq!(req.keep_alive, self.keep_alive);
        assert_eq!(req.body_len, self.body.len() as u64);
        assert_eq!(req.range, self.range);
    }

    fn bytes(&self) -> Vec<u8> {
        [&self.head[..], &self.body[..]].concat()
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "HEAD", "OPTIONS", "POST", "DELETE"])
            .prop_map(str::to_owned),
        1 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    let path = "(/[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,8}){1,5}";
    prop_oneof![
        6 => (path, proptest::option::of("[A-Za-z0-9=&/?%.-]{0,12}"))
            .prop_map(|(p, q)| match q {
                Some(q) => format!("{p}?{q}"),
                None => p,
            }),
        1 => ("https?", "[a-z0-9.-]{1,12}(:[0-9]{1,5})?", path)
            .prop_map(|(s, h, p)| format!("{s}://{h}{p}")),
        1 => Just("*".to_owned()),
    ]
}

/// Field names the parser acts on are generated on purpose below, not by chance here.
fn field() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z][A-Za-z0-9-]{0,15}",
        "([!-~]([ !-~\t]{0,30}[!-~])?)?",
    )
        .prop_filter("a field the parser acts on", |(name, _)| {
            ![
                "host",
                "content-length",
                "transfer-encoding",
                "connection",
                "range",
                "if-none-match",
                "if-modified-since",
                "if-range",
                "referer",
                "user-agent",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
        })
}

fn request() -> impl Strategy<Value = Gen> {
    (
        (method(), target(), any::<bool>(), 0..3usize),
        (
            prop::collection::vec(field(), 0..6),
            any::<prop::sample::Index>(),
            "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            any::<bool>(),
        ),
        (
            prop::sample::select(vec![
                None,
                Some("close"),
                Some("keep-alive"),
                Some("Upgrade"),
            ]),
            proptest::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of("bytes=[0-9]{1,4}-[0-9]{0,4}"),
            // Line ending per line: CRLF, or the bare LF that RFC 9112 §2.2 lets a server accept.
            prop::collection::vec(prop::sample::select(vec!["\r\n", "\n"]), 16),
        ),
    )
        .prop_map(
            |(
                (method, target, http11, empty_lines),
                (mut fields, host_at, host, send_host_10),
                (connection, body, range, eols),
            )| {
                let version = if http11 {
                    Version::Http11
                } else {
                    Version::Http10
                };
                if http11 || send_host_10 {
                    fields.insert(host_at.index(fields.len() + 1), ("Host".into(), host));
                }
                if let Some(c) = connection {
                    fields.push(("Connection".into(), c.into()));
                }
                if let Some(body) = &body {
                    fields.push(("Content-Length".into(), body.len().to_string()));
                }
                let body = body.unwrap_or_default();
                if let Some(r) = &range {
                    fields.push(("Range".into(), r.clone()));
                }
                let mut eol = eols.iter().cycle();
                let mut head = Vec::new();
                for _ in 0..empty_lines {
                    head.extend_from_slice(eol.next().unwrap().as_bytes());
                }
                head.extend_from_slice(
                    format!(
                        "{method} {target} {}{}",
                        version.as_str(),
                        eol.next().unwrap()
                    )
                    .as_bytes(),
                );
                for (name, value) in &fields {
                    head.extend_from_slice(
                        format!("{name}: {value}{}", eol.next().unwrap()).as_bytes(),
                    );
                }
                head.extend_from_slice(eol.next().unwrap().as_bytes());
                let keep_alive = match (version, connection) {
                    (_, Some("close")) => false,
                    (Version::Http10, Some("keep-alive")) => true,
                    (Version::Http10, _) => false,
                    (Version::Http11, _) => true,
                };
                Gen {
                    head,
                    body,
                    method,
                    target,
                    version,
                    keep_alive,
                    range,
                }
            },
        )
}

/// Parses a stream the way a connection loop does, the bytes arriving in the given chunk
/// sizes: parse what has arrived, on Complete drop the head and its body, parse again. Returns
/// the requests in order; panics on an error (every generated request is valid).
fn parse_arriving(stream: &[u8], chunks: &[usize], limits: &Limits) -> Vec<Request> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut body_left = 0usize;
    let mut sent = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while sent < stream.len() {
        let n = sizes.next().unwrap_or(1).clamp(1, stream.len() - sent);
        buf.extend_from_slice(&stream[sent..sent + n]);
        sent += n;
        loop {
            let drop = body_left.min(buf.len());
            buf.drain(..drop);
            body_left -= drop;
            if body_left > 0 || buf.is_empty() {
                break;
            }
            match parse(&buf, limits) {
                Ok(Parsed::Complete(req, used)) => {
                    buf.drain(..used);
                    body_left = req.body_len as usize;
                    out.push(req);
                }
                Ok(Parsed::Partial) => break,
                Err(e) => panic!(
                    "error {e:?} after {sent} bytes, buffer {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            }
        }
    }
    assert!(buf.is_empty() && body_left == 0, "bytes left over");
    out
}

#[test]
fn a_valid_request_parses_whole_and_every_prefix_is_partial() {
    TestRunner::new(config())
        .run(&request(), |g| {
            let limits = Limits::default();
            match props::check_parse(&g.head, &limits) {
                Ok(Parsed::Complete(req, used)) => {
                    assert_eq!(used, g.head.len(), "a head uses exactly its bytes");
                    g.check(&req);
                }
                other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(&g.head)),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn pipelined_requests_agree_whole_bytewise_and_in_chunks() {
    let strategy = (
        prop::collection::vec(request(), 1..5),
        prop::collection::vec(1..64usize, 1..8),
    );
    TestRunner::new(config())
        .run(&strategy, |(reqs, chunks)| {
            let limits = Limits::default();
            let stream: Vec<u8> = reqs.iter().flat_map(Gen::bytes).collect();
            // Whole: everything already in the buffer.
            let whole = parse_arriving(&stream, &[stream.len()], &limits);
            // One byte at a time, and in random chunks.
            let bytewise = parse_arriving(&stream, &[1], &limits);
            let chunked = parse_arriving(&stream, &chunks, &limits);
            assert_eq!(whole.len(), reqs.len());
            for (req, g) in whole.iter().zip(&reqs) {
                g.check(req);
            }
            assert_eq!(whole, bytewise);
            assert_eq!(whole, chunked);
            // And the shared walk (which also re-parses every prefix of every head).
            assert_eq!(props::check_stream(&stream, &limits, 8), reqs.len());
            Ok(())
        })
        .unwrap();
}

/// Small limits so the generated requests cross the 414 and 431 edges.
fn limits() -> impl Strategy<Value = Limits> {
    (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| props::limits_from(a, b, c))
}

#[test]
fn valid_requests_under_small_limits_keep_the_properties() {
    TestRunner::new(config())
        .run(
            &(prop::collection::vec(request(), 1..4), limits()),
            |(reqs, limits)| {
                let stream: Vec<u8> = reqs.iter().flat_map(Gen::bytes).collect();
                props::check_stream(&stream, &limits, 8);
                Ok(())
            },
        )
        .unwrap();
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Replace(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes the parser cares about, more often than chance would pick them.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"\r\n :\t/%.\x00\x7f\x80HTP1".to_vec()),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Remove),
        (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
    ]
}

#[test]
fn mutated_requests_keep_the_properties() {
    let strategy = (
        request(),
        prop::collection::vec(edit(), 1..4),
        prop_oneof![Just(Limits::default()), limits()],
    );
    TestRunner::new(config())
        .run(&strategy, |(g, edits, limits)| {
            let mut bytes = g.bytes();
            for e in edits {
                match e {
                    Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                    Edit::Remove(i) if !bytes.is_empty() => {
                        bytes.remove(i.index(bytes.len()));
                    }
                    Edit::Replace(i, b) if !bytes.is_empty() => {
                        let i = i.index(bytes.len());
                        bytes[i] = b;
                    }
                    _ => {}
                }
            }
            // The lean walk (one parse per head) finds the same heads as the thorough one.
            assert_eq!(
                props::check_stream(&bytes, &limits, 4),
                props::check_stream_once(&bytes, &limits, 4)
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_keep_the_properties() {
    let strategy = (prop::collection::vec(any::<u8>(), 0..600), limits());
    TestRunner::new(config())
        .run(&strategy, |(bytes, limits)| {
            assert_eq!(
                props::check_stream(&bytes, &limits, 4),
                props::check_stream_once(&bytes, &limits, 4)
            );
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Path-like strings from the pieces that matter, so the interesting cases are common.
fn path_like() -> impl Strategy<Value = String> {
    let mut pieces: Vec<&'static str> = vec![
        "/",
        "/",
        "/",
        "//",
        ".",
        "..",
        "...",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%25",
        "%5c",
        "%5C",
        "%00",
        "%0a",
        "%c0%ae",
        "%ff",
        "%",
        "%2",
        "\\",
        "?",
        "#",
        "a",
        "b.txt",
        "é",
        "%C3%A9",
        "passwd",
        "http://h",
        "https://x:1",
    ];
    pieces.extend(props::FIXTURE_NAMES);
    prop::collection::vec(prop::sample::select(pieces), 0..12).prop_map(|v| v.concat())
}

#[test]
fn resolution_never_leaves_the_root() {
    let fx = Fixture::new().expect("create fixture root");
    let strategy = prop_oneof![3 => path_like(), 1 => any::<String>(), 1 => "[ -~]{0,40}"];
    TestRunner::new(Config {
        cases: CASES * 2,
        ..config()
    })
    .run(&strategy, |s| {
        props::check_target(&fx, &s);
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_fixture_is_what_the_properties_assume() {
    // Guards the resolution property against passing vacuously: files inside open, every
    // symlink that leads out is refused, and the ones that stay inside are followed.
    let fx = Fixture::new().expect("create fixture root");
    for inside in [
        "index.html",
        "sub/a.txt",
        "sub/ok",
        "",
        "sub",
        "sub/up/index.html",
    ] {
        assert!(props::check_open(&fx, inside), "{inside:?} should open");
    }
    for out in [
        "abs/etc/passwd",
        "etc/passwd",
        "up/secret",
        "upfile",
        "secret-dir/secret",
        "rel-out",
        "deep/deeper/out/secret",
        "proc/etc/passwd",
        "hop-out/secret",
        "../secret",
        "/etc/passwd",
        "loop",
    ] {
        assert!(!props::check_open(&fx, out), "{out:?} should be refused");
    }
}

// ---------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------

fn range_header() -> impl Strategy<Value = String> {
    let number = prop_oneof![0..200u64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1),]
        .prop_map(|n| n.to_string());
    let spec = prop_oneof![
        (number.clone(), number.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
        number.clone().prop_map(|a| format!("{a}-")),
        number.prop_map(|n| format!("-{n}")),
        "[ 0-9,=-]{0,6}",
    ];
    (
        prop::sample::select(vec!["bytes=", "Bytes = ", "bytes =", "items=", ""]),
        prop::collection::vec(spec, 0..40),
        prop::sample::select(vec![",", ", ", " ,", ",,"]),
    )
        .prop_map(|(unit, specs, sep)| format!("{unit}{}", specs.join(sep)))
}

#[test]
fn ranges_stay_within_the_representation() {
    let len = prop_oneof![0..300u64, any::<u64>(), Just(u64::MAX), Just(1u64)];
    let strategy = (prop_oneof![3 => range_header(), 1 => any::<String>()], len);
    TestRunner::new(config())
        .run(&strategy, |(header, len)| {
            props::check_range(&header, len);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_satisfiable_single_range_is_served() {
    let strategy = (1..10_000u64).prop_flat_map(|len| (Just(len), 0..len, 0..len));
    TestRunner::new(config())
        .run(&strategy, |(len, a, b)| {
            let (first, last) = (a.min(b), a.max(b));
            assert_eq!(
                props::check_range(&format!("bytes={first}-{last}"), len),
                Ranges::Partial(vec![(first, last)])
            );
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The open-file cache under file changes
// ---------------------------------------------------------------------------------------------

fn churn_op() -> impl Strategy<Value = props::ChurnOp> {
    (any::<u8>(), any::<u8>()).prop_map(|(op, arg)| props::ChurnOp::from_bytes(op, arg))
}

#[test]
fn the_file_cache_serves_files_as_they_are_now() {
    // Each case builds its own fixture (a few dozen file operations), so fewer cases; seeded,
    // so CI runs the same sequences every time (the fuzz target explores further).
    let config = Config {
        cases: CASES / 4,
        ..config()
    };
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
        .run(&prop::collection::vec(churn_op(), 1..48), |ops| {
            props::check_churn(&ops);
            Ok(())
        })
        .unwrap();
}

/// The two sequences that showed the cache following a symlink out of the root: a file cached
/// at `d/c` (or through the symlink `l -> d`); `d` moved out of the root; a symlink to where it
/// went put in its place (or `l` retargeted there). The cache must not serve the file there.
#[test]
fn the_file_cache_never_follows_a_symlink_out_of_the_root() {
    use props::ChurnOp::{Get, MoveOut, Symlink};
    let (d, l, to_moved) = (1, 6, 4); // CHURN_SLOTS "d", "l"; CHURN_LINKS "../outside/m"
    let (d_c, l_c) = (5, 10); // CHURN_TARGETS "/d/c", "/l/c"
    props::check_churn(&[
        Get(d_c),
        Get(d_c),
        MoveOut(d),
        Symlink(d, to_moved),
        Get(d_c),
    ]);
    props::check_churn(&[
        Get(l_c),
        Get(l_c),
        MoveOut(d),
        Symlink(l, to_moved),
        Get(l_c),
    ]);
}
