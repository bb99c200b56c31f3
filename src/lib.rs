//! archserve: an HTTP/1.1 static-file server whose concurrency architecture is chosen at
//! start-up, and the tools to measure how the architectures compare.
//!
//! # Layout
//! - [`http`]: the sans-IO HTTP/1.1 core: parse a head with limits, encode a response head,
//!   and the connection state machine (`http::conn`) that owns every rule about a connection.
//! - [`site`]: what to answer: safe path resolution, files, conditional and range requests,
//!   precompressed variants, header rules, the `/cpu` and `/io` workloads, a per-thread cache of
//!   open files re-checked on every use; CGI scripts (`site::cgi`: which request runs what,
//!   its meta-variables, its output checked and framed).
//! - [`conn`]: the executors, one per I/O style (blocking; evented; uring), which carry out the state
//!   machine's steps, and the accept layer (accept loops, connection cap, back-off); CGI's
//!   pipes (`conn::cgi*`) each executor's way.
//! - [`arch`]: the architectures (who runs the loops) and their registry.
//! - [`listener`], [`shutdown`], [`config`], [`cli`]: binding, signals, validated settings, flags;
//!   [`config_file`]: `serve --config FILE`, a TOML file of the same flags.
//! - [`redirect`]: `--redirect-http`, the plain-HTTP port that sends clients to HTTPS.
//! - [`tls`]: the HTTPS configuration (certificate, key, rustls settings) all workers share.
//! - [`descriptors`]: the open-file limit, shared between the file cache and connections.
//! - [`upgrade`]: replacing the running binary on SIGUSR2 without refusing a connection, and
//!   socket activation.
//! - [`access_log`]: the Combined Log Format access log, buffered per worker thread.
//! - [`client`]: `send` (raw client) and `load` (load generator).
//! - [`compare`]: `compare`: every architecture under the seed's workloads and more; CSV, JSON,
//!   Markdown report and charts.
pub mod access_log;
pub mod arch;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod config_file;
pub mod conn;
pub mod descriptors;
pub mod http;
pub mod listener;
pub mod redirect;
pub mod shutdown;
pub mod site;
pub mod tls;
pub mod upgrade;
