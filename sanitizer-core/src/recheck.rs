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

/// What is being checked: a sanitized output (every rule), or an original that is to be
/// confirmed clean (the same rules minus those only our own writer keeps: CRLF line discipline,
/// the report-id header, UTF-8 text, UTF-8 member names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Of {
    Output,
    Original,
}

/// Re-checks a sanitized mail: line discipline, re-parse, only allowed content types (no HTML
/// anywhere), a report id header, and every attachment re-checked by its own kind.
pub fn verify_mail(bytes: Vec<u8>, policy: &Policy) -> Result<SafeBytes, SanitizeError> {
    check_mail(&bytes, policy, 0, Of::Output)?;
    Ok(SafeBytes::new(bytes))
}

fn check_mail(bytes: &[u8], policy: &Policy, depth: u32, of: Of) -> Result<(), SanitizeError> {
    if depth > MAX_NESTED {
        return Err(fail("messages nested too deep"));
    }
    if of == Of::Output {
        check_lines(bytes)?;
    }
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| fail("output does not parse as a message"))?;
    if depth == 0 && of == Of::Output && msg.header_raw("X-Mugai-Report-Id").is_none() {
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
                check_file(b, claimed, policy, depth + 1, of)?;
            }
            PartType::Message(m) => check_mail(m.raw_message(), policy, depth + 1, of)?,
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
    verify_file_kind(bytes, claimed, policy).map(|(b, _)| b)
}

/// [`verify_file`], also returning the kind the re-check itself found: the sniffed kind (a
/// claimed `csv` that sniffs as text stays `csv`). Callers name the output after this kind,
/// never after the claim.
pub fn verify_file_kind(
    bytes: Vec<u8>,
    claimed: Kind,
    policy: &Policy,
) -> Result<(SafeBytes, Kind), SanitizeError> {
    check_file(&bytes, claimed, policy, 0, Of::Output)?;
    let sniffed = sniff::sniff(&bytes);
    let kind = match (claimed, sniffed) {
        (Kind::Csv, Kind::Text) => Kind::Csv,
        _ => sniffed,
    };
    Ok((SafeBytes::new(bytes), kind))
}

/// Whether a delivered CSV/TSV (`delim` `,` or tab) is free of formula-looking cells, as the
/// text sanitizer leaves it when `csv.neutralise_formulas` is on. Run on any output whose name
/// ends in `.csv`/`.tsv`, whatever kind its producer claimed.
pub fn check_csv(bytes: &[u8], delim: u8) -> Result<(), SanitizeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| fail("CSV output is not UTF-8"))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let cells = crate::formats::csv::neutralise(text, delim).cells;
    if cells > 0 {
        return Err(fail(format!(
            "{cells} formula-looking cell(s) in CSV output"
        )));
    }
    Ok(())
}

/// Whether `input` itself already passes the re-check for `kind`: then nothing in it had to be
/// removed or changed, and a `clean` verdict from whoever sanitized it can be believed. A
/// caller that cannot confirm this downgrades a claimed `clean` to `sanitized`.
///
/// `output` is the re-checked output made from `input`: identical bytes confirm at once, and an
/// OpenDocument package is confirmed when every member of the output (but the regenerated
/// manifest) is byte-identical to the original's and the original's other members are only
/// what every rebuild leaves out (directory entries, thumbnails, `settings.xml`,
/// `manifest.rdf`): then nothing of the document's content was changed or removed.
pub fn confirms_clean_file(input: &[u8], output: &[u8], kind: Kind, policy: &Policy) -> bool {
    if input == output {
        return true;
    }
    if kind == Kind::Odf && sniff::sniff(input) == Kind::Odf {
        return odf_kept_unchanged(input, output, policy).unwrap_or(false);
    }
    check_file(input, kind, policy, 0, Of::Original).is_ok()
}

/// Members of an ODF original that a rebuild drops without changing what the document says.
fn odf_droppable(name: &str, data: &[u8]) -> bool {
    (name.ends_with('/') && data.is_empty())
        || name.starts_with("Thumbnails/")
        || name == "settings.xml"
        || name == "manifest.rdf"
}

