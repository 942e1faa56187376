//! Fuzz target `mail`: any bytes in, a safe message out, never a panic.
//!
//! Invariants checked on every input (CONTRACT.md, "Mail output shape"; RFC 5322):
//! - a mail is never blocked, and the report describes the input;
//! - the output uses canonical CRLF only (no bare CR or LF) and no line exceeds 998 octets;
//! - the output parses as a message and carries exactly our `X-Mugai-Report-Id`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanitizer_core::{Policy, Verdict, sanitize_mail};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    let outcome = sanitize_mail(data, &policy);
    let report = &outcome.report;
    assert_ne!(report.verdict, Verdict::Blocked, "a mail is never blocked");
    assert_eq!(report.input.size, data.len() as u64);

    let out = outcome.message.as_slice();
    assert!(!out.is_empty(), "empty output message");
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}"),
            0 => panic!("NUL in output at {i}"),
            _ => {}
        }
    }
    for line in out.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }

    let parsed = mail_parser::MessageParser::default()
        .parse(out)
        .expect("output does not parse as a message");
    let ids: Vec<_> = parsed
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("X-Mugai-Report-Id"))
        .collect();
    assert_eq!(ids.len(), 1, "want exactly one X-Mugai-Report-Id");
    let id = ids[0].value().as_text().unwrap_or_default().trim();
    assert_eq!(id, report.id, "X-Mugai-Report-Id is not the report id");
});
