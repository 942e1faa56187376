//! Outlook `.msg` (an OLE2/CFB compound file, [MS-OXMSG]): the body and the attachments are
//! taken out, the attachments sanitized as parts of their own, and the result delivered as a
//! ZIP (see `super::archive::outlook` for the output shape).
//!
//! The compound file is opened with the `cfb` crate over the input bytes (its chains are bounded
//! by the input; it rejects directory loops). Streams are read through [`read_capped`], so their
//! declared lengths never decide an allocation and every byte counts against the decoded-bytes
//! budget. Strings are `…001F` (UTF-16LE) or `…001E` (8-bit, in the code page from
//! PR_MESSAGE_CODEPAGE / PR_INTERNET_CPID, Shift_JIS when none is given and the bytes are not
//! UTF-8). An embedded message (`__substg1.0_3701000D` storage) is copied into a compound file of
//! its own and sent back through the pipeline, so nesting is charged to the depth limit.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use cfb::CompoundFile;

use super::archive::outlook::{self, Attachment, MsgText, OutlookMessage};
use crate::error::SanitizeError;
use crate::limits::{Budget, LimitKind, read_capped};
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};

/// Most entries (streams and storages) copied out of one embedded message.
const MAX_EMBEDDED_ENTRIES: usize = 10_000;

/// Unpacks Outlook .msg files into a ZIP of the body and sanitized attachments.
#[derive(Debug, Clone, Copy)]
pub struct MsgSanitizer;

impl FormatSanitizer for MsgSanitizer {
    fn name(&self) -> &'static str {
        "msg"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let mut cf = CompoundFile::open(Cursor::new(input)).map_err(malformed)?;
        let msg = parse(&mut cf, cx.budget())?;
        outlook::rebuild(msg, "Outlook message (.msg)", cx)
    }
}

fn malformed(e: std::io::Error) -> SanitizeError {
    SanitizeError::Malformed(format!("MSG: {e}"))
}

type Cfb<'a> = CompoundFile<Cursor<&'a [u8]>>;

/// Reads a stream if it exists.
fn stream(
    cf: &mut Cfb<'_>,
    path: &Path,
    budget: &mut Budget,
) -> Result<Option<Vec<u8>>, SanitizeError> {
    if !cf.is_stream(path) {
        return Ok(None);
    }
    let s = cf.open_stream(path).map_err(malformed)?;
    match read_capped(s, budget) {
        Ok(v) => Ok(Some(v)),
        Err(e @ SanitizeError::Limit { .. }) => Err(e),
        Err(e) => Err(SanitizeError::Malformed(format!("MSG stream: {e}"))),
    }
}

/// A string property: the Unicode stream if present, else the 8-bit one.
fn string_prop(
    cf: &mut Cfb<'_>,
    base: &Path,
    id: &str,
    budget: &mut Budget,
) -> Result<Option<MsgText>, SanitizeError> {
    if let Some(b) = stream(cf, &base.join(format!("__substg1.0_{id}001F")), budget)? {
        return Ok(Some(MsgText::Utf16(b)));
    }
    Ok(stream(cf, &base.join(format!("__substg1.0_{id}001E")), budget)?.map(MsgText::Bytes))
}

/// The message code page from the fixed-size property stream, if given.
fn codepage(props: &[u8]) -> Option<u32> {
    // Header: 32 bytes for a top-level message, 24 for an embedded one; then 16-byte entries.
    let header = if props.len().checked_sub(32)? % 16 == 0 {
        32
    } else {
        24
    };
    let mut found = None;
    for e in props.get(header..)?.chunks_exact(16) {
        let tag = u32::from_le_bytes(e.get(..4)?.try_into().ok()?);
        let value = u32::from_le_bytes(e.get(8..12)?.try_into().ok()?);
        match tag {
            0x3FFD_0003 => return Some(value),
            0x3FDE_0003 => found = Some(value),
            _ => {}
        }
    }
    found
}

