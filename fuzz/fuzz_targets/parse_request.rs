//! Fuzzes the request-head parser with properties, not just "no panic" (see
//! `tests/props/mod.rs`, shared with the property tests): `used <= len` and `<= max_head`, a
//! Complete head is stable when bytes are appended, every prefix is Partial or the same error
//! status, errors have documented statuses, and a pipelined stream is walked head by head.
//!
//! Input: 3 bytes choose the limits (defaults, or small ones so 414/431 edges are reachable),
//! the rest is the byte stream a client sent.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/props/mod.rs"]
mod props;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, stream @ ..] = data else {
        return;
    };
    let limits = props::limits_from(*a, *b, *c);
    props::check_stream(stream, &limits, 8);
});
