//! The conformance suite of `archserve serve`: one module per topic, every test run against every registered architecture.
//!
//! Each test starts the built binary (`--port 0`, a fresh temporary root) for every entry of
//! `archserve::arch::REGISTRY` and checks the behaviour contract with raw bytes (plus curl and
//! ureq in `clients`). Failure messages name the architecture and quote the request.
//! `ARCHSERVE_TEST_ARCH=NAME` narrows a run to one architecture.

mod arch;
mod fixture;
mod harness;
pub(crate) mod tls;

mod cgi;
mod churn;
mod clients;
mod conditional;
mod files;
mod framing;
mod lifecycle;
mod limits;
mod listen;
mod methods;
mod paths;
mod range;
mod reliability;
mod site_features;
mod workloads;
