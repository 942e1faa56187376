//! Re-checking bytes that claim to be sanitized output, without trusting who made them.
//!
//! The daemon runs sanitizers in worker processes that may have been compromised by the input
//! they were handling. Their output comes back as plain bytes; these functions are the only way
//! to turn such bytes into [`SafeBytes`]: each checks the output invariants with code paths
//! independent of the writers (re-parse, structure walk), and refuses with
//! [`SanitizeError::Recheck`] on any doubt.

use std::io::{Cursor, Read};

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
                let claimed = sniff::kind_from_mime(&full).unwrap_or(Kind::Unknown);
                check_file(b, claimed, policy, depth + 1)?;
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
    check_file(&bytes, claimed, policy, 0)?;
    Ok(SafeBytes::new(bytes))
}

fn check_file(
    bytes: &[u8],
    claimed: Kind,
    policy: &Policy,
    depth: u32,
) -> Result<(), SanitizeError> {
    if depth > MAX_NESTED {
        return Err(fail("output nested too deep"));
    }
    let sniffed = sniff::sniff(bytes);
    if !sniff::compatible(claimed, sniffed) {
        return Err(fail(format!("output claims {claimed} but is {sniffed}")));
    }
    match sniffed {
        Kind::Mail => check_mail(bytes, policy, depth.saturating_add(1)),
        Kind::Zip => check_zip(bytes, policy, depth),
        Kind::Tar => check_tar(bytes, policy, depth),
        Kind::Gzip => {
            let inner = read_limited(flate2::read::MultiGzDecoder::new(bytes), policy)?;
            check_file(
                &inner,
                sniff::sniff(&inner),
                policy,
                depth.saturating_add(1),
            )
        }
        Kind::Text | Kind::Csv => {
            let text = std::str::from_utf8(bytes).map_err(|_| fail("text output is not UTF-8"))?;
            // A leading BOM is ours (CSV for Excel); anywhere else it is a hidden character.
            let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
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

/// Reads at most the policy's decoded-bytes limit; more is a failure.
fn read_limited<R: Read>(r: R, policy: &Policy) -> Result<Vec<u8>, SanitizeError> {
    let cap = policy.limits.max_decoded_bytes;
    let mut out = Vec::new();
    r.take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| fail(format!("unreadable compressed output: {e}")))?;
    if out.len() as u64 > cap {
        return Err(fail(
            "compressed output expands past the decoded-bytes limit",
        ));
    }
    Ok(out)
}

/// A member name we would have written: relative, no traversal, no backslash or controls.
fn check_member_name(name: &str) -> Result<(), SanitizeError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.split('/').any(|c| c == ".." || c == ".")
        || name
            .chars()
            .any(|c| c.is_control() || is_invisible_control(c));
    if bad {
        return Err(fail(format!(
            "archive member name {name:?} is not normalised"
        )));
    }
    Ok(())
}

/// Every member of a ZIP output: plain files with normalised names, not encrypted, each one a
/// sanitized output itself.
fn check_zip(bytes: &[u8], policy: &Policy, depth: u32) -> Result<(), SanitizeError> {
    let mut ar = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fail(format!("zip output does not open: {e}")))?;
    if ar.len() > policy.limits.max_parts as usize {
        return Err(fail("zip output has too many members"));
    }
    for i in 0..ar.len() {
        let f = ar
            .by_index(i)
            .map_err(|e| fail(format!("zip member {i}: {e}")))?;
        let name = f
            .name()
            .map_err(|e| fail(format!("zip member {i}: {e}")))?
            .into_owned();
        check_member_name(&name)?;
        if f.is_dir() {
            continue;
        }
        if f.encrypted() || f.is_symlink() {
            return Err(fail("zip output has an encrypted or link member"));
        }
        if f.unix_mode().is_some_and(|m| m & 0o7000 != 0) {
            return Err(fail("zip output member with setuid/setgid/sticky bits"));
        }
        let data = read_limited(f, policy)?;
        check_file(&data, sniff::sniff(&data), policy, depth.saturating_add(1))
            .map_err(|e| fail(format!("zip member {name}: {e}")))?;
    }
    Ok(())
}

/// Every member of a TAR output: regular files only, normalised names, each a sanitized output.
fn check_tar(bytes: &[u8], policy: &Policy, depth: u32) -> Result<(), SanitizeError> {
    let mut ar = tar::Archive::new(bytes);
    let entries = ar
        .entries()
        .map_err(|e| fail(format!("tar output does not open: {e}")))?;
    for (n, entry) in entries.enumerate() {
        if n >= policy.limits.max_parts as usize {
            return Err(fail("tar output has too many members"));
        }
        let entry = entry.map_err(|e| fail(format!("tar member: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(fail("tar output has a member that is not a regular file"));
        }
        if entry.header().mode().is_ok_and(|m| m & 0o7000 != 0) {
            return Err(fail("tar output member with setuid/setgid/sticky bits"));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_member_name(&name)?;
        let data = read_limited(entry, policy)?;
        check_file(&data, sniff::sniff(&data), policy, depth.saturating_add(1))
            .map_err(|e| fail(format!("tar member {name}: {e}")))?;
    }
    Ok(())
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

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn archives_are_walked_member_by_member() {
        let p = Policy::default();
        let good = zip_of(&[("a/見積書.txt", "見積書".as_bytes())]);
        assert!(verify_file(good, Kind::Zip, &p).is_ok());
        let exe = zip_of(&[("a.txt", b"MZ\x90\0")]);
        assert!(verify_file(exe, Kind::Zip, &p).is_err());
        let traversal = zip_of(&[("../a.txt", b"x")]);
        assert!(verify_file(traversal, Kind::Zip, &p).is_err());
        let nested_html = zip_of(&[("in.zip", &zip_of(&[("x.txt", b"<html><script>")]))]);
        assert!(verify_file(nested_html, Kind::Zip, &p).is_err());
    }
}
