//! The process's open-file limit and how it is shared: an eighth for the open-file cache
//! (`site::open_files`), the rest, less 64, for connections (the default `--max-conns`).

/// Raises this process's soft limit on open descriptors to its hard limit, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do: a shell's usual soft limit, 1,024, would stop a
/// server near 1,000 connections when the hard limit allows far more. Called before the
/// workers are forked, so they inherit it.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => tracing::debug!("open-file limit raised from {soft} to {hard}"),
                Err(e) => tracing::debug!("open-file limit stays {soft}: {e}"),
            }
        }
    }
}

/// The soft open-file limit (1024 if it cannot be read).
pub fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// Descriptors the open-file cache may hold under an open-file limit of `nofile`: an eighth.
pub fn files_budget(nofile: u64) -> u64 {
    nofile / 8
}

/// The default connection cap (`--max-conns`): the open-file limit less what the open-file
/// cache may hold and 64 for listeners, the access log and the standard streams. So the cap,
/// which closes idle connections to make room, is reached before accept() fails with EMFILE,
/// which can only back off and leave new clients waiting in the backlog.
pub fn default_max_conns() -> usize {
    max_conns_for(nofile_limit())
}

/// At most the largest `--max-conns` takes (an unlimited descriptor limit is no reason to have
/// no cap).
fn max_conns_for(nofile: u64) -> usize {
    (nofile - files_budget(nofile))
        .saturating_sub(64)
        .clamp(1, 1_000_000) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_leaves_room_for_files_and_listeners() {
        assert_eq!(max_conns_for(1024), 832);
        assert_eq!(max_conns_for(20_000), 17_436);
        assert_eq!(max_conns_for(40), 1);
        assert_eq!(max_conns_for(u64::MAX), 1_000_000);
    }
}
