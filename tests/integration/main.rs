//! The integration tests: one test binary (as ripgrep's `tests/` is), one module per topic.
//!
//! `cargo test --release --test integration MODULE` runs one topic, e.g. `conformance::framing`
//! or `supervisor`. Tests run in parallel threads of this one process, so none changes
//! process-wide state (environment, working directory); each starts its own servers on port 0
//! with its own temporary root.

mod server;

mod client;
mod client_tls;
mod compare;
mod conformance;
mod properties;
mod reliability;
mod supervisor;
