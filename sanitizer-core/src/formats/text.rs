//! Plain text (and CSV, which sniffs as text): any charset in, clean UTF-8 out.
//!
//! - **Charset**: a BOM decides (UTF-8, UTF-16LE/BE); 7-bit input with ISO-2022-JP escape
//!   sequences is ISO-2022-JP (read as RFC 1468 and CP50220/50221/50222 by the mail
//!   decoder, `mail::jis`); valid UTF-8 is UTF-8; anything else is guessed by `chardetng`
//!   with the `.jp` hint (this is a product for Japanese municipalities: among legacy
//!   encodings, Shift_JIS/CP932 and EUC-JP are the likely ones) and decoded by `encoding_rs`.
//!   encoding_rs' `Shift_JIS` is the WHATWG one, i.e. Windows-31J/CP932 with the NEC and IBM
//!   extensions, so 機種依存文字 such as ①, ㈱ and 髙 decode correctly. Undecodable bytes become
//!   U+FFFD; raw input bytes never reach the output.
//! - **Controls**: bidi and zero-width controls are removed (`text.bidi_control`), and so is every
//!   other C0/C1 control except tab and line breaks.
//! - **Links** follow the link policy (defanged by default, `link.rewritten`), as in a mail
//!   body; not in CSV, whose cells are data.
//! - **Line ends**: always CRLF. The recipients are Windows users in municipal offices; Notepad,
//!   Excel and the usual Japanese editors all read CRLF, and RFC 4180 (CSV) and MIME text use it.
//!   A lone CR or LF becomes CRLF.
//! - **Action**: `kept` when the input already was exactly the output (clean UTF-8, CRLF);
//!   `reencoded` when only the line ends (or a UTF-8 BOM) changed, which does not change what
//!   the recipient reads; `converted` (detail `{"charset": "Shift_JIS"}`) when the charset was
//!   normalised, controls were removed or bytes were undecodable.
//!
//! ## CSV
//! The sanitizer sees only bytes, and CSV sniffs as text. The pipeline's report path ends with
//! the part's normalised file name, so a part whose name ends in `.csv` or `.tsv` is treated as
//! CSV (see [`csv`](super::csv)): formula-looking cells are neutralised and the output is UTF-8
//! *with* a BOM, because Excel in Japanese Windows reads a BOM-less CSV as CP932 and garbles
//! UTF-8. The name only adds CSV handling on top of the text rules; it never weakens them.

use std::borrow::Cow;

use encoding_rs::{Encoding, ISO_2022_JP, UTF_8};

use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;
use crate::unicode::is_invisible_control;

/// Bytes given to the charset detector (from the first non-ASCII byte).
const DETECT_WINDOW: usize = 256 * 1024;

/// Text decoded from some charset, and what it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text (may still contain controls; see [`clean`]).
    pub text: String,
    /// The charset's name (`UTF-8`, `Shift_JIS`, `EUC-JP`, `ISO-2022-JP`, `UTF-16LE`, ...).
    pub charset: &'static str,
    /// Whether a byte-order mark was present (and removed).
    pub had_bom: bool,
    /// Whether some bytes could not be decoded and became U+FFFD.
    pub had_errors: bool,
}

/// Detects the charset of `bytes` and decodes them to UTF-8 (see the module docs for the
/// order of the rules).
pub fn decode(bytes: &[u8]) -> Decoded {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let body = bytes.get(bom_len..).unwrap_or_default();
        return decode_with(enc, body, true);
    }
    if bytes.is_ascii() && looks_iso_2022_jp(bytes) {
        return decode_with(ISO_2022_JP, bytes, false);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Decoded {
            text: s.to_owned(),
            charset: UTF_8.name(),
            had_bom: false,
            had_errors: false,
        };
    }
    // chardetng learns nothing from ASCII; a window from the first non-ASCII byte decides as
    // well as the whole file and keeps a 50 MB attachment from costing seconds.
    let start = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
    let window = bytes
        .get(start..start.saturating_add(DETECT_WINDOW).min(bytes.len()))
        .unwrap_or(bytes);
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    detector.feed(window, true);
    let enc = detector.guess(Some(b"jp"), chardetng::Utf8Detection::Allow);
    decode_with(enc, bytes, false)
}

