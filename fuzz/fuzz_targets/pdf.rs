//! Fuzz target `pdf`: PDF in rasterize and clean mode (lopdf, hayro, the PDF writer).
//! Invariants: see `common.rs` (no panic, blocked iff no output, every output re-checked).
#![no_main]

#[path = "common.rs"]
mod common;

use common::{check_file, policy_for};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_file(data, "input.pdf", &policy_for(data, "[pdf]\nmode = \"clean\"\n"));
});
