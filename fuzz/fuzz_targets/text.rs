//! Fuzz target `text`: Text-like input: charset detection, CSV, HTML, and text that opens as something else (Office XML as text: Flat OPC, Word/Excel 2003 XML; SYLK, shell and query files).
//! Invariants: see `common.rs` (no panic, blocked iff no output, every output re-checked).
#![no_main]

#[path = "common.rs"]
mod common;

use common::check_file;
use libfuzzer_sys::fuzz_target;
use sanitizer_core::Policy;

fuzz_target!(|data: &[u8]| {
    check_file(data, "input.txt", &Policy::default());
});
