//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper for rich-text mail. The body
//! and the attachments are taken out, the attachments sanitized as parts of their own, and the
//! result delivered as a ZIP (see `super::archive::outlook` for the output shape).
//!
//! The reader is our own and small ([MS-OXTNEF]): a signature, a key, then attribute records
//! (level, id, length, data, checksum). Every length is checked against the bytes that remain
//! before anything is read, nothing is allocated from a declared size, checksums are verified,
//! and an unknown MAPI property type fails the whole container (fail closed: we cannot tell
//! where the next property starts). Embedded messages (attachments of type object) carry a TNEF
//! stream of their own, which goes back through the pipeline, so depth limits hold.

use super::archive::outlook::{self, Attachment, MsgText, OutlookMessage};
use crate::error::SanitizeError;
use crate::limits::LimitKind;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;
/// Attribute ids (low 16 bits of the attribute tag).
const ATT_SUBJECT: u32 = 0x8004;
const ATT_BODY: u32 = 0x800C;
const ATT_ATTACH_DATA: u32 = 0x800F;
const ATT_ATTACH_TITLE: u32 = 0x8010;
const ATT_ATTACH_REND_DATA: u32 = 0x9002;
const ATT_MAPI_PROPS: u32 = 0x9003;
const ATT_ATTACHMENT: u32 = 0x9005;
const ATT_OEM_CODEPAGE: u32 = 0x9007;
/// MAPI property ids.
const PR_SUBJECT: u16 = 0x0037;
const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_BODY_HTML: u16 = 0x1013;
const PR_DISPLAY_NAME: u16 = 0x3001;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_INTERNET_CPID: u16 = 0x3FDE;
const PR_MESSAGE_CODEPAGE: u16 = 0x3FFD;
/// MAPI property types.
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const PT_OBJECT: u16 = 0x000D;
/// Most attribute records we read (a real winmail.dat has a few dozen).
const MAX_RECORDS: usize = 100_000;

/// Unpacks TNEF into a ZIP of its body and sanitized attachments.
#[derive(Debug, Clone, Copy)]
pub struct TnefSanitizer;

impl FormatSanitizer for TnefSanitizer {
    fn name(&self) -> &'static str {
        "tnef"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let msg = parse(input, cx)?;
        outlook::rebuild(msg, "Outlook TNEF (winmail.dat)", cx)
    }
}

fn bad(what: &str) -> SanitizeError {
    SanitizeError::Malformed(format!("TNEF: {what}"))
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], SanitizeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| bad("length overflow"))?;
        let s = self.b.get(self.pos..end).ok_or_else(|| bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, SanitizeError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16, SanitizeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes(b.try_into().map_err(|_| bad("u16"))?))
    }
    fn u32(&mut self) -> Result<u32, SanitizeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| bad("u32"))?))
    }
    fn len32(&mut self) -> Result<usize, SanitizeError> {
        usize::try_from(self.u32()?).map_err(|_| bad("length"))
    }
    /// Skips the padding after a `n`-byte value to the next multiple of 4.
    fn pad(&mut self, n: usize) -> Result<(), SanitizeError> {
        let p = (4 - n % 4) % 4;
        // Some writers omit the final padding; tolerate it at the very end.
        if self.remaining() >= p {
            self.take(p)?;
        }
        Ok(())
    }
}

/// The first value of one MAPI property.
struct Prop<'a> {
    id: u16,
    ty: u16,
    data: &'a [u8],
}

impl Prop<'_> {
    fn text(&self) -> Option<MsgText> {
        match self.ty {
            PT_UNICODE => Some(MsgText::Utf16(self.data.to_vec())),
            PT_STRING8 | PT_BINARY => Some(MsgText::Bytes(self.data.to_vec())),
            _ => None,
        }
    }
    fn long(&self) -> Option<u32> {
        Some(u32::from_le_bytes(self.data.get(..4)?.try_into().ok()?))
    }
}

