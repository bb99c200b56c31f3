//! The `Range` header (RFC 9110 §14.2): which byte ranges of a representation to send.

/// What a Range header asks of a representation of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable Range (absent, malformed, another unit, or too greedy): send everything, 200.
    Full,
    /// Inclusive `(first, last)` byte positions, in the order asked: 206.
    Partial(Vec<(u64, u64)>),
    /// Well-formed, but no range overlaps the representation: 416.
    Unsatisfiable,
}

/// More ranges than this and the header is ignored: many tiny ranges cost us a part header each.
pub const MAX_RANGES: usize = 32;

/// Parses `bytes=a-b, c-, -n` against a representation of `len` bytes.
pub fn parse(header: &str, len: u64) -> Ranges {
    let Some((unit, specs)) = header.split_once('=') else {
        return Ranges::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Full;
    }
    let mut out = Vec::new();
    let mut count = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue; // RFC 9110 allows empty list elements
        }
        count += 1;
        if count > MAX_RANGES {
            return Ranges::Full;
        }
        let Some((a, b)) = spec.split_once('-') else {
            return Ranges::Full;
        };
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            // Suffix range: the last n bytes.
            let Some(n) = number(b) else {
                return Ranges::Full;
            };
            if n > 0 && len > 0 {
                out.push((len.saturating_sub(n), len - 1));
            }
        } else {
            let Some(first) = number(a) else {
                return Ranges::Full;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match number(b) {
                    Some(last) if last >= first => last,
                    _ => return Ranges::Full,
                }
            };
            if first < len {
                out.push((first, last.min(len - 1)));
            }
        }
    }
    if count == 0 {
        return Ranges::Full;
    }
    if out.is_empty() {
        return Ranges::Unsatisfiable;
    }
    // Overlapping ranges that add up to more than the file are an amplification trick
    // (RFC 9110 §14.2 lets a server ignore them): send the file once instead.
    // In u128: with a `len` near u64::MAX a u64 sum could wrap and let an amplifying set through.
    let total: u128 = out.iter().map(|&(a, b)| u128::from(b - a) + 1).sum();
    if out.len() > 1 && total > u128::from(len) {
        return Ranges::Full;
    }
    Ranges::Partial(out)
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-9", 100), Ranges::Partial(vec![(0, 9)]));
        assert_eq!(parse("bytes=90-", 100), Ranges::Partial(vec![(90, 99)]));
        assert_eq!(parse("bytes=-10", 100), Ranges::Partial(vec![(90, 99)]));
        assert_eq!(parse("bytes=-1000", 100), Ranges::Partial(vec![(0, 99)]));
        assert_eq!(parse("bytes=50-1000", 100), Ranges::Partial(vec![(50, 99)]));
        assert_eq!(parse("Bytes = 1-2", 100), Ranges::Partial(vec![(1, 2)]));
    }

    #[test]
    fn multiple_ranges() {
        assert_eq!(
            parse("bytes=0-1, 5-6,-2", 100),
            Ranges::Partial(vec![(0, 1), (5, 6), (98, 99)])
        );
        // Unsatisfiable members are dropped when others remain.
        assert_eq!(
            parse("bytes=0-1,500-600", 100),
            Ranges::Partial(vec![(0, 1)])
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), Ranges::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Ranges::Unsatisfiable);
    }

    #[test]
    fn malformed_is_ignored() {
        for h in [
            "bytes=x-y",
            "items=0-1",
            "bytes=5-1",
            "bytes",
            "bytes=",
            "bytes=1",
            "bytes=--1",
            "bytes=1-2-3",
        ] {
            assert_eq!(parse(h, 100), Ranges::Full, "{h}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse(&many, 100), Ranges::Full);
        assert_eq!(parse("bytes=0-99,0-99", 100), Ranges::Full);
    }

    // Found by fuzz/range_header: with a length near u64::MAX the total of the ranges wrapped
    // around, so three overlapping ranges adding up to twice the length were served as 206.
    #[test]
    fn amplification_check_does_not_wrap() {
        let len = 18_374_686_479_671_623_681;
        assert_eq!(parse("bytes=, 5516-,8446716-,-80", len), Ranges::Full);
        assert_eq!(parse("bytes=0-,0-", u64::MAX), Ranges::Full);
    }
}
