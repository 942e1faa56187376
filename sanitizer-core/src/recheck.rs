//! Re-checking bytes that claim to be sanitized output, without trusting who made them.
//!
//! The daemon runs sanitizers in worker processes that may have been compromised by the input
//! they were handling. Their output comes back as plain bytes; these functions are the only way
//! to turn such bytes into [`SafeBytes`]: each checks the output invariants with code paths
//! independent of the writers (re-parse, structure walk), and refuses with
//! [`SanitizeError::Recheck`] on any doubt.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::error::SanitizeError;
use crate::pipeline::SafeBytes;
use crate::policy::Policy;
use crate::report::Kind;
use crate::sniff;
use crate::unicode::is_invisible_control;

/// Deepest message/rfc822 nesting the re-check follows.
const MAX_NESTED: u32 = 16;

/// Content types a sanitized mail may carry.
const MAIL_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "multipart/mixed",
    "multipart/alternative",
    "message/rfc822",
    "image/png",
    "image/jpeg",
    "application/pdf",
    "application/zip",
    "application/x-tar",
    "application/gzip",
];

fn fail(msg: impl Into<String>) -> SanitizeError {
    SanitizeError::Recheck(msg.into())
}

/// Checks the line discipline of a message: CRLF only, no bare CR or LF, no line over 998
/// octets (excluding CRLF).
pub fn check_lines(bytes: &[u8]) -> Result<(), SanitizeError> {
    let mut line_len = 0usize;
    let mut prev_cr = false;
    for &b in bytes {
        match b {
            b'\r' => {
                if prev_cr {
                    return Err(fail("bare CR"));
                }
                prev_cr = true;
            }
            b'\n' => {
                if !prev_cr {
                    return Err(fail("bare LF"));
                }
                prev_cr = false;
                line_len = 0;
            }
            _ => {
                if prev_cr {
                    return Err(fail("bare CR"));
                }
                line_len += 1;
                if line_len > 998 {
                    return Err(fail("line longer than 998 octets"));
                }
            }
        }
    }
    if prev_cr {
        return Err(fail("bare CR at end"));
    }
    Ok(())
}

/// Re-checks a sanitized mail: line discipline, re-parse, only allowed content types (no HTML
/// anywhere), a report id header, and every attachment re-checked by its own kind.
pub fn verify_mail(bytes: Vec<u8>, policy: &Policy) -> Result<SafeBytes, SanitizeError> {
    check_mail(&bytes, policy, 0)?;
    Ok(SafeBytes::new(bytes))
}

fn check_mail(bytes: &[u8], policy: &Policy, depth: u32) -> Result<(), SanitizeError> {
    if depth > MAX_NESTED {
        return Err(fail("messages nested too deep"));
    }
    check_lines(bytes)?;
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| fail("output does not parse as a message"))?;
    if depth == 0 && msg.header_raw("X-Mugai-Report-Id").is_none() {
        return Err(fail("no X-Mugai-Report-Id header"));
    }
    for part in &msg.parts {
        let (ctype, csub) = part
            .content_type()
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        let full = format!("{ctype}/{csub}");
        let allowed = MAIL_TYPES.contains(&full.as_str())
            || full.starts_with("application/vnd.openxmlformats-officedocument.")
            || full.starts_with("application/vnd.oasis.opendocument.");
        if !allowed {
            return Err(fail(format!(
                "content type {full} is not allowed in output"
            )));
        }
        match &part.body {
            PartType::Html(_) => return Err(fail("HTML part in output")),
            PartType::Text(t) => {
                if t.chars().any(is_invisible_control) {
                    return Err(fail("bidi or zero-width control in a text part"));
                }
            }
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                check_file(
                    b,
                    sniff::kind_from_mime(&full).unwrap_or(Kind::Unknown),
                    policy,
                )?;
            }
            PartType::Message(m) => check_mail(m.raw_message(), policy, depth + 1)?,
            PartType::Multipart(_) => {}
        }
    }
    Ok(())
}

/// Re-checks a sanitized file that claims to be of kind `claimed`.
pub fn verify_file(
    bytes: Vec<u8>,
    claimed: Kind,
    policy: &Policy,
) -> Result<SafeBytes, SanitizeError> {
    check_file(&bytes, claimed, policy)?;
    Ok(SafeBytes::new(bytes))
}

fn check_file(bytes: &[u8], claimed: Kind, policy: &Policy) -> Result<(), SanitizeError> {
    let sniffed = sniff::sniff(bytes);
    if !sniff::compatible(claimed, sniffed) {
        return Err(fail(format!("output claims {claimed} but is {sniffed}")));
    }
    match sniffed {
        Kind::Mail => check_mail(bytes, policy, 1),
        Kind::Text | Kind::Csv => {
            let text = std::str::from_utf8(bytes).map_err(|_| fail("text output is not UTF-8"))?;
            if text.chars().any(is_invisible_control) {
                return Err(fail("bidi or zero-width control in text output"));
            }
            Ok(())
        }
        Kind::Image => {
            if bytes.starts_with(&[0x89, b'P', b'N', b'G']) || bytes.starts_with(&[0xFF, 0xD8]) {
                Ok(())
            } else {
                Err(fail("image output is neither PNG nor JPEG"))
            }
        }
        kind => match crate::formats::recheck(kind, bytes, policy) {
            Some(result) => result,
            None => Err(fail(format!("{kind} is never a sanitized output"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"From: a@example.jp\r\nX-Mugai-Report-Id: 1\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n";

    #[test]
    fn good_mail_passes() {
        assert!(verify_mail(GOOD.to_vec(), &Policy::default()).is_ok());
    }

    #[test]
    fn forged_outputs_fail() {
        let p = Policy::default();
        let html = b"From: a@example.jp\r\nX-Mugai-Report-Id: 1\r\nContent-Type: text/html\r\n\r\n<script>x</script>\r\n";
        assert!(verify_mail(html.to_vec(), &p).is_err());
        let bare_lf = b"From: a@example.jp\nX-Mugai-Report-Id: 1\n\nhello\n";
        assert!(verify_mail(bare_lf.to_vec(), &p).is_err());
        let no_id = b"From: a@example.jp\r\n\r\nhello\r\n";
        assert!(verify_mail(no_id.to_vec(), &p).is_err());
        let exe = b"From: a@example.jp\r\nX-Mugai-Report-Id: 1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n";
        assert!(verify_mail(exe.to_vec(), &p).is_err());
        let long = format!(
            "From: a@example.jp\r\nX-Mugai-Report-Id: 1\r\n\r\n{}\r\n",
            "a".repeat(1200)
        );
        assert!(verify_mail(long.into_bytes(), &p).is_err());
    }

    #[test]
    fn files_are_checked_by_kind() {
        let p = Policy::default();
        assert!(verify_file("見積書\n".as_bytes().to_vec(), Kind::Text, &p).is_ok());
        assert!(verify_file(b"MZ\x90\0".to_vec(), Kind::Pdf, &p).is_err());
        assert!(verify_file(b"<html><script>".to_vec(), Kind::Text, &p).is_err());
        assert!(verify_file("a\u{202E}b".as_bytes().to_vec(), Kind::Text, &p).is_err());
    }
}