/// See [`confirms_clean_file`]; `None` when either package does not read.
fn odf_kept_unchanged(input: &[u8], output: &[u8], policy: &Policy) -> Option<bool> {
    let members = |bytes: &[u8]| -> Option<Vec<(String, Vec<u8>)>> {
        let mut ar = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
        if ar.len() > policy.limits.max_parts as usize {
            return None;
        }
        let mut out = Vec::new();
        for i in 0..ar.len() {
            let f = ar.by_index(i).ok()?;
            let name = f.name().ok()?.into_owned();
            out.push((name, read_limited(f, policy).ok()?));
        }
        Some(out)
    };
    let original = members(input)?;
    let rebuilt = members(output)?;
    let kept_same = rebuilt.iter().all(|(name, data)| {
        name == "META-INF/manifest.xml" || original.iter().any(|(n, d)| n == name && d == data)
    });
    let dropped_harmless = original.iter().all(|(name, data)| {
        name == "META-INF/manifest.xml"
            || rebuilt.iter().any(|(n, _)| n == name)
            || odf_droppable(name, data)
    });
    Some(kept_same && dropped_harmless)
}

/// [`confirms_clean_file`] for a mail: the original passes the mail re-check (without the
/// report-id header that only our own output carries).
pub fn confirms_clean_mail(input: &[u8], policy: &Policy) -> bool {
    check_mail(input, policy, 0, Of::Original).is_ok()
}

/// The `X-Mugai-Report-Id` of a (re-checked) message, trimmed; `None` when it has none. The
/// parent compares it with the report's id, so a delivered mail always points at its report.
pub fn mail_report_id(bytes: &[u8]) -> Option<String> {
    let msg = MessageParser::default().parse_headers(bytes)?;
    msg.header_raw("X-Mugai-Report-Id")
        .map(|v| v.trim().to_owned())
}

/// PNG chunks a re-encoded image may hold: pixels and how to show them, no text, metadata,
/// profiles or animation.
const PNG_CHUNKS: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"sRGB", b"gAMA", b"cHRM", b"sBIT", b"pHYs",
    b"bKGD", b"cICP",
];

/// Walks a PNG's chunks: IHDR first, only [`PNG_CHUNKS`], lengths inside the file, nothing
/// after IEND (a PNG+HTML or PNG+ZIP polyglot fails here).
fn check_png_chunks(bytes: &[u8]) -> Result<(), SanitizeError> {
    let mut pos: usize = 8;
    let mut first = true;
    loop {
        let head = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| fail("PNG output ends without IEND"))?;
        let (len, kind) = head
            .split_at_checked(4)
            .ok_or_else(|| fail("PNG chunk header"))?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| fail("PNG chunk length"))?);
        let end = pos
            .checked_add(12)
            .and_then(|p| p.checked_add(len as usize))
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| fail("PNG chunk runs past the end of the output"))?;
        if !PNG_CHUNKS.iter().any(|k| k.as_slice() == kind) {
            return Err(fail(format!(
                "PNG chunk {:?} is not allowed in output",
                String::from_utf8_lossy(kind)
            )));
        }
        if first != (kind == b"IHDR") {
            return Err(fail("PNG output does not start with IHDR"));
        }
        first = false;
        if kind == b"IEND" {
            return if end == bytes.len() {
                Ok(())
            } else {
                Err(fail("data after the PNG end"))
            };
        }
        pos = end;
    }
}

/// An image output: PNG or JPEG (what the image sanitizer writes), with no metadata, no data
/// after its end, one frame, dimensions within the pixel limit, and pixels that decode. Magic
/// bytes alone prove nothing (`\x89PNG` followed by HTML is not an image).
fn check_image(bytes: &[u8], policy: &Policy) -> Result<(), SanitizeError> {
    use crate::formats::image::{scan_jpeg, scan_png};
    use image::{ImageFormat, ImageReader};
    let (format, scan) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        check_png_chunks(bytes)?;
        (ImageFormat::Png, scan_png(bytes))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if !bytes.ends_with(&[0xFF, 0xD9]) {
            return Err(fail("JPEG output does not end with EOI"));
        }
        (ImageFormat::Jpeg, scan_jpeg(bytes))
    } else {
        return Err(fail("image output is neither PNG nor JPEG"));
    };
    if !scan.metadata.is_empty() {
        return Err(fail(format!(
            "image output carries metadata: {}",
            scan.metadata.join(", ")
        )));
    }
    if scan.trailing != 0 || scan.frames != 1 {
        return Err(fail("image output has trailing data or several frames"));
    }
    let (w, h) = scan
        .dimensions
        .ok_or_else(|| fail("image output has no dimensions"))?;
    let pixels = u64::from(w).saturating_mul(u64::from(h));
    let max = policy.limits.max_pixels_per_image;
    if pixels == 0 || pixels > max {
        return Err(fail(format!("image output of {w}x{h} pixels")));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max.saturating_mul(8));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| fail(format!("image output does not decode: {e}")))?;
    if (decoded.width(), decoded.height()) != (w, h) {
        return Err(fail(
            "image output decodes to other dimensions than its header",
        ));
    }
    Ok(())
}

