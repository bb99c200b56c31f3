//! Where the clients connect and what `load` sends: `http://host:port/path`,
//! `https://host:port/path` or `HOST PORT [PATH]` resolved to one socket address, and the request
//! encoded once, before the run.
use std::net::{SocketAddr, ToSocketAddrs};

/// A resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as the user wrote it (brackets kept for IPv6), for the Host header and output.
    pub host: String,
    pub port: u16,
    /// Origin-form request target: path plus query, never empty.
    pub path: String,
    pub addr: SocketAddr,
    /// HTTPS (an https:// URL, or `--tls`).
    pub tls: bool,
}

impl Target {
    /// Parses `http://host[:port][/path]` or `https://...`; a bare `host:port/path` is
    /// accepted too (HTTP).
    pub fn from_url(url: &str) -> Result<Target, String> {
        let (rest, tls) = if let Some(rest) = strip_prefix_ci(url, "http://") {
            (rest, false)
        } else if let Some(rest) = strip_prefix_ci(url, "https://") {
            (rest, true)
        } else if url.contains("://") {
            return Err(format!(
                "{url}: only http:// and https:// URLs are supported"
            ));
        } else {
            (url, false)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = split_authority(authority)?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let mut target = Target::new(host, port, &path)?;
        target.tls = tls;
        Ok(target)
    }

    /// From separate host, port and path (the seed's `HOST PORT` form).
    pub fn new(host: &str, port: u16, path: &str) -> Result<Target, String> {
        if host.is_empty() {
            return Err("empty host".into());
        }
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "{path:?}: the path must start with / and contain no spaces or control characters"
            ));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let host = if bare.contains(':') {
            format!("[{bare}]")
        } else {
            bare.to_string()
        };
        Ok(Target {
            host,
            port,
            path: path.to_string(),
            addr,
            tls: false,
        })
    }

    /// The Host header value: the port is left out when it is the scheme's default (RFC 9110
    /// §7.2).
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port, self.tls)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// `host` or `host:port` for a Host header (the port left out when it is 80 for HTTP, 443 for
/// HTTPS).
pub fn host_header(host: &str, port: u16, tls: bool) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let host = if bare.contains(':') {
        format!("[{bare}]")
    } else {
        bare.to_string()
    };
    if port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn split_authority(a: &str) -> Result<(&str, Option<u16>), String> {
    if a.contains('@') {
        return Err("user information in the URL is not supported".into());
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(end) = a.strip_prefix('[').and_then(|r| r.find(']')) {
        let host = &a[..end + 2];
        match &a[end + 2..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("garbage after ]")?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse().map_err(|_| format!("bad port {p:?}"))?),
    };
    Ok((host, port))
}

/// Encodes the request `load` repeats. Host comes first unless the user gave one; a
/// `User-Agent` is added unless given (some servers treat its absence as a bot);
/// `Connection: close` when every request uses a new connection, so the server closes
/// first and the client does not collect TIME_WAIT sockets.
pub fn encode_request(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = format!("{method} {} HTTP/1.1\r\n", target.path);
    if !has("host") {
        out += &format!("Host: {}\r\n", target.host_header());
    }
    if !has("user-agent") {
        out += concat!(
            "User-Agent: archserve-load/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        );
    }
    for (name, value) in headers {
        out += &format!("{name}: {value}\r\n");
    }
    if close && !has("connection") {
        out += "Connection: close\r\n";
    }
    out += "\r\n";
    out.into_bytes()
}

/// Parses a `-H "Name: value"` argument.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a header is \"Name: value\""))?;
    let value = value.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(format!("the value of {name} contains control characters"));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::from_url("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/a/b?x=1")
        );
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let t = Target::from_url("HTTP://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert_eq!(t.host_header(), "localhost");
        let t = Target::from_url("127.0.0.1:9?q").unwrap();
        assert_eq!(t.path, "/?q");
        let t = Target::from_url("http://[::1]:81/").unwrap();
        assert_eq!(t.host, "[::1]");
        assert_eq!(t.host_header(), "[::1]:81");
        assert_eq!(t.url(), "http://[::1]:81/");
        let t = Target::from_url("HTTPS://localhost/x").unwrap();
        assert_eq!(
            (t.port, t.tls, t.host_header()),
            (443, true, "localhost".into())
        );
        let t = Target::from_url("https://127.0.0.1:8443").unwrap();
        assert_eq!(t.url(), "https://127.0.0.1:8443/");
        assert_eq!(t.host_header(), "127.0.0.1:8443");
        assert!(!Target::from_url("http://127.0.0.1:443/").unwrap().tls);
        for bad in [
            "ftp://x/",
            "http://u@x/",
            "http://x:port/",
            "http://x:70000/",
            "http://:80/",
        ] {
            assert!(Target::from_url(bad).is_err(), "{bad}");
        }
        assert!(Target::new("127.0.0.1", 80, "no-slash").is_err());
        assert!(Target::new("127.0.0.1", 80, "/a b").is_err());
    }

    #[test]
    fn request_encoding() {
        let t = Target::new("127.0.0.1", 2000, "/io").unwrap();
        let r = encode_request("GET", &t, &[], false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /io HTTP/1.1\r\nHost: 127.0.0.1:2000\r\nUser-Agent: "));
        assert!(text.ends_with("\r\n\r\n") && !text.contains("Connection"));
        let h = vec![
            parse_header("host: example").unwrap(),
            parse_header("X-A:  b ").unwrap(),
        ];
        let text = String::from_utf8(encode_request("HEAD", &t, &h, true)).unwrap();
        assert!(text.starts_with("HEAD /io HTTP/1.1\r\nUser-Agent"));
        assert!(text.contains("host: example\r\nX-A: b\r\nConnection: close\r\n\r\n"));
        let mut req = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut req);
        assert!(parsed.parse(text.as_bytes()).unwrap().is_complete());
    }

    #[test]
    fn bad_headers() {
        for bad in ["novalue", ": x", "a b: c", "x: a\rb"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