fn parse(cf: &mut Cfb<'_>, budget: &mut Budget) -> Result<OutlookMessage, SanitizeError> {
    let root = PathBuf::from("/");
    let cp = stream(cf, &root.join("__properties_version1.0"), budget)?
        .as_deref()
        .and_then(codepage);
    let subject = string_prop(cf, &root, "0037", budget)?;
    let body = string_prop(cf, &root, "1000", budget)?;
    let html = match stream(cf, &root.join("__substg1.0_10130102"), budget)? {
        Some(b) => Some(MsgText::Bytes(b)),
        None => string_prop(cf, &root, "1013", budget)?,
    };
    let rtf = stream(cf, &root.join("__substg1.0_10090102"), budget)?;

    let attach_dirs: Vec<PathBuf> = cf
        .read_root_storage()
        .filter(|e| e.is_storage() && e.name().starts_with("__attach_version1.0_#"))
        .map(|e| e.path().to_path_buf())
        .collect();
    let mut attachments = Vec::new();
    for dir in attach_dirs {
        budget.check_deadline()?;
        let mut name = None;
        for id in ["3707", "3704", "3001"] {
            if let Some(t) = string_prop(cf, &dir, id, budget)? {
                let n = t.decode(cp);
                if !n.trim().is_empty() {
                    name = Some(n);
                    break;
                }
            }
        }
        let data = match stream(cf, &dir.join("__substg1.0_37010102"), budget)? {
            Some(d) => Some(d),
            None => {
                let sub = dir.join("__substg1.0_3701000D");
                if cf.is_storage(&sub) {
                    if let Some(n) = &mut name
                        && !n.to_ascii_lowercase().ends_with(".msg")
                    {
                        n.push_str(".msg");
                    }
                    Some(copy_storage(cf, &sub, budget)?)
                } else {
                    None
                }
            }
        };
        if let Some(data) = data {
            attachments.push(Attachment { name, data });
        }
    }
    Ok(OutlookMessage {
        subject: subject.map(|s| s.decode(cp)),
        body_text: body.map(|b| b.decode(cp)),
        body_html: html.map(|h| h.decode(cp)),
        body_rtf_compressed: rtf,
        attachments,
    })
}

