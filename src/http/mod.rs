//! The sans-IO HTTP/1.1 core: bytes in, a validated [`Request`] out; a status and headers in, bytes out.
//!
//! Nothing here touches sockets, files, clocks or tokio: the connection loops in `conn/` own the
//! I/O and pass the time in, so every rule below is tested by feeding buffers (whole, one byte at a
//! time, and followed by a pipelined request).
pub mod conn;
pub mod date;
pub mod error;
pub mod request;
pub mod response;

pub use error::ParseError;
pub use request::{parse, Limits, Method, Parsed, Request, Version};
