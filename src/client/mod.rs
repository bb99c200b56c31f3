//! Clients that talk to any HTTP/1.1 server: `send` (one raw request) and `load` (a load generator).
pub mod load;
pub mod send;
