//! Fuzz target `ole2`: OLE2 compound files: legacy Office inspection (root type, BIFF records, FIB, PowerPoint records), .msg, sniffing. No converter is lent, so documents end as removed, after inspection.
//! Invariants: see `common.rs` (no panic, blocked iff no output, every output re-checked).
#![no_main]

#[path = "common.rs"]
mod common;

use common::check_file;
use libfuzzer_sys::fuzz_target;
use sanitizer_core::Policy;

fuzz_target!(|data: &[u8]| {
    check_file(data, "input.xls", &Policy::default());
});