/// Parses a MAPI property list ([MS-OXTNEF] 2.1.3.4).
fn parse_props(data: &[u8]) -> Result<Vec<Prop<'_>>, SanitizeError> {
    let mut r = Reader::new(data);
    let count = r.len32()?;
    let mut out = Vec::new();
    // Each property takes at least 8 bytes, so the count is bounded by the data.
    for _ in 0..count.min(data.len() / 8) {
        let ty = r.u16()?;
        let id = r.u16()?;
        if id >= 0x8000 {
            // Named property: GUID, kind, then a number or a UTF-16 name.
            r.take(16)?;
            if r.u32()? == 0 {
                r.u32()?;
            } else {
                let n = r.len32()?;
                r.take(n)?;
                r.pad(n)?;
            }
        }
        let base = ty & 0x0FFF;
        let variable = matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT);
        let values = if ty & 0x1000 != 0 || variable {
            r.len32()?
        } else {
            1
        };
        for v in 0..values.min(r.remaining() / 4 + 1) {
            let value = match base {
                PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT => {
                    let n = r.len32()?;
                    let d = r.take(n)?;
                    r.pad(n)?;
                    d
                }
                0x0001..=0x0004 | 0x000A | 0x000B => r.take(4)?,
                0x0005..=0x0007 | 0x0014 | 0x0040 => r.take(8)?,
                0x0048 => r.take(16)?,
                other => return Err(bad(&format!("unknown MAPI property type {other:#06x}"))),
            };
            if v == 0 {
                out.push(Prop {
                    id,
                    ty: base,
                    data: value,
                });
            }
        }
    }
    Ok(out)
}

/// An attachment while its records are being read.
#[derive(Default)]
struct Pending {
    title: Option<MsgText>,
    long_name: Option<MsgText>,
    short_name: Option<MsgText>,
    display_name: Option<MsgText>,
    data: Option<Vec<u8>>,
}

