//! Response headers by rule (`--header 'GLOB: Name: value'`), e.g. `Cache-Control` per path
//! pattern: parsed and checked at start-up, added to the 200, 206 and 304 answers of the files
//! (and directory listings) whose path matches.
//!
//! Globs are gitignore-style, matched with globset: a glob without `/` matches the file's name
//! in any directory (`*.css`, `index.html`); a glob with `/` matches the path from the root
//! (`/assets/**`, `/img/*.png`; a missing leading `/` is implied). `*` and `?` never cross a
//! `/`, `**` does, `{a,b}` and `[a-z]` work as usual. A precompressed variant is matched by the
//! name of the file it stands for (`app.js`, not `app.js.gz`); an `index.html` served for `/dir/`
//! by its own name. When several matching rules set the same field, the last one given wins.
use globset::{Candidate, GlobBuilder, GlobMatcher};

use crate::http::response::HeadWriter;

/// At most this many rules (each is one bit of a mask while answering, so no allocation).
pub const MAX_RULES: usize = 64;

/// Fields the server writes itself (framing, validators, negotiation, connection): a rule may
/// not add a second one.
const RESERVED: &[&str] = &[
    "accept-ranges",
    "allow",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "location",
    "proxy-connection",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
];

/// One `GLOB: Name: value` rule.
#[derive(Debug, Clone)]
pub struct Rule {
    glob: GlobMatcher,
    /// The glob has no `/`: it is matched against the file's name only.
    name_only: bool,
    name: String,
    value: String,
}

impl std::str::FromStr for Rule {
    type Err = String;

