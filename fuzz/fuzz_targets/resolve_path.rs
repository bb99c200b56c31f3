//! Fuzzes request-target resolution: `split_target`, `normalize` (no empty, `.` or `..`
//! segments, no leading '/', no '\\', NUL or control characters, no dotfiles, decoded exactly
//! once) and `Root::open` on a document root full of symlinks that lead out, which must never
//! open a file whose real path is outside the root (checked through /proc/self/fd).
//! Properties live in `tests/props/mod.rs`, shared with the property tests.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/props/mod.rs"]
mod props;

/// Created once per process, on first use; left in the temp directory when the fuzzer exits.
static FIXTURE: OnceLock<props::Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(|| props::Fixture::new().expect("create fixture root"));
    // Any string, not only the printable ASCII the parser lets through: normalize and open are
    // public and must hold on their own.
    let target = String::from_utf8_lossy(data);
    props::check_target(fx, &target);
});