fn parse(input: &[u8], cx: &mut Context<'_>) -> Result<OutlookMessage, SanitizeError> {
    let mut r = Reader::new(input);
    if r.u32()? != SIGNATURE {
        return Err(bad("signature"));
    }
    let _key = r.u16()?;
    let mut subject: Option<MsgText> = None;
    let mut body: Option<MsgText> = None;
    let mut html: Option<MsgText> = None;
    let mut rtf: Option<Vec<u8>> = None;
    let mut oem_cp = None;
    let mut msg_cp = None;
    let mut pending: Vec<Pending> = Vec::new();
    let mut records = 0usize;
    while !r.done() {
        records = records.saturating_add(1);
        if records > MAX_RECORDS {
            return Err(SanitizeError::limit(
                LimitKind::Parts,
                "too many TNEF attribute records",
            ));
        }
        if records.is_multiple_of(64) {
            cx.budget().check_deadline()?;
        }
        let level = r.u8()?;
        let tag = r.u32()?;
        let len = r.len32()?;
        let data = r.take(len)?;
        let checksum = r.u16()?;
        let sum = data
            .iter()
            .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)));
        if sum != checksum {
            return Err(bad("attribute checksum mismatch"));
        }
        match (level, tag & 0xFFFF) {
            (LEVEL_MESSAGE, ATT_SUBJECT) => subject = Some(MsgText::Bytes(data.to_vec())),
            (LEVEL_MESSAGE, ATT_BODY) => {
                body.get_or_insert_with(|| MsgText::Bytes(data.to_vec()));
            }
            (LEVEL_MESSAGE, ATT_OEM_CODEPAGE) => {
                oem_cp = data
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes);
            }
            (LEVEL_MESSAGE, ATT_MAPI_PROPS) => {
                for p in parse_props(data)? {
                    match p.id {
                        PR_SUBJECT => subject = p.text().or(subject),
                        PR_BODY => body = p.text().or(body),
                        PR_BODY_HTML => html = p.text(),
                        PR_RTF_COMPRESSED if p.ty == PT_BINARY => rtf = Some(p.data.to_vec()),
                        PR_MESSAGE_CODEPAGE | PR_INTERNET_CPID => {
                            msg_cp = msg_cp.or_else(|| p.long());
                        }
                        _ => {}
                    }
                }
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA) => pending.push(Pending::default()),
            (LEVEL_ATTACHMENT, id) => {
                if pending.is_empty() {
                    pending.push(Pending::default());
                }
                let Some(a) = pending.last_mut() else {
                    continue;
                };
                match id {
                    ATT_ATTACH_TITLE => a.title = Some(MsgText::Bytes(data.to_vec())),
                    ATT_ATTACH_DATA => a.data = Some(data.to_vec()),
                    ATT_ATTACHMENT => {
                        for p in parse_props(data)? {
                            match p.id {
                                PR_ATTACH_LONG_FILENAME => a.long_name = p.text(),
                                PR_ATTACH_FILENAME => a.short_name = p.text(),
                                PR_DISPLAY_NAME => a.display_name = p.text(),
                                PR_ATTACH_DATA if a.data.is_none() => {
                                    // An object value starts with the 16-byte interface id.
                                    let d = if p.ty == PT_OBJECT {
                                        p.data.get(16..).unwrap_or_default()
                                    } else {
                                        p.data
                                    };
                                    a.data = Some(d.to_vec());
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let cp = msg_cp.or(oem_cp);
    let attachments = pending
        .into_iter()
        .filter_map(|p| {
            let data = p.data?;
            let name = [p.long_name, p.short_name, p.title, p.display_name]
                .into_iter()
                .flatten()
                .map(|t| t.decode(cp))
                .find(|n| !n.trim().is_empty());
            Some(Attachment { name, data })
        })
        .collect();
    Ok(OutlookMessage {
        subject: subject.map(|s| s.decode(cp)),
        body_text: body.map(|b| b.decode(cp)),
        body_html: html.map(|h| h.decode(cp)),
        body_rtf_compressed: rtf,
        attachments,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::formats::zip::tests::list;
    use crate::policy::Policy;
    use crate::report::Kind;
    use crate::sanitize_file;
    use crate::threats;

    fn attr(out: &mut Vec<u8>, level: u8, tag: u32, data: &[u8]) {
        out.push(level);
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().fold(0u16, |a, b| a.wrapping_add(u16::from(*b)));
        out.extend_from_slice(&sum.to_le_bytes());
    }

    fn prop_bytes(props: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut v = (props.len() as u32).to_le_bytes().to_vec();
        for (ty, id, data) in props {
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
            if *ty == 0x0003 {
                v.extend_from_slice(data);
                continue;
            }
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
            v.resize(v.len() + (4 - data.len() % 4) % 4, 0);
        }
        v
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    /// A winmail.dat with a Japanese body, a text attachment (legacy attributes, Shift_JIS
    /// title) and an executable attachment (MAPI long file name).
    pub(crate) fn sample() -> Vec<u8> {
        let mut t = SIGNATURE.to_le_bytes().to_vec();
        t.extend_from_slice(&0x1234u16.to_le_bytes());
        attr(&mut t, 1, 0x0008_9006, &0x0001_0000u32.to_le_bytes());
        attr(&mut t, 1, 0x0006_9007, &[0xA4, 0x03, 0, 0, 0, 0, 0, 0]); // 932
        let body =
            utf16("お世話になっております。\r\n詳細は https://example.jp/x をご覧ください。");
        let subject = utf16("見積書の送付");
        let props = prop_bytes(&[
            (0x001F, PR_BODY, &body),
            (0x001F, PR_SUBJECT, &subject),
            (0x0003, PR_INTERNET_CPID, &932u32.to_le_bytes()),
        ]);
        attr(&mut t, 1, 0x0006_9003, &props);
        // Attachment 1: a text file, named in Shift_JIS.
        attr(
            &mut t,
            2,
            0x0006_9002,
            &[1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
        );
        let (title, _, _) = encoding_rs::SHIFT_JIS.encode("資料.html\0");
        attr(&mut t, 2, 0x0001_8010, &title);
        attr(
            &mut t,
            2,
            0x0006_800F,
            b"<html><body>\x93\xe0\x97\x65 <script>x()</script></body></html>",
        );
        // Attachment 2: an executable, named through MAPI properties.
        attr(
            &mut t,
            2,
            0x0006_9002,
            &[1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
        );
        attr(&mut t, 2, 0x0001_8010, b"SETUP~1.EXE\0");
        attr(&mut t, 2, 0x0006_800F, b"MZ\x90\0\x03\0\0\0");
        let name = utf16("setup.exe");
        let props = prop_bytes(&[(0x001F, PR_ATTACH_LONG_FILENAME, &name)]);
        attr(&mut t, 2, 0x0006_9005, &props);
        t
    }

    #[test]
    fn body_and_attachments_come_out_as_zip() {
        let out = sanitize_file(&sample(), Some("winmail.dat"), &Policy::default());
        let file = out.output.expect("kept");
        assert_eq!(file.kind, Kind::Zip);
        assert_eq!(file.name, "winmail.zip");
        let members = list(file.bytes.as_slice());
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["body.txt", "資料.txt"]);
        let body = String::from_utf8(members[0].1.clone()).unwrap();
        assert!(body.starts_with("Subject: 見積書の送付\r\n"), "{body}");
        assert!(body.contains("お世話になっております。"));
        assert!(body.contains("hxxps://example[.]jp/x"), "{body}");
        let threats = out.report.threats();
        assert!(threats.contains(&threats::EXECUTABLE));
        assert!(threats.contains(&threats::LINK_REWRITTEN));
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.path == "winmail.dat/setup.exe")
        );
    }

    fn message_with(props: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut t = SIGNATURE.to_le_bytes().to_vec();
        t.extend_from_slice(&[0, 0]);
        attr(&mut t, 1, 0x0006_9003, &prop_bytes(props));
        t
    }

    #[test]
    fn html_and_rtf_bodies() {
        let html = b"<html><body><p>\xe4\xbc\x9a\xe8\xad\xb0</p><script>x()</script>\
            <a href='https://evil.example/'>link</a></body></html>";
        let t = message_with(&[(PT_BINARY, PR_BODY_HTML, html)]);
        let out = sanitize_file(&t, Some("winmail.dat"), &Policy::default());
        let members = list(out.output.expect("kept").bytes.as_slice());
        let body = String::from_utf8(members[0].1.clone()).unwrap();
        assert!(body.contains("会議") && !body.contains("<script"), "{body}");
        assert!(!body.contains("https://evil.example"), "{body}");
        let threats = out.report.threats();
        assert!(threats.contains(&threats::HTML_BODY));
        assert!(threats.contains(&threats::HTML_SCRIPT));

        // [MS-OXRTFCP] 3.1.1's example: the RTF goes to the pipeline as message.rtf.
        let rtf: &[u8] = &[
            0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5,
            0xc7, 0xa7, 0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42,
            0x32, 0x0a, 0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0,
            0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
        ];
        let t = message_with(&[(PT_BINARY, PR_RTF_COMPRESSED, rtf)]);
        let out = sanitize_file(&t, Some("winmail.dat"), &Policy::default());
        assert!(out.output.is_some());
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.path == "winmail.dat/message.rtf")
        );
    }

    #[test]
    fn corrupt_tnef_is_removed() {
        let mut t = sample();
        let n = t.len();
        t[n - 1] ^= 0xFF; // checksum of the last record
        let out = sanitize_file(&t, Some("winmail.dat"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::PARSE_FAILED));
        // A declared length far beyond the data does not allocate or panic.
        let mut t = SIGNATURE.to_le_bytes().to_vec();
        t.extend_from_slice(&[0, 0, 1, 4, 0x80, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F, b'x']);
        let out = sanitize_file(&t, Some("winmail.dat"), &Policy::default());
        assert!(out.output.is_none());
    }

    #[test]
    fn nested_tnef_respects_depth() {
        let mut inner = sample();
        for _ in 0..12 {
            let mut t = SIGNATURE.to_le_bytes().to_vec();
            t.extend_from_slice(&[0, 0]);
            attr(
                &mut t,
                2,
                0x0006_9002,
                &[5, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
            );
            let mut obj = vec![0u8; 16];
            obj.extend_from_slice(&inner);
            let props = prop_bytes(&[(PT_OBJECT, PR_ATTACH_DATA, &obj)]);
            attr(&mut t, 2, 0x0006_9005, &props);
            inner = t;
        }
        let out = sanitize_file(&inner, Some("winmail.dat"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_DEPTH));
    }
}
