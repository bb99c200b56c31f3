//! Why a request head was refused, and the status code each reason maps to.

/// A request head the server refuses. Every variant knows its status code, and every one of them
/// ends the connection: after a framing error the next request's start cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Malformed syntax or a forbidden construct (obs-fold, bare CR, CL+TE, bad Host ...): 400.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request line is longer than the configured limit: 414.
    #[error("request line too long")]
    UriTooLong,
    /// The head is larger than the size limit, or has more fields than the count limit: 431.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// `Transfer-Encoding: chunked` on a request: we need no request bodies, and reading chunked
    /// ones just to discard them is attack surface for nothing (RFC 9112 §6.3 allows 411).
    #[error("chunked request bodies are not accepted")]
    LengthRequired,
    /// A transfer coding we do not know: 501.
    #[error("transfer coding not implemented")]
    NotImplemented,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1: 505.
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

impl ParseError {
    /// The status code to answer with before closing.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadRequest(_) => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge => 431,
            ParseError::LengthRequired => 411,
            ParseError::NotImplemented => 501,
            ParseError::VersionNotSupported => 505,
        }
    }
}
