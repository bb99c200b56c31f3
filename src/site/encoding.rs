//! Content codings of precompressed files (`FILE.br`, `FILE.gz` beside `FILE`) and the choice
//! among them by `Accept-Encoding` (RFC 9110 §12.5.3). Nothing is compressed here: a coding is
//! offered only when its file exists.

/// A content coding served from a precompressed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    /// Every coding, in order of preference when the client weighs them alike (brotli files are
    /// the smaller ones). [`Coding::index`] is the position here.
    pub const ALL: [Coding; 2] = [Coding::Br, Coding::Gzip];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// What the precompressed file's name adds to the file's.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// What the variant's entity-tag adds (so the tags of one URL's codings always differ).
    pub fn etag_tag(self) -> &'static str {
        match self {
            Coding::Br => "-br",
            Coding::Gzip => "-gz",
        }
    }
}

/// Which codings have a precompressed file, by [`Coding::index`].
pub type Available = [bool; 2];

/// What to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Identity,
    Coded(Coding),
    /// The client refused identity (`identity;q=0`, `*;q=0`) and accepts no coding we have: 406.
    NotAcceptable,
}

/// A qvalue in thousandths (`q=0.5` is 500).
type Q = u16;

/// Chooses a representation for a request with `accept_encoding` when the codings in
/// `available` have files. Without the header, identity: RFC 9110 allows any coding then, but
/// such clients (curl without `--compressed`, scripts) are rarely able to decode one, and nginx's
/// `gzip_static` does the same. The highest qvalue wins; on a tie br, then gzip, then identity.
pub fn choose(accept_encoding: Option<&str>, available: Available) -> Choice {
    let Some(header) = accept_encoding else {
        return Choice::Identity;
    };
    let w = Weights::parse(header);
    let mut best: Option<(Q, Choice)> = None;
    for coding in Coding::ALL {
        if available[coding.index()] {
            let q = w.coding(coding);
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, Choice::Coded(coding)));
            }
        }
    }
    let identity = w.identity();
    if identity > 0 && best.is_none_or(|(b, _)| identity > b) {
        best = Some((identity, Choice::Identity));
    }
    best.map_or(Choice::NotAcceptable, |(_, choice)| choice)
}

/// The qvalues an `Accept-Encoding` value gives the codings we know; `None` where it says
/// nothing. The first element naming a coding counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Weights {
    br: Option<Q>,
    gzip: Option<Q>,
    identity: Option<Q>,
    star: Option<Q>,
}

impl Weights {
    fn parse(header: &str) -> Weights {
        let mut w = Weights::default();
        for (token, q) in weighted_list(header) {
            let Some(q) = q else { continue };
            let slot = if token.eq_ignore_ascii_case("br") {
                &mut w.br
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                // RFC 9110 §8.4.1.3: x-gzip is gzip.
                &mut w.gzip
            } else if token.eq_ignore_ascii_case("identity") {
                &mut w.identity
            } else if token == "*" {
                &mut w.star
            } else {
                continue;
            };
            slot.get_or_insert(q);
        }
        w
    }

    /// A coding is acceptable only if named, or covered by `*` (rule 3 of §12.5.3).
    fn coding(&self, c: Coding) -> Q {
        let named = match c {
            Coding::Br => self.br,
            Coding::Gzip => self.gzip,
        };
        named.or(self.star).unwrap_or(0)
    }

    /// Identity is acceptable unless refused by name or by `*` (rule 2). Not named, it comes
    /// after any coding the client accepts (as in nginx and every browser's expectation).
    fn identity(&self) -> Q {
        self.identity.or(self.star).unwrap_or(1)
    }
}

