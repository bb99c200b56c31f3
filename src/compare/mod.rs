//! `archserve compare`: starts each architecture (and, on request, nginx or lighttpd), sweeps
//! the seed's workloads and a few more, and writes the comparison.
//!
//! - [`plan`]: the command line and the sweep it expands to (servers, points, repeats, estimate).
//! - [`run`]: the servers as child processes (start, readiness, stop, Ctrl-C) and the sweep.
//! - [`measure`]: the workloads: cpu and io (the seed's), static (keep-alive), idle (memory).
//! - [`baseline`]: nginx and lighttpd configurations; [`machine`]: facts for the setup section.
//! - [`report`]: raw.csv, summary.json, report.md; [`plot`]: the charts (SVG and PNG).
pub mod baseline;
pub mod machine;
pub mod measure;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;

pub use plan::CompareArgs;
pub use run::run;