fn check_file(
    bytes: &[u8],
    claimed: Kind,
    policy: &Policy,
    depth: u32,
    of: Of,
) -> Result<(), SanitizeError> {
    if depth > MAX_NESTED {
        return Err(fail("output nested too deep"));
    }
    let sniffed = sniff::sniff(bytes);
    if !sniff::compatible(claimed, sniffed) {
        return Err(fail(format!("output claims {claimed} but is {sniffed}")));
    }
    match sniffed {
        Kind::Mail => check_mail(bytes, policy, depth.saturating_add(1), of),
        Kind::Zip => check_zip(bytes, policy, depth, of),
        Kind::Tar => check_tar(bytes, policy, depth, of),
        Kind::Gzip => {
            let inner = read_limited(flate2::read::MultiGzDecoder::new(bytes), policy)?;
            check_file(
                &inner,
                sniff::sniff(&inner),
                policy,
                depth.saturating_add(1),
                of,
            )
        }
        // An original in a legacy encoding (Shift_JIS, EUC-JP, ISO-2022-JP) cannot hold bidi or
        // zero-width controls, and decoding it changes no meaning.
        Kind::Text | Kind::Csv if of == Of::Original && std::str::from_utf8(bytes).is_err() => {
            Ok(())
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
        Kind::Image => check_image(bytes, policy),
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

/// One archive member of an output: read within the limits, then re-checked as a file of its
/// own (one level deeper).
fn check_member<R: Read>(
    member: R,
    name: &str,
    archive: &str,
    policy: &Policy,
    depth: u32,
    of: Of,
) -> Result<(), SanitizeError> {
    let data = read_limited(member, policy)?;
    check_file(
        &data,
        sniff::sniff(&data),
        policy,
        depth.saturating_add(1),
        of,
    )
    .map_err(|e| fail(format!("{archive} member {name}: {e}")))
}

/// Every member of a ZIP output: plain files with normalised names, not encrypted, each one a
/// sanitized output itself.
fn check_zip(bytes: &[u8], policy: &Policy, depth: u32, of: Of) -> Result<(), SanitizeError> {
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
        check_member(f, &name, "zip", policy, depth, of)?;
    }
    Ok(())
}

/// Every member of a TAR output: regular files only, normalised names, each a sanitized output.
fn check_tar(bytes: &[u8], policy: &Policy, depth: u32, of: Of) -> Result<(), SanitizeError> {
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
        check_member(entry, &name, "tar", policy, depth, of)?;
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
    fn report_id_is_read_from_the_header() {
        assert_eq!(mail_report_id(GOOD).as_deref(), Some("1"));
        assert_eq!(mail_report_id(b"From: a@example.jp\r\n\r\nx\r\n"), None);
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

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(w, h));
        crate::formats::image::encode_png(&img).unwrap()
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 80)
            .encode(
                &vec![128u8; usize::from(w) * usize::from(h) * 3],
                w,
                h,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        out
    }

    #[test]
    fn images_must_decode_not_just_start_with_magic() {
        let p = Policy::default();
        assert!(verify_file(png(4, 3), Kind::Image, &p).is_ok());
        assert!(verify_file(jpeg(4, 3), Kind::Image, &p).is_ok());
        // Magic followed by HTML: the forged "PNG" of the isolation review.
        let forged = b"\x89PNG\r\n\x1a\n<script>alert(1)</script>".to_vec();
        assert!(verify_file(forged, Kind::Image, &p).is_err());
        let forged_jpeg = b"\xff\xd8\xff\xe0<html><script>alert(1)</script>\xff\xd9".to_vec();
        assert!(verify_file(forged_jpeg, Kind::Image, &p).is_err());
        // A real image with a polyglot tail, a text chunk, or broken pixel data.
        let mut tail = png(4, 3);
        tail.extend_from_slice(b"<html><script>alert(1)</script>");
        assert!(verify_file(tail, Kind::Image, &p).is_err());
        let good = png(4, 3);
        let mut text = good[..33].to_vec();
        text.extend_from_slice(&crate::formats::image::tests::chunk(
            b"tEXt",
            b"k\0<script>",
        ));
        text.extend_from_slice(&good[33..]);
        assert!(verify_file(text, Kind::Image, &p).is_err());
        let mut broken = png(4, 3);
        let idat = broken.windows(4).position(|w| w == b"IDAT").unwrap();
        broken[idat + 6] ^= 0xFF;
        assert!(verify_file(broken, Kind::Image, &p).is_err());
        let mut jpeg_tail = jpeg(4, 3);
        jpeg_tail.extend_from_slice(b"PK\x03\x04");
        assert!(verify_file(jpeg_tail, Kind::Image, &p).is_err());
    }

    #[test]
    fn every_kind_is_checked_by_structure_not_magic() {
        let p = Policy::default();
        for (bytes, kind) in [
            (&b"%PDF-1.7\n<script>alert(1)</script>"[..], Kind::Pdf),
            (&b"PK\x03\x04<script>alert(1)</script>"[..], Kind::Zip),
            (&b"PK\x03\x04<script>alert(1)</script>"[..], Kind::Ooxml),
            (&b"\x1f\x8b\x08\0<script>"[..], Kind::Gzip),
            (
                &b"\x89PNG\r\n\x1a\n<script>alert(1)</script>"[..],
                Kind::Image,
            ),
        ] {
            assert!(verify_file(bytes.to_vec(), kind, &p).is_err(), "{kind}");
        }
    }

    #[test]
    fn the_checked_kind_is_the_sniffed_one() {
        let p = Policy::default();
        let (_, k) = verify_file_kind(png(2, 2), Kind::Image, &p).unwrap();
        assert_eq!(k, Kind::Image);
        let (_, k) = verify_file_kind(b"a,b\r\n1,2\r\n".to_vec(), Kind::Csv, &p).unwrap();
        assert_eq!(k, Kind::Csv);
        let zip = zip_of(&[("a.txt", b"x")]);
        let (_, k) = verify_file_kind(zip, Kind::Zip, &p).unwrap();
        assert_eq!(k, Kind::Zip);
    }

    #[test]
    fn csv_outputs_carry_no_formula_cells() {
        assert!(check_csv("\u{FEFF}a,'=1+1\r\n-5,x\r\n".as_bytes(), b',').is_ok());
        assert!(check_csv(b"a,=cmd|' /C calc'!A0\r\n", b',').is_err());
        assert!(check_csv(b"a\t@SUM(A1)\n", b'\t').is_err());
    }

    #[test]
    fn clean_is_confirmed_only_for_inputs_that_pass_the_recheck() {
        let p = Policy::default();
        assert!(confirms_clean_file(
            b"plain text\n",
            b"plain text\r\n",
            Kind::Text,
            &p
        ));
        assert!(confirms_clean_file(&png(2, 2), &png(2, 2), Kind::Image, &p));
        assert!(!confirms_clean_file(
            b"<html><script>x</script>",
            b"x\r\n",
            Kind::Text,
            &p
        ));
        let mut with_tail = png(2, 2);
        with_tail.extend_from_slice(b"PK\x03\x04");
        assert!(!confirms_clean_file(
            &with_tail,
            &png(2, 2),
            Kind::Image,
            &p
        ));
        let mail = b"From: a@example.jp\r\nSubject: x\r\n\r\nhello\r\n";
        assert!(confirms_clean_mail(mail, &p));
        let html = b"From: a@example.jp\r\nContent-Type: text/html\r\n\r\n<script>x</script>\r\n";
        assert!(!confirms_clean_mail(html, &p));
    }

    #[test]
    fn an_odf_original_is_confirmed_only_when_its_content_was_kept_as_is() {
        let p = Policy::default();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../corpus/samples/office/budget_lo.ods"
        );
        let clean = std::fs::read(path).unwrap();
        let out = crate::sanitize_file(&clean, Some("b.ods"), &p)
            .output
            .unwrap();
        assert!(confirms_clean_file(
            &clean,
            out.bytes.as_slice(),
            Kind::Odf,
            &p
        ));
        // The same document with a Basic macro library: the rebuild drops it, so the original
        // cannot be confirmed clean whatever the worker says.
        let mut ar = zip::ZipArchive::new(Cursor::new(&clean[..])).unwrap();
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..ar.len() {
            let mut f = ar.by_index(i).unwrap();
            let name = f.name().unwrap().into_owned();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            w.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut w, &data).unwrap();
        }
        w.start_file(
            "Basic/Standard/Module1.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(&mut w, b"<script:module>Shell(\"calc\")</script:module>")
            .unwrap();
        let with_macro = w.finish().unwrap().into_inner();
        let out = crate::sanitize_file(&with_macro, Some("m.ods"), &p)
            .output
            .unwrap();
        assert!(!confirms_clean_file(
            &with_macro,
            out.bytes.as_slice(),
            Kind::Odf,
            &p
        ));
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