    /// Parses `GLOB: Name: value` (the glob ends at the first `:`).
    fn from_str(s: &str) -> Result<Rule, String> {
        let (glob, field) = s.split_once(':').ok_or("expected `GLOB: Name: value`")?;
        let (name, value) = field
            .split_once(':')
            .ok_or("expected `GLOB: Name: value`")?;
        let (glob, name, value) = (glob.trim(), name.trim(), value.trim());
        if glob.is_empty() {
            return Err("empty glob".into());
        }
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("`{name}` is not a header field name"));
        }
        if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(format!("`{name}` is set by the server, not by rules"));
        }
        if value.is_empty() {
            return Err(format!("empty value for `{name}`"));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(format!(
                "the value for `{name}` must be printable ASCII (no control characters)"
            ));
        }
        let name_only = !glob.contains('/');
        let anchored = if name_only || glob.starts_with('/') {
            glob.to_owned()
        } else {
            format!("/{glob}")
        };
        let glob = GlobBuilder::new(&anchored)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("bad glob `{glob}`: {}", e.kind()))?
            .compile_matcher();
        Ok(Rule {
            glob,
            name_only,
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// `tchar` of RFC 9110 §5.6.2: what a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The rules, in the order given.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Vec<Rule>,
    /// For each rule, the index of the first rule setting the same field (case-insensitive).
    field: Vec<usize>,
    /// The most bytes the rules can add to a head.
    room: usize,
}

impl HeaderRules {
    pub fn new(rules: Vec<Rule>) -> Result<HeaderRules, String> {
        if rules.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} --header rules"));
        }
        let field = (0..rules.len())
            .map(|i| {
                (0..=i)
                    .find(|&j| rules[j].name.eq_ignore_ascii_case(&rules[i].name))
                    .unwrap_or(i)
            })
            .collect();
        let room = rules.iter().map(|r| r.name.len() + r.value.len() + 4).sum();
        Ok(HeaderRules { rules, field, room })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The most bytes [`HeaderRules::write`] adds, for sizing a head buffer.
    pub fn room(&self) -> usize {
        self.room
    }

    /// The rules that apply to `path` (from the root, with a leading `/`), as a mask of rule
    /// indices: for each field, the last matching rule setting it.
    pub fn matching(&self, path: &str) -> u64 {
        if self.rules.is_empty() {
            return 0;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let (full, base) = (Candidate::new(path), Candidate::new(name));
        let (mut winners, mut fields_done) = (0u64, 0u64);
        for (i, rule) in self.rules.iter().enumerate().rev() {
            let field = 1u64 << self.field[i];
            if fields_done & field == 0 {
                let candidate = if rule.name_only { &base } else { &full };
                if rule.glob.is_match_candidate(candidate) {
                    winners |= 1 << i;
                    fields_done |= field;
                }
            }
        }
        winners
    }

    /// Adds the fields of the rules that apply to `path`, in the order the rules were given.
    pub fn write(&self, w: &mut HeadWriter, path: &str) {
        let winners = self.matching(path);
        for (i, rule) in self.rules.iter().enumerate() {
            if winners & (1 << i) != 0 {
                w.field(&rule.name, &rule.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> HeaderRules {
        HeaderRules::new(list.iter().map(|r| r.parse().unwrap()).collect()).unwrap()
    }

    fn head(rules: &HeaderRules, path: &str) -> String {
        let mut out = Vec::new();
        let mut w = HeadWriter::new(&mut out, 200, "D");
        rules.write(&mut w, path);
        let text = String::from_utf8(out).unwrap();
        text.split("\r\n")
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("HTTP/")
                    && !l.starts_with("Date")
                    && !l.starts_with("Server")
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    #[test]
    fn globs_without_a_slash_match_names_anywhere() {
        let r = rules(&[
            "*.css: Cache-Control: max-age=1",
            "index.html: X-Index: yes",
        ]);
        assert_eq!(head(&r, "/style.css"), "Cache-Control: max-age=1");
        assert_eq!(head(&r, "/a/b/c.css"), "Cache-Control: max-age=1");
        assert_eq!(head(&r, "/style.css.map"), "");
        assert_eq!(head(&r, "/sub/index.html"), "X-Index: yes");
        assert_eq!(head(&r, "/css"), "");
    }

    #[test]
    fn globs_with_a_slash_match_from_the_root() {
        let r = rules(&[
            "/assets/**: Cache-Control: immutable",
            "img/*.png: X-Img: 1",
            "/{a,b}/[0-9].txt: X-Digit: 1",
        ]);
        assert_eq!(head(&r, "/assets/app.js"), "Cache-Control: immutable");
        assert_eq!(head(&r, "/assets/x/y/z.js"), "Cache-Control: immutable");
        assert_eq!(head(&r, "/sub/assets/app.js"), "");
        assert_eq!(head(&r, "/img/a.png"), "X-Img: 1");
        // `*` does not cross a `/`.
        assert_eq!(head(&r, "/img/deep/a.png"), "");
        assert_eq!(head(&r, "/b/7.txt"), "X-Digit: 1");
        assert_eq!(head(&r, "/c/7.txt"), "");
    }

    #[test]
    fn the_last_rule_for_a_field_wins_and_order_is_kept() {
        let r = rules(&[
            "*: Cache-Control: no-cache",
            "*: X-A: 1",
            "*.css: cache-control: public, max-age=31536000, immutable",
        ]);
        assert_eq!(
            head(&r, "/s.css"),
            "X-A: 1|cache-control: public, max-age=31536000, immutable"
        );
        assert_eq!(head(&r, "/i.html"), "Cache-Control: no-cache|X-A: 1");
        assert!(HeaderRules::default().is_empty());
        assert_eq!(head(&HeaderRules::default(), "/x"), "");
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for (bad, why) in [
            ("*.css", "expected"),
            ("*.css: Cache-Control", "expected"),
            (": X: y", "empty glob"),
            ("*.css: : y", "not a header field name"),
            ("*.css: Bad Name: y", "not a header field name"),
            ("*.css: X:", "empty value"),
            ("*.css: X: a\u{7f}b", "printable ASCII"),
            ("*.css: X: caf\u{e9}", "printable ASCII"),
            ("*.css: Content-Length: 1", "set by the server"),
            ("*.css: connection: close", "set by the server"),
            ("/a/[: X: y", "bad glob"),
            ("{a: X: y", "bad glob"),
        ] {
            let err = bad.parse::<Rule>().expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        let many: Vec<Rule> = (0..=MAX_RULES)
            .map(|_| "*: X: y".parse().unwrap())
            .collect();
        assert!(HeaderRules::new(many).is_err());
    }
}