/// Copies the storage at `sub` (an embedded message) into a new compound file of its own.
fn copy_storage(
    cf: &mut Cfb<'_>,
    sub: &Path,
    budget: &mut Budget,
) -> Result<Vec<u8>, SanitizeError> {
    let entries: Vec<(PathBuf, bool)> = cf
        .walk_storage(sub)
        .map_err(malformed)?
        .take(MAX_EMBEDDED_ENTRIES.saturating_add(1))
        .map(|e| (e.path().to_path_buf(), e.is_stream()))
        .collect();
    if entries.len() > MAX_EMBEDDED_ENTRIES {
        return Err(SanitizeError::limit(
            LimitKind::Parts,
            "embedded message with too many entries",
        ));
    }
    let fail = |e: std::io::Error| SanitizeError::Internal(format!("copying embedded MSG: {e}"));
    let mut out = CompoundFile::create(Cursor::new(Vec::new())).map_err(fail)?;
    for (path, is_stream) in entries {
        let Ok(rel) = path.strip_prefix(sub) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = Path::new("/").join(rel);
        if is_stream {
            let data = stream(cf, &path, budget)?.unwrap_or_default();
            let mut s = out.create_stream(&target).map_err(fail)?;
            s.write_all(&data).map_err(fail)?;
        } else {
            out.create_storage(&target).map_err(fail)?;
        }
    }
    out.flush().map_err(fail)?;
    let mut bytes = Vec::new();
    let mut inner = out.into_inner();
    inner.set_position(0);
    inner.read_to_end(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::zip::tests::list;
    use crate::policy::Policy;
    use crate::report::Kind;
    use crate::sanitize_file;
    use crate::threats;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn put(cf: &mut CompoundFile<Cursor<Vec<u8>>>, path: &str, data: &[u8]) {
        cf.create_stream(path).unwrap().write_all(data).unwrap();
    }

    /// Builds a .msg: Shift_JIS 8-bit subject and body (code page 932), a text attachment, an
    /// executable attachment, and optionally an embedded message.
    fn build(embedded: Option<&[u8]>) -> Vec<u8> {
        let mut cf = CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        let mut props = vec![0u8; 32];
        props.extend_from_slice(&0x3FFD_0003u32.to_le_bytes());
        props.extend_from_slice(&[0; 4]);
        props.extend_from_slice(&932u32.to_le_bytes());
        props.extend_from_slice(&[0; 4]);
        put(&mut cf, "/__properties_version1.0", &props);
        let (subject, _, _) = encoding_rs::SHIFT_JIS.encode("会議の件");
        put(&mut cf, "/__substg1.0_0037001E", &subject);
        let (body, _, _) = encoding_rs::SHIFT_JIS
            .encode("各位\r\n資料を添付します。①㈱\r\nhttp://evil.example/login");
        put(&mut cf, "/__substg1.0_1000001E", &body);
        cf.create_storage("/__attach_version1.0_#00000000").unwrap();
        put(
            &mut cf,
            "/__attach_version1.0_#00000000/__substg1.0_3707001F",
            &utf16("議事録.html"),
        );
        put(
            &mut cf,
            "/__attach_version1.0_#00000000/__substg1.0_37010102",
            b"<p>minutes</p><script>evil()</script>",
        );
        cf.create_storage("/__attach_version1.0_#00000001").unwrap();
        put(
            &mut cf,
            "/__attach_version1.0_#00000001/__substg1.0_3707001F",
            &utf16("請求書.pdf.exe"),
        );
        put(
            &mut cf,
            "/__attach_version1.0_#00000001/__substg1.0_37010102",
            b"MZ\x90\0",
        );
        if let Some(inner) = embedded {
            // Copy the inner message's streams under an embedded-message storage.
            let base = "/__attach_version1.0_#00000002";
            cf.create_storage(base).unwrap();
            put(
                &mut cf,
                &format!("{base}/__substg1.0_3001001F"),
                &utf16("転送"),
            );
            let sub = format!("{base}/__substg1.0_3701000D");
            cf.create_storage(&sub).unwrap();
            let mut icf = CompoundFile::open(Cursor::new(inner)).unwrap();
            let entries: Vec<(PathBuf, bool)> = icf
                .walk()
                .map(|e| (e.path().to_path_buf(), e.is_stream()))
                .collect();
            for (p, is_stream) in entries {
                if p == Path::new("/") {
                    continue;
                }
                let target = format!("{sub}{}", p.display());
                if is_stream {
                    let mut v = Vec::new();
                    icf.open_stream(&p).unwrap().read_to_end(&mut v).unwrap();
                    put(&mut cf, &target, &v);
                } else {
                    cf.create_storage(&target).unwrap();
                }
            }
        }
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    }

    #[test]
    fn body_and_attachments_come_out_as_zip() {
        let msg = build(None);
        assert_eq!(crate::sniff::sniff(&msg), Kind::Msg);
        let out = sanitize_file(&msg, Some("会議.msg"), &Policy::default());
        let file = out.output.expect("kept");
        assert_eq!(file.name, "会議.zip");
        let members = list(file.bytes.as_slice());
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["body.txt", "議事録.txt"]);
        let body = String::from_utf8(members[0].1.clone()).unwrap();
        assert!(body.starts_with("Subject: 会議の件\r\n"), "{body}");
        assert!(body.contains("資料を添付します。①㈱"), "{body}");
        assert!(body.contains("hxxp://evil[.]example/login"), "{body}");
        let t = out.report.threats();
        assert!(t.contains(&threats::FILENAME_EXECUTABLE));
        assert!(t.contains(&threats::FILENAME_DOUBLE_EXTENSION));
    }

    #[test]
    fn embedded_messages_recurse() {
        let inner = build(None);
        let outer = build(Some(&inner));
        let out = sanitize_file(&outer, Some("fw.msg"), &Policy::default());
        let file = out.output.expect("kept");
        let members = list(file.bytes.as_slice());
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["body.txt", "議事録.txt", "転送.zip"]);
        let nested = list(&members[2].1);
        assert_eq!(nested[0].0, "body.txt");
        assert!(String::from_utf8_lossy(&nested[0].1).contains("会議の件"));
    }

    #[test]
    fn broken_msg_is_removed() {
        let mut msg = build(None);
        // The first directory sector points far beyond the file.
        msg[48..52].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        assert_eq!(crate::sniff::sniff(&msg), Kind::Msg);
        let out = sanitize_file(&msg, Some("x.msg"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::PARSE_FAILED));
    }

    #[test]
    fn codepage_lookup() {
        let mut p = vec![0u8; 24];
        p.extend_from_slice(&0x3FDE_0003u32.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&65001u32.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        assert_eq!(codepage(&p), Some(65001));
        assert_eq!(codepage(&[]), None);
    }
}