fn decode_with(enc: &'static Encoding, body: &[u8], had_bom: bool) -> Decoded {
    // ISO-2022-JP by the mail decoder, which reads it as RFC 1468 and CP5022x do.
    let (text, had_errors) = crate::mail::jis::decode_as(enc, body);
    Decoded {
        text: text.into_owned(),
        charset: enc.name(),
        had_bom,
        had_errors,
    }
}

/// ISO-2022-JP switches character sets with `ESC $ @`, `ESC $ B` (JIS X 0208), `ESC ( J`,
/// `ESC ( I` and back with `ESC ( B`.
fn looks_iso_2022_jp(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| matches!(w, [0x1B, b'$', b'@' | b'B'] | [0x1B, b'(', b'J' | b'I']))
}

/// Text with controls removed and line ends normalised to CRLF, and what was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// The text, CRLF line ends.
    pub text: String,
    /// Bidi or zero-width controls were removed.
    pub bidi: bool,
    /// Other control characters were removed.
    pub controls: bool,
}

/// Removes bidi/zero-width controls and every C0/C1 control except tab, and normalises line
/// ends (CRLF, lone CR, lone LF) to CRLF.
pub fn clean(text: &str) -> Cleaned {
    let mut out = String::with_capacity(text.len().saturating_add(text.len() / 16));
    let mut bidi = false;
    let mut controls = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            '\t' => out.push('\t'),
            c if is_invisible_control(c) => bidi = true,
            // U+2028/2029 are line breaks to some editors and invisible to others.
            '\u{2028}' | '\u{2029}' => out.push_str("\r\n"),
            c if c.is_control() => controls = true,
            c => out.push(c),
        }
    }
    Cleaned {
        text: out,
        bidi,
        controls,
    }
}

/// Whether the report path's last segment (the normalised name) says CSV or TSV; returns the
/// field delimiter.
fn csv_delimiter(path: &str) -> Option<u8> {
    let name = path.rsplit('/').next().unwrap_or_default();
    match crate::unicode::extension(name).as_deref() {
        Some("csv") => Some(b','),
        Some("tsv") => Some(b'\t'),
        _ => None,
    }
}

const UTF8_BOM: &str = "\u{FEFF}";

/// Text files (and CSV, by name) become clean UTF-8.
#[derive(Debug, Clone, Copy)]
pub struct TextSanitizer;

impl FormatSanitizer for TextSanitizer {
    fn name(&self) -> &'static str {
        "text"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        cx.budget().check_deadline()?;
        let decoded = decode(input);
        // Decoding can grow the text (UTF-16 → UTF-8: at most 3/2): charge what we produced.
        cx.budget().charge_decoded(decoded.text.len() as u64)?;
        let cleaned = clean(&decoded.text);
        cx.budget().check_deadline()?;

        let mut found: Vec<&'static str> = Vec::new();
        if cleaned.bidi {
            found.push(threats::TEXT_BIDI_CONTROL);
        }
        let csv = csv_delimiter(cx.path());
        let (body, neutralised) = match csv {
            Some(delim) if cx.policy().csv.neutralise_formulas => {
                let out = super::csv::neutralise(&cleaned.text, delim);
                (out.text, out.cells)
            }
            _ => (Cow::Borrowed(cleaned.text.as_str()), 0),
        };
        if neutralised > 0 {
            found.push(threats::CSV_FORMULA);
        }
        // Links in text follow the link policy, as in a mail body (a reader's editor or viewer
        // makes them clickable). CSV cells are data a program reads back: left as they are.
        let (body, links) = if csv.is_none() {
            let (t, n) = crate::links::rewrite_links_linear(&body, cx.policy().links.mode);
            if n > 0 { (Cow::Owned(t), n) } else { (body, 0) }
        } else {
            (body, 0)
        };
        if links > 0 {
            found.push(threats::LINK_REWRITTEN);
        }
        let mut bytes = Vec::with_capacity(body.len().saturating_add(3));
        if csv.is_some() {
            bytes.extend_from_slice(UTF8_BOM.as_bytes());
        }
        bytes.extend_from_slice(body.as_bytes());