/// The elements of a comma-separated list with weights (`Accept`, `Accept-Encoding`): each
/// element's value without its parameters, and its qvalue (1000 when absent, `None` when
/// malformed, so the caller can skip the element). Empty elements are skipped.
pub fn weighted_list(header: &str) -> impl Iterator<Item = (&str, Option<Q>)> {
    header.split(',').filter_map(|element| {
        let mut params = element.split(';');
        let value = params.next().unwrap_or("").trim();
        if value.is_empty() {
            return None;
        }
        let mut q = Some(1000);
        for param in params {
            if let Some((name, v)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(v.trim());
                }
            }
        }
        Some((value, q))
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2).
fn qvalue(s: &str) -> Option<Q> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac.bytes().chain(std::iter::repeat(b'0')).take(3);
    let frac = thousandths.fold(0, |n, b| n * 10 + Q::from(b - b'0'));
    match int {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Available = [true, true];
    const GZ: Available = [false, true];
    const NONE: Available = [false, false];
    use Choice::{Coded, Identity, NotAcceptable};
    use Coding::{Br, Gzip};

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("0."), Some(0));
        for bad in ["1.5", "2", "0.0001", "", "-1", "0.x", ".5", "1.001"] {
            assert_eq!(qvalue(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_browsers_send_gets_brotli_then_gzip() {
        let chrome = Some("gzip, deflate, br, zstd");
        assert_eq!(choose(chrome, BOTH), Coded(Br));
        assert_eq!(choose(chrome, GZ), Coded(Gzip));
        assert_eq!(choose(chrome, NONE), Identity);
        assert_eq!(choose(Some("gzip"), BOTH), Coded(Gzip));
        assert_eq!(choose(Some("x-gzip"), GZ), Coded(Gzip));
        assert_eq!(choose(Some("GZip, BR"), BOTH), Coded(Br));
    }

    #[test]
    fn no_header_or_an_empty_one_means_identity() {
        assert_eq!(choose(None, BOTH), Identity);
        assert_eq!(choose(Some(""), BOTH), Identity);
        assert_eq!(choose(Some("deflate, zstd"), BOTH), Identity);
    }

    #[test]
    fn qvalues_decide() {
        assert_eq!(choose(Some("br;q=0.5, gzip"), BOTH), Coded(Gzip));
        assert_eq!(choose(Some("br;q=0.5, gzip;q=0.4"), BOTH), Coded(Br));
        assert_eq!(choose(Some("br;q=0, gzip;q=0"), BOTH), Identity);
        assert_eq!(choose(Some("gzip;q=0.5, identity"), GZ), Identity);
        assert_eq!(
            choose(Some("gzip ; Q=0.5 , identity;q=0.4"), GZ),
            Coded(Gzip)
        );
        // A malformed weight drops its element only.
        assert_eq!(choose(Some("br;q=2, gzip"), BOTH), Coded(Gzip));
        // The first element naming a coding counts.
        assert_eq!(choose(Some("gzip;q=0, gzip"), GZ), Identity);
    }

    #[test]
    fn star_covers_what_is_not_named() {
        assert_eq!(choose(Some("*"), BOTH), Coded(Br));
        assert_eq!(choose(Some("*;q=0.5, identity"), BOTH), Identity);
        assert_eq!(choose(Some("br;q=0, *"), BOTH), Coded(Gzip));
        assert_eq!(choose(Some("*;q=0"), BOTH), NotAcceptable);
        assert_eq!(choose(Some("*;q=0, identity"), BOTH), Identity);
    }

    #[test]
    fn identity_refused() {
        assert_eq!(choose(Some("identity;q=0"), NONE), NotAcceptable);
        assert_eq!(choose(Some("gzip, identity;q=0"), GZ), Coded(Gzip));
        assert_eq!(choose(Some("br, identity;q=0"), GZ), NotAcceptable);
        assert_eq!(choose(Some("*;q=0, gzip"), GZ), Coded(Gzip));
    }

    #[test]
    fn weighted_lists_keep_media_type_parameters_apart() {
        let items: Vec<_> =
            weighted_list("text/html;level=1;q=0.5, ,application/json ;q=1, */*;q=x").collect();
        assert_eq!(
            items,
            vec![
                ("text/html", Some(500)),
                ("application/json", Some(1000)),
                ("*/*", None)
            ]
        );
    }
}
