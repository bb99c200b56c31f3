//! `archserve load`: the seed's test_my_server and a keep-alive load generator.
use clap::Args;

/// Generate load against a server.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
}

pub fn run(_args: LoadArgs) -> anyhow::Result<i32> {
    anyhow::bail!("load is not implemented yet")
}
