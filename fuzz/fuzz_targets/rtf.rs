//! Fuzz target `rtf`: RTF converted to text (groups, control words, objects).
//! Invariants: see `common.rs` (no panic, blocked iff no output, every output re-checked).
#![no_main]

#[path = "common.rs"]
mod common;

use common::check_file;
use libfuzzer_sys::fuzz_target;
use sanitizer_core::Policy;

fuzz_target!(|data: &[u8]| {
    check_file(data, "input.rtf", &Policy::default());
});
