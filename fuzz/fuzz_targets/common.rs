//! What every file-mode target checks, whatever the format (CONTRACT.md, "Outcomes"):
//! - the report describes the input, and no sanitizer panicked (`internal.error`);
//! - blocked exactly when there is no output;
//! - an output passes the parent's independent re-check (`recheck::verify_file`), as a worker's
//!   output must before it is delivered.

use sanitizer_core::{Policy, Verdict, recheck, sanitize_file, threats};

/// Sanitizes `data` as a file named `name` under `policy` and checks the invariants above.
pub fn check_file(data: &[u8], name: &str, policy: &Policy) {
    let out = sanitize_file(data, Some(name), policy);
    let report = &out.report;
    assert_eq!(report.input.size, data.len() as u64);
    assert!(
        !report.threats().contains(&threats::INTERNAL_ERROR),
        "a sanitizer panicked: {report:?}"
    );
    match out.output {
        None => assert_eq!(report.verdict, Verdict::Blocked),
        Some(file) => {
            assert_ne!(report.verdict, Verdict::Blocked);
            if let Err(e) = recheck::verify_file(file.bytes.into_vec(), file.kind, policy) {
                panic!("output of kind {} fails the re-check: {e}", file.kind);
            }
        }
    }
}

/// The default policy, or the `variant` policy (`pdf.mode = "clean"`, ...) when the first input
/// byte is odd, so that one corpus exercises both code paths.
#[allow(dead_code, reason = "each target includes this module; not all use every helper")]
pub fn policy_for(data: &[u8], variant: &str) -> Policy {
    match data.first() {
        Some(b) if b % 2 == 1 => Policy::from_toml(variant).unwrap_or_default(),
        _ => Policy::default(),
    }
}
