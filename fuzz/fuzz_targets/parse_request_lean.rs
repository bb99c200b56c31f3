//! Fuzzes the request-head parser at its own speed: one `parse` per head of a pipelined stream,
//! checked only for what a single result must satisfy (documented error statuses, `used` within
//! the buffer and `max_head`, `Partial` only within `max_head`, a visible-ASCII target). The
//! thorough `parse_request` target re-parses every prefix and appended variants of each head,
//! which is stronger per input but about fifty times slower. Properties live in
//! `tests/props/mod.rs`, shared with the property tests.
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
    props::check_stream_once(stream, &limits, 8);
});
