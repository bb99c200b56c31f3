//! Content-Type from the file extension, with a charset for text.
use std::fmt;

/// A media type and whether to add `; charset=utf-8`. Displayed straight into the head, so no
/// String is built per response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType {
    pub essence: &'static str,
    pub utf8: bool,
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.essence)?;
        if self.utf8 {
            f.write_str("; charset=utf-8")?;
        }
        Ok(())
    }
}

impl crate::http::response::FieldValue for ContentType {
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.essence.as_bytes());
        if self.utf8 {
            out.extend_from_slice(b"; charset=utf-8");
        }
    }
}

/// The type of a file named `name` (unknown extensions: `application/octet-stream`, as nginx).
pub fn content_type(name: &str) -> ContentType {
    let essence = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let utf8 = essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    ContentType { essence, utf8 }
}

/// `text/plain; charset=utf-8`, for the workload endpoints.
pub const TEXT_PLAIN: ContentType = ContentType {
    essence: "text/plain",
    utf8: true,
};

/// `text/html; charset=utf-8`, for error pages.
pub const TEXT_HTML: ContentType = ContentType {
    essence: "text/html",
    utf8: true,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(
            content_type("a/index.html").to_string(),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type("x.css").to_string(), "text/css; charset=utf-8");
        assert_eq!(content_type("x.png").to_string(), "image/png");
        assert_eq!(
            content_type("x.svg").to_string(),
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(
            content_type("x.unknownext").to_string(),
            "application/octet-stream"
        );
        assert_eq!(
            content_type("noext").to_string(),
            "application/octet-stream"
        );
    }
}
