//! Fuzzes the Range header parser: ranges within `0..len`, `first <= last`, at most
//! `MAX_RANGES`, and several ranges never add up to more than `len`.
//! Properties live in `tests/props/mod.rs`, shared with the property tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/props/mod.rs"]
mod props;

fuzz_target!(|data: &[u8]| {
    let [sel, l0, l1, l2, l3, l4, l5, l6, l7, header @ ..] = data else {
        return;
    };
    let raw = u64::from_le_bytes([*l0, *l1, *l2, *l3, *l4, *l5, *l6, *l7]);
    // Mostly small lengths (so the numbers in the header meet them), sometimes any u64.
    let len = match sel % 4 {
        0 => raw,
        1 => raw % 1024,
        2 => raw >> (raw % 64),
        _ => u64::from(*l0),
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    props::check_range(header, len);
});
