//! `archserve send`: one raw request, the exact bytes of the answer.
use clap::Args;

/// Send one request and print the exact bytes that come back.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The request, e.g. "GET / HTTP/1.1".
    pub request: String,
}

pub fn run(_args: SendArgs) -> anyhow::Result<i32> {
    anyhow::bail!("send is not implemented yet")
}
