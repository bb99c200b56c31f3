//! `archserve compare`: starts each architecture (and nginx, nginx with deferred accept and
//! lighttpd, where installed), runs every workload the project publishes, in interleaved
//! rounds, and writes a self-describing run directory.
//!
//! - [`args`]: the command line and its presets; [`plan`]: the sweep it expands to (servers,
//!   workloads, points, rounds, estimate).
//! - [`run`]: the run (rounds, progress, Ctrl-C, what is written at the end); [`server`]: a
//!   server as a child process (start, readiness, stop); [`scratch`]: the document root served.
//! - [`measure`]: the workloads; [`syscalls`] and [`loadgen`]: the two that drive other tools;
//!   [`upgrade`]: the one that replaces the server under load; [`tls`]: the one over HTTPS;
//!   [`procfs`]: a server's processes, memory and CPU time; [`reliability`]: `archserve
//!   reliability`, the reliability scenarios and the soak on the same servers.
//! - [`baseline`]: the only nginx and lighttpd configurations; [`machine`]: the machine,
//!   versions, commit and command.
//! - [`report`]: raw.csv and summary.json; [`tables`]: the sections and tables of the reports;
//!   [`render`]: report.md and report.html; [`plot`]: the charts (SVG and PNG); [`browser`]:
//!   headless Chromium (the report's screenshot); [`docs`]: the generated tables in docs/.
pub mod args;
pub mod baseline;
pub mod browser;
pub mod docs;
pub mod loadgen;
pub mod machine;
pub mod measure;
pub mod plan;
pub mod plot;
pub mod procfs;
pub mod reliability;
pub mod render;
pub mod report;
pub mod run;
pub mod scratch;
pub mod server;
pub mod syscalls;
pub mod tables;
pub mod tls;
pub mod upgrade;

pub use args::CompareArgs;
pub use run::run;
