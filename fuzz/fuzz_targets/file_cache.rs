//! Fuzzes the open-file cache's lookup/remember path with file changes as input: requests go
//! through a `Site` (so through the thread's cache) while files are rewritten in place with the
//! same or another length, truncated, renamed over, deleted and re-created, swapped with
//! directories, replaced by symlinks that lead inside and out of the root, chmod'ed, moved out
//! of the root and renamed away and back. Every answer must be the file as it is now (bytes,
//! length, validators), a redirect for a directory, or an error where no file is: never stale
//! bytes, never a file outside the root. Properties live in `tests/props/mod.rs` (`Churn`),
//! shared with the property tests.
//!
//! Input: pairs of bytes, each one operation (`ChurnOp::from_bytes`), on a fresh fixture.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/props/mod.rs"]
mod props;

fuzz_target!(|data: &[u8]| {
    let ops: Vec<props::ChurnOp> = data
        .chunks_exact(2)
        .take(64)
        .map(|p| props::ChurnOp::from_bytes(p[0], p[1]))
        .collect();
    props::check_churn(&ops);
});