        let charset_changed = decoded.charset != UTF_8.name();
        let meaning_changed = charset_changed
            || decoded.had_errors
            || cleaned.bidi
            || cleaned.controls
            || neutralised > 0
            || links > 0;
        let action = if bytes == input {
            Action::Kept
        } else if charset_changed
            || decoded.had_errors
            || cleaned.bidi
            || cleaned.controls
            || links > 0
        {
            Action::Converted
        } else if neutralised > 0 {
            Action::Rebuilt
        } else {
            Action::Reencoded
        };
        let mut detail = serde_json::Map::new();
        detail.insert("charset".into(), decoded.charset.into());
        if decoded.had_errors {
            detail.insert("undecodable_bytes".into(), true.into());
        }
        if neutralised > 0 {
            detail.insert("formula_cells".into(), neutralised.into());
        }
        if links > 0 {
            detail.insert("links".into(), links.into());
        }
        let what = if csv.is_some() { "CSV" } else { "text" };
        let reason = if !meaning_changed {
            format!("{what} kept as UTF-8 (line ends normalised to CRLF)")
        } else {
            let mut parts = Vec::new();
            if charset_changed {
                parts.push(format!("converted from {} to UTF-8", decoded.charset));
            }
            if decoded.had_errors {
                parts.push("undecodable bytes replaced with U+FFFD".to_owned());
            }
            if cleaned.bidi {
                parts.push("bidi/zero-width controls removed".to_owned());
            }
            if cleaned.controls {
                parts.push("control characters removed".to_owned());
            }
            if neutralised > 0 {
                parts.push(format!(
                    "{neutralised} formula-looking cell(s) neutralised with a leading '"
                ));
            }
            if links > 0 {
                parts.push(format!("{links} link(s) rewritten by the link policy"));
            }
            format!("{what} {}", parts.join("; "))
        };
        let (kind, mime) = if csv.is_some() {
            (Kind::Csv, "text/csv; charset=utf-8")
        } else {
            (Kind::Text, "text/plain; charset=utf-8")
        };
        Ok(Rebuilt::new(bytes, action, kind, mime)
            .with_threats(found)
            .with_reason(reason)
            .with_detail(serde_json::Value::Object(detail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::report::Verdict;
    use crate::sanitize_file;

    fn sjis(s: &str) -> Vec<u8> {
        let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
        assert!(!bad);
        b.into_owned()
    }

    #[test]
    fn shift_jis_with_vendor_characters_decodes() {
        let original = "①㈱髙橋商事 御中\r\n請求書を送付いたします。\r\n";
        let d = decode(&sjis(original));
        assert_eq!(d.charset, "Shift_JIS");
        assert!(!d.had_errors);
        assert_eq!(d.text, original);
    }

    #[test]
    fn euc_jp_decodes() {
        let original = "住民票の写しの交付について。本日は晴天なり。申請書を提出してください。";
        let (b, _, bad) = encoding_rs::EUC_JP.encode(original);
        assert!(!bad);
        let d = decode(&b);
        assert_eq!(d.charset, "EUC-JP");
        assert_eq!(d.text, original);
    }

    #[test]
    fn iso_2022_jp_and_utf16_decode() {
        let (b, _, _) = ISO_2022_JP.encode("こんにちは、世界");
        let d = decode(&b);
        assert_eq!(d.charset, "ISO-2022-JP");
        assert_eq!(d.text, "こんにちは、世界");

        let mut le = vec![0xFF, 0xFE];
        le.extend("日本語 text".encode_utf16().flat_map(u16::to_le_bytes));
        let d = decode(&le);
        assert_eq!(
            (d.charset, d.text.as_str(), d.had_bom),
            ("UTF-16LE", "日本語 text", true)
        );

        let mut be = vec![0xFE, 0xFF];
        be.extend("日本語".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&be).text, "日本語");
    }

    #[test]
    fn iso_2022_jp_escapes_back_to_back_and_cp5022x_decode() {
        // ｶﾞｲﾄﾞ then ESC ( B ESC $ B (RFC 1468-valid; encoding_rs gives U+FFFD), ①㈱ (NEC).
        let d = decode(b"\x1b(I6^2D^\x1b(B\x1b$B2~Dj-!-j\x1b(B\r\n");
        assert_eq!(d.text, "ｶﾞｲﾄﾞ改定①㈱\r\n");
        assert!(!d.had_errors);
    }

    #[test]
    fn links_in_text_follow_the_link_policy() {
        let text =
            "手続きは https://portal.example.lg.jp/apply から\r\nwww.phish.example も参照\r\n";
        let out = sanitize_file(text.as_bytes(), Some("memo.txt"), &Policy::default());
        let got = String::from_utf8(out.output.unwrap().bytes.into_vec()).unwrap();
        assert_eq!(
            got,
            "手続きは hxxps://portal[.]example[.]lg[.]jp/apply から\r\nwww[.]phish[.]example も参照\r\n"
        );
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        assert!(out.report.threats().contains(&threats::LINK_REWRITTEN));
        let mut policy = Policy::default();
        policy.links.mode = crate::policy::LinkMode::Remove;
        let out = sanitize_file(text.as_bytes(), Some("memo.txt"), &policy);
        let got = String::from_utf8(out.output.unwrap().bytes.into_vec()).unwrap();
        assert!(
            !got.contains("portal") && got.contains("[link removed]"),
            "{got}"
        );
        policy.links.mode = crate::policy::LinkMode::Keep;
        let out = sanitize_file(text.as_bytes(), Some("memo.txt"), &policy);
        assert_eq!(out.report.verdict, Verdict::Clean);
        // CSV cells are data: left alone.
        let csv = "name,url\r\na,https://portal.example.lg.jp/\r\n";
        let out = sanitize_file(csv.as_bytes(), Some("list.csv"), &Policy::default());
        let got = String::from_utf8(out.output.unwrap().bytes.into_vec()).unwrap();
        assert!(got.contains("https://portal.example.lg.jp/"), "{got}");
    }

    #[test]
    fn western_legacy_text_is_not_mistaken_for_japanese() {
        let original = "Grüße aus München. Le café est fermé à midi. Ça va très bien.";
        let (b, _, _) = encoding_rs::WINDOWS_1252.encode(original);
        let d = decode(&b);
        assert_eq!(d.charset, "windows-1252");
        assert_eq!(d.text, original);
    }

    #[test]
    fn undecodable_bytes_never_pass_raw() {
        // A broken UTF-16 surrogate: decodes with replacement.
        let d = decode(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00]);
        assert!(d.had_errors);
        assert!(d.text.contains('\u{FFFD}'));
    }

    #[test]
    fn controls_and_line_ends() {
        let c = clean("a\u{202E}b\u{200B}c\x07d\r\ne\nf\rg\u{2028}h");
        assert_eq!(c.text, "abcd\r\ne\r\nf\r\ng\r\nh");
        assert!(c.bidi && c.controls);
        let c = clean("tab\there\r\n");
        assert_eq!(c.text, "tab\there\r\n");
        assert!(!c.bidi && !c.controls);
    }

    #[test]
    fn clean_utf8_crlf_is_kept_and_clean() {
        let input = "お知らせ\r\n本日は休館日です。\r\n".as_bytes();
        let out = sanitize_file(input, Some("notice.txt"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Clean);
        assert_eq!(out.report.items[0].action, Action::Kept);
        let file = out.output.unwrap();
        assert_eq!(file.bytes.as_slice(), input);
        assert_eq!(file.name, "notice.txt");
    }

    #[test]
    fn lf_only_is_reencoded_but_clean() {
        let out = sanitize_file(
            "一行目\n二行目\n".as_bytes(),
            Some("a.log"),
            &Policy::default(),
        );
        assert_eq!(out.report.verdict, Verdict::Clean);
        assert_eq!(out.report.items[0].action, Action::Reencoded);
        let file = out.output.unwrap();
        assert_eq!(file.bytes.as_slice(), "一行目\r\n二行目\r\n".as_bytes());
        assert_eq!(file.name, "a.log");
    }

    #[test]
    fn shift_jis_file_is_converted() {
        let text = "①㈱髙橋 様\r\n見積書をお送りします。よろしくお願いいたします。\r\n";
        let out = sanitize_file(&sjis(text), Some("memo.txt"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        let item = &out.report.items[0];
        assert_eq!(item.action, Action::Converted);
        assert_eq!(
            item.detail.as_ref().unwrap()["charset"],
            serde_json::json!("Shift_JIS")
        );
        let file = out.output.unwrap();
        assert_eq!(std::str::from_utf8(file.bytes.as_slice()).unwrap(), text);
        assert_eq!(file.mime, "text/plain; charset=utf-8");
    }

    #[test]
    fn rtlo_in_text_is_removed_and_reported() {
        let out = sanitize_file(
            "請求書\u{202E}fdp.exe を開いてください\n".as_bytes(),
            Some("a.txt"),
            &Policy::default(),
        );
        assert!(out.report.threats().contains(&threats::TEXT_BIDI_CONTROL));
        let body = out.output.unwrap().bytes.into_vec();
        assert!(!String::from_utf8(body).unwrap().contains('\u{202E}'));
    }

    #[test]
    fn csv_by_name_gets_formulas_neutralised_and_a_bom() {
        let csv = sjis("氏名,金額,備考\r\n髙橋,-1200,=HYPERLINK(\"http://x.example/\")\r\n");
        let out = sanitize_file(&csv, Some("list.csv"), &Policy::default());
        assert!(out.report.threats().contains(&threats::CSV_FORMULA));
        let file = out.output.unwrap();
        assert_eq!(file.name, "list.csv");
        assert_eq!(file.mime, "text/csv; charset=utf-8");
        let text = std::str::from_utf8(file.bytes.as_slice()).unwrap();
        assert_eq!(
            text,
            "\u{FEFF}氏名,金額,備考\r\n髙橋,-1200,\"'=HYPERLINK(\"\"http://x.example/\"\")\"\r\n"
        );
        // The same bytes named .txt are text: no neutralising, no BOM.
        let out = sanitize_file(&csv, Some("list.txt"), &Policy::default());
        assert!(!out.report.threats().contains(&threats::CSV_FORMULA));
        assert!(
            !out.output
                .unwrap()
                .bytes
                .as_slice()
                .starts_with(b"\xEF\xBB\xBF")
        );
        // Policy off: kept as typed.
        let mut policy = Policy::default();
        policy.csv.neutralise_formulas = false;
        let out = sanitize_file(&csv, Some("list.csv"), &policy);
        assert!(!out.report.threats().contains(&threats::CSV_FORMULA));
    }

    #[test]
    fn clean_utf8_csv_with_bom_is_kept() {
        let csv = "\u{FEFF}a,b\r\n1,-2\r\n";
        let out = sanitize_file(csv.as_bytes(), Some("x.csv"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Clean);
        assert_eq!(out.output.unwrap().bytes.as_slice(), csv.as_bytes());
    }

    #[test]
    fn decoded_bytes_are_charged() {
        let mut policy = Policy::default();
        policy.limits.max_decoded_bytes = 10;
        let out = sanitize_file(&[b'a'; 100], Some("a.txt"), &policy);
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_DECODED_BYTES));
    }
}
