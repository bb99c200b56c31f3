//! Target resolution security: the path-traversal table (every encoding of `..`, separators, overlong UTF-8, NUL, absolute-form, symlinks out of the root), dotfiles, invalid percent-encoding, absolute-form targets that are fine.

use super::harness::*;

/// Attack targets; none may return a file from outside the root. The secret files are
/// `ROOT/../secret.txt`, `/etc/passwd`, and the file that `ROOT/escape` (and `ROOT/escdir/`,
/// `ROOT/rel-escape`) link to.
const TRAVERSAL: &[&str] = &[
    // plain dot-dot
    "/../secret.txt",
    "/../../../../../../../../../../etc/passwd",
    "/..",
    "/../",
    "/./../secret.txt",
    "//../secret.txt",
    "/sub/../../secret.txt",
    "/sub/./../../secret.txt",
    "/nodir/../../secret.txt",
    "/../www/../secret.txt",
    "/sub/../../../../../../../../etc/passwd",
    // percent-encoded dots, any case
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2E%2e/secret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/%2e%2e",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/.%2e/.%2e/.%2e/.%2e/.%2e/.%2e/etc/passwd",
    // encoded slash / backslash separators
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/sub%2f..%2f..%2fsecret.txt",
    "/..%5csecret.txt",
    "/..%5Csecret.txt",
    "/%2e%2e%5csecret.txt",
    "/sub%5c..%5c..%5csecret.txt",
    // raw backslashes
    "/..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/\\..\\secret.txt",
    // overlong UTF-8 encodings of '.', '/', '\'
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%ae%c0%ae%c0%afsecret.txt",
    "/..%c0%afsecret.txt",
    "/..%c1%9csecret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "/%f0%80%80%ae%f0%80%80%ae/secret.txt",
    "/%c0%2e%c0%2e/secret.txt",
    // NUL
    "/..%00/secret.txt",
    "/../secret.txt%00.html",
    "/a.txt%00/../../secret.txt",
    "/%00../secret.txt",
    // double encoding (decoded once: must stay literal)
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%252fsecret.txt",
    // absolute-form
    "http://localhost/../secret.txt",
    "http://localhost/../../../../../../../../etc/passwd",
    "http://localhost/%2e%2e/secret.txt",
    "http://localhost/..%2fsecret.txt",
    "http://localhost/escape",
    "http://localhost/..",
    // no leading slash
    "../secret.txt",
    "..%2fsecret.txt",
    // symlinks out of the root
    "/escape",
    "/escdir/outside.txt",
    "/escdir/",
    "/rel-escape",
    "/sub/../escape",
    "/./escape",
    "/%65scape",
];

fn leaks(r: &Response) -> Option<&'static str> {
    [SECRET, PASSWD_MARKER, "DOTENV-SECRET", "DOTGIT-SECRET"]
        .into_iter()
        .find(|m| r.body_contains(m))
}

#[test]
fn traversal_table_never_escapes_the_root() {
    assert!(
        TRAVERSAL.len() >= 30,
        "the table must keep at least 30 targets"
    );
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut failures = Vec::new();
        for target in TRAVERSAL {
            let request = req("GET", target, &["Connection: close"]);
            let mut c = srv.connect();
            c.send(&request);
            let r = match c.try_response(false) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{target}: no valid response ({e})"));
                    continue;
                }
            };
            if let Some(m) = leaks(&r) {
                failures.push(format!("{target}: LEAKED {m}: {}", r.summary()));
                continue;
            }
            let ok = match r.status {
                400 | 404 => true,
                // A redirect is harmless only if it points back inside, without dot-dot.
                301 => r
                    .header("location")
                    .is_some_and(|l| l.starts_with('/') && !l.contains("..") && !l.contains('%')),
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{target}: expected 400 or 404, got {}",
                    r.summary()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} traversal targets failed:\n  {}",
            failures.len(),
            TRAVERSAL.len(),
            failures.join("\n  ")
        );
    });
}

#[test]
fn traversal_with_head_and_range_leaks_nothing() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["/../secret.txt", "/escape", "/%2e%2e/secret.txt"] {
            let request = req("HEAD", target, &["Connection: close"]);
            let r = srv.exchange(&request);
            assert!(
                r.status == 400 || r.status == 404,
                "HEAD {target}: {}",
                r.summary()
            );
            let r = srv.exchange(&req(
                "GET",
                target,
                &["Range: bytes=0-100", "Connection: close"],
            ));
            assert!(
                r.status == 400 || r.status == 404,
                "GET {target} with Range: {}",
                r.summary()
            );
            assert!(
                leaks(&r).is_none(),
                "GET {target} with Range leaked: {}",
                r.summary()
            );
        }
    });
}

#[test]
fn dotfiles_and_dot_directories_are_404() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in [
            "/.env",
            "/.git/config",
            "/.git/",
            "/.git",
            "/%2eenv",
            "/%2Egit/config",
            "/.git%2fconfig",
            "/sub/.hidden",
            "/sub/%2ehidden",
            "/.env?x=1",
            "/./.env",
        ] {
            let r = srv.get(target);
            let what = format!("GET {target}");
            let status_ok = r.status == 404 || (r.status == 400 && target.contains("%2f"));
            assert!(status_ok, "{what}: expected 404, got {}", r.summary());
            assert!(
                !r.body_contains("DOTENV-SECRET")
                    && !r.body_contains("DOTGIT-SECRET")
                    && !r.body_contains("HIDDEN-SECRET"),
                "{what}: dotfile content served"
            );
        }
    });
}

#[test]
fn invalid_percent_encoding_is_400() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in [
            "/%zz",
            "/a%4",
            "/a.txt%",
            "/%4g.txt",
            "/%%32%65",
            "/%u002e%u002e/secret.txt",
            // decodes to invalid UTF-8
            "/%ff.txt",
            "/%c3",
            "/%c3%28.txt",
            "/%ed%a0%80.txt",
        ] {
            let r = srv.get(target);
            let what = format!("GET {target}");
            assert_eq!(r.status, 400, "{what}: {}", r.summary());
            check_common(&r, &what);
        }
    });
}

#[test]
fn absolute_form_target_uses_its_path() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (target, body) in [
            ("http://localhost/index.html", INDEX_HTML),
            ("http://localhost/", INDEX_HTML),
            ("http://localhost/a.txt?x=1", A_TXT),
            ("http://example.com:8080/sub/page.txt", "SUB-PAGE\n"),
        ] {
            let r = srv.get(target);
            assert_eq!(r.status, 200, "GET {target}: {}", r.summary());
            assert_eq!(r.body_text(), body, "GET {target}");
        }
    });
}

#[test]
fn fixture_secrets_really_are_outside_the_root() {
    // Guards the table above: the attack targets exist and are reachable by the file system.
    let fx = Fixture::new(true);
    let escape = std::fs::canonicalize(fx.root.join("escape")).expect("escape resolves");
    assert!(escape.starts_with(std::fs::canonicalize(fx.outside.path()).unwrap()));
    assert_eq!(std::fs::read_to_string(&escape).unwrap(), OUTSIDE_SECRET);
    let rel = std::fs::read_to_string(fx.root.join("rel-escape")).expect("rel-escape resolves");
    assert_eq!(rel, PARENT_SECRET);
    let parent = std::fs::read_to_string(fx.root.join("../secret.txt")).unwrap();
    assert_eq!(parent, PARENT_SECRET);
    assert!(std::fs::read_to_string(fx.root.join("escdir/outside.txt")).is_ok());
}
