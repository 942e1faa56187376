//! What TNEF (`winmail.dat`) and Outlook `.msg` have in common once parsed: a subject, a body
//! in one or more forms (plain, HTML, compressed RTF), and attachments; and the one output shape
//! both become.
//!
//! Output: a ZIP (`application/zip`, extension `.zip`) holding `body.txt` (UTF-8 with CRLF line
//! ends, the subject on its first line, links rewritten by the link policy, bidi and control
//! characters removed)
//! and each attachment that survived the pipeline. A ZIP is used whatever the context (file or
//! mail attachment) so that the recipient gets one predictable, openable thing: Outlook's own
//! containers cannot be rebuilt safely and nothing else would open them.
//!
//! Body choice: the plain-text body when present; else the HTML body converted to text; else the
//! compressed RTF body, decompressed (LZFu) and handed to the pipeline as `message.rtf` (the RTF
//! sanitizer turns it into text, or removes it); `body.txt` then holds only the subject.

use super::{KeptMember, MemberPath, Members};
use crate::error::SanitizeError;
use crate::formats::html::html_to_text;
use crate::limits::{Budget, LimitKind};
use crate::links::rewrite_links_in_text;
use crate::pipeline::{Context, PartInput, PartOutcome, Rebuilt, SafeBytes};
use crate::report::{Action, Kind};
use crate::threats;
use crate::unicode::clean_text;

/// Text that is stored in an 8-bit code page, or already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MsgText {
    /// UTF-16LE bytes.
    Utf16(Vec<u8>),
    /// 8-bit bytes in the message's code page.
    Bytes(Vec<u8>),
}

impl MsgText {
    /// Decodes with `codepage` for 8-bit text (UTF-8 when it is valid UTF-8 and no code page is
    /// known; Shift_JIS otherwise, the common case for Japanese Outlook).
    pub(crate) fn decode(&self, codepage: Option<u32>) -> String {
        let s = match self {
            MsgText::Utf16(b) => encoding_rs::UTF_16LE.decode_without_bom_handling(b).0,
            MsgText::Bytes(b) => match codepage.and_then(encoding_for_codepage) {
                Some(enc) => enc.decode_without_bom_handling(b).0,
                None => match std::str::from_utf8(b) {
                    Ok(s) => s.into(),
                    Err(_) => encoding_rs::SHIFT_JIS.decode_without_bom_handling(b).0,
                },
            },
        };
        s.trim_end_matches('\0').to_owned()
    }
}

pub(crate) use crate::codepage::encoding_for_codepage;

/// One attachment as found in the container.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attachment {
    /// The best name found (long file name, then short, then display name).
    pub(crate) name: Option<String>,
    /// The attachment bytes.
    pub(crate) data: Vec<u8>,
}

/// A parsed Outlook message.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutlookMessage {
    /// Subject, decoded.
    pub(crate) subject: Option<String>,
    /// Plain-text body, decoded.
    pub(crate) body_text: Option<String>,
    /// HTML body, decoded.
    pub(crate) body_html: Option<String>,
    /// Compressed RTF body (PR_RTF_COMPRESSED), as stored.
    pub(crate) body_rtf_compressed: Option<Vec<u8>>,
    /// Attachments in order.
    pub(crate) attachments: Vec<Attachment>,
}

/// Sanitizes the message's attachments through the pipeline and writes the output ZIP.
pub(crate) fn rebuild(
    msg: OutlookMessage,
    what: &str,
    cx: &mut Context<'_>,
) -> Result<Rebuilt, SanitizeError> {
    let mut members = Members::default();
    let mut body_threats: Vec<&'static str> = Vec::new();
    let mut body = String::new();
    if let Some(s) = &msg.subject {
        body.push_str("Subject: ");
        body.push_str(s.lines().next().unwrap_or_default());
        body.push_str("\n\n");
    }
    let mut rtf_body = None;
    let mut links = 0;
    if let Some(t) = msg.body_text.as_deref().filter(|t| !t.trim().is_empty()) {
        let (rewritten, n) = rewrite_links_in_text(t, cx.policy().links.mode);
        body.push_str(&rewritten);
        links = n;
    } else if let Some(h) = msg.body_html.as_deref() {
        // html_to_text rewrites the links itself.
        let converted = html_to_text(h, cx.policy());
        body_threats.extend(converted.threats);
        body_threats.push(threats::HTML_BODY);
        body.push_str(&converted.text);
        links = converted.links;
    } else if let Some(c) = msg.body_rtf_compressed.as_deref() {
        rtf_body = Some(decompress_rtf(c, cx.budget())?);
    }
    if links > 0 {
        body_threats.push(threats::LINK_REWRITTEN);
    }
    let (text, had_bidi) = clean_text(&body.replace("\r\n", "\n").replace('\r', "\n"));
    if had_bidi {
        body_threats.push(threats::TEXT_BIDI_CONTROL);
    }
    // CRLF, as the text sanitizer writes text files for Windows desktops.
    let text = text.replace('\n', "\r\n");
    for t in body_threats {
        members.threat(t);
    }
    // body.txt is text we decoded and cleaned ourselves; it is charged like a member.
    cx.budget().charge_part()?;
    let path = members.unique_path("body.txt".into());
    members.kept.push(KeptMember {
        path,
        bytes: SafeBytes::new(text.into_bytes()),
        mtime: None,
    });
    if let Some(rtf) = rtf_body {
        let outcome = cx.sanitize_child(
            "message.rtf",
            PartInput {
                bytes: &rtf,
                name: Some("message.rtf"),
                declared_type: Some("application/rtf"),
            },
        );
        if let PartOutcome::Kept(p) = outcome {
            let name = p.name.unwrap_or_else(|| "message.rtf".into());
            let path = members.unique_path(name);
            members.kept.push(KeptMember {
                path,
                bytes: p.bytes,
                mtime: None,
            });
        }
    }
    for (i, a) in msg.attachments.iter().enumerate() {
        cx.budget().check_deadline()?;
        let name = a
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment{}", i.saturating_add(1)));
        // Attachments are flat: a path in an attachment name is not a folder.
        let path = MemberPath {
            dirs: Vec::new(),
            ..MemberPath::parse(&name)
        };
        let path = if path.file.is_empty() {
            MemberPath::parse(&format!("attachment{}", i.saturating_add(1)))
        } else {
            path
        };
        members.sanitize(cx, &path, &a.data, None)?;
    }
    let out = crate::formats::zip::write_zip(&members.kept)?;
    let expected: Vec<&str> = members.kept.iter().map(|m| m.path.as_str()).collect();
    crate::formats::zip::recheck(&out, &expected)?;
    let attachments = members.kept.len().saturating_sub(1);
    Ok(
        Rebuilt::new(out, Action::Converted, Kind::Zip, "application/zip")
            .with_extension("zip")
            .with_threats(members.threats.iter().copied())
            .with_reason(format!(
                "{what} unpacked into a ZIP: body.txt and {attachments} attachment(s); {} removed",
                members.removed
            ))
            .with_detail(serde_json::json!({
                "converted_to": "zip",
                "attachments_kept": attachments,
                "attachments_removed": members.removed,
            })),
    )
}

/// The dictionary every compressed-RTF stream starts with ([MS-OXRTFCP] 2.1.2.1).
const RTF_PREBUF: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";

/// Decompresses PR_RTF_COMPRESSED ([MS-OXRTFCP]): `LZFu` (compressed) or `MELA` (stored).
/// Output is charged to the decoded-bytes budget as it grows and bounded by the ratio limit;
/// the declared raw size is never used to allocate.
pub(crate) fn decompress_rtf(input: &[u8], budget: &mut Budget) -> Result<Vec<u8>, SanitizeError> {
    let bad = || SanitizeError::Malformed("compressed RTF body".into());
    let word = |i: usize| -> Option<u32> {
        let b = input.get(i..i.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    };
    let comp_type = word(8).ok_or_else(bad)?;
    let body = input.get(16..).ok_or_else(bad)?;
    let cap = (input.len() as u64)
        .saturating_mul(budget.limits().max_ratio)
        .max(64 * 1024)
        .min(budget.decoded_remaining());
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if comp_type == 0x414c_454d {
        // "MELA": stored.
        budget.charge_decoded(body.len() as u64)?;
        return Ok(body.to_vec());
    }
    if comp_type != 0x7546_5a4c {
        return Err(bad());
    }
    let mut dict = [0u8; 4096];
    let mut wpos = 0usize;
    for (slot, b) in dict.iter_mut().zip(RTF_PREBUF) {
        *slot = *b;
        wpos += 1;
    }
    let mut out = Vec::new();
    let mut i = 0usize;
    'outer: while let Some(&control) = body.get(i) {
        i += 1;
        for bit in 0..8 {
            if control & (1 << bit) == 0 {
                let Some(&b) = body.get(i) else {
                    break 'outer;
                };
                i += 1;
                if let Some(slot) = dict.get_mut(wpos % 4096) {
                    *slot = b;
                }
                wpos = (wpos + 1) % 4096;
                out.push(b);
            } else {
                let (Some(&hi), Some(&lo)) = (body.get(i), body.get(i + 1)) else {
                    break 'outer;
                };
                i += 2;
                let r = (usize::from(hi) << 8) | usize::from(lo);
                let offset = r >> 4;
                let len = (r & 0xF) + 2;
                if offset == wpos {
                    break 'outer; // end marker
                }
                for k in 0..len {
                    let b = dict.get((offset + k) % 4096).copied().unwrap_or(0);
                    if let Some(slot) = dict.get_mut(wpos) {
                        *slot = b;
                    }
                    wpos = (wpos + 1) % 4096;
                    out.push(b);
                }
            }
            if out.len() > cap {
                return Err(SanitizeError::limit(
                    LimitKind::Ratio,
                    "compressed RTF body expands too far",
                ));
            }
        }
    }
    budget.charge_decoded(out.len() as u64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn compressed_rtf_example_from_the_spec() {
        // [MS-OXRTFCP] 3.1.1: "{\rtf1\ansi\ansicpg1252\pard hello world}\r\n".
        let data: &[u8] = &[
            0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5,
            0xc7, 0xa7, 0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42,
            0x32, 0x0a, 0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0,
            0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
        ];
        let mut b = Budget::new(&Limits::default());
        let out = decompress_rtf(data, &mut b).unwrap();
        assert_eq!(out, b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n");
    }

    #[test]
    fn codepages_decode() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書");
        assert_eq!(MsgText::Bytes(sjis.to_vec()).decode(Some(932)), "見積書");
        assert_eq!(MsgText::Bytes(sjis.to_vec()).decode(None), "見積書");
        let u: Vec<u8> = "件名\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(MsgText::Utf16(u).decode(None), "件名");
    }
}
