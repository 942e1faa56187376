//! RTF: converted to UTF-8 plain text by a small reader of our own. Nothing of the RTF survives:
//! embedded objects (`\object`, `\objdata`: Equation Editor exploits, OLE2Link), pictures,
//! fields' instructions and every ignorable destination are skipped.
//!
//! The reader is a loop over tokens with an explicit group stack (no recursion), bounded by
//! [`MAX_DEPTH`]; its output can only shrink or stay near the input size (every output character
//! comes from at least one input byte, at most 4 UTF-8 bytes from a `\uN` of 3+ bytes).
//!
//! Text bytes (literal characters and `\'hh` escapes) are decoded with the code page in force:
//! the current font's `\fcharsetN` (128 = Shift_JIS) when the font table gave one, else the
//! document's `\ansicpgN` (932 = Shift_JIS), else Windows-1252. `\uN` gives a Unicode character
//! directly and is followed by `\ucN` fallback characters, which are skipped.

use encoding_rs::Encoding;

use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// Deepest group nesting accepted.
pub const MAX_DEPTH: usize = 512;

/// Destinations whose content is not document text.
const SKIP_DESTINATIONS: &[&str] = &[
    "fonttbl",
    "colortbl",
    "stylesheet",
    "info",
    "pict",
    "object",
    "objdata",
    "objclass",
    "objname",
    "result", // object result: usually a picture of the object; its text is kept by fldrslt
    "fldinst",
    "datastore",
    "themedata",
    "colorschememapping",
    "latentstyles",
    "listtable",
    "listoverridetable",
    "rsidtbl",
    "generator",
    "xmlnstbl",
    "filetbl",
    "revtbl",
    "pgptbl",
    "header",
    "headerl",
    "headerr",
    "headerf",
    "footer",
    "footerl",
    "footerr",
    "footerf",
    "footnote",
    "annotation",
    "atnid",
    "atnauthor",
    "bkmkstart",
    "bkmkend",
    "shppict",
    "nonshppict",
    "sp",
    "sn",
    "sv",
    "template",
    "userprops",
    "docvar",
    "mmath",
];

/// Control words that mark an embedded object.
const OBJECT_WORDS: &[&str] = &[
    "object",
    "objdata",
    "objclass",
    "objemb",
    "objlink",
    "objautlink",
    "objocx",
    "objhtml",
];

/// The text of an RTF document and what it contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtfText {
    /// The text, `\n` line ends.
    pub text: String,
    /// An embedded object was present (and dropped).
    pub object: bool,
    /// Pictures dropped.
    pub pictures: usize,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    skip: bool,
    uc: u32,
    font: Option<i32>,
    in_fonttbl: bool,
}

/// Whether a text character is dropped: inside a skipped destination, or one of the `\ucN`
/// fallback characters that follow a `\u` (counted down here).
fn swallowed(skip: bool, skip_chars: &mut u32) -> bool {
    if skip {
        return true;
    }
    if *skip_chars > 0 {
        *skip_chars -= 1;
        return true;
    }
    false
}

/// RTF numbers are signed; a negative code page is none.
fn encoding_for_codepage(cp: i32) -> Option<&'static Encoding> {
    u32::try_from(cp)
        .ok()
        .and_then(crate::codepage::encoding_for_codepage)
}

fn codepage_for_charset(charset: i32) -> Option<i32> {
    Some(match charset {
        0 => 1252,
        128 => 932,
        129 => 949,
        134 => 936,
        136 => 950,
        161 => 1253,
        162 => 1254,
        177 => 1255,
        178 => 1256,
        186 => 1257,
        204 => 1251,
        222 => 874,
        238 => 1250,
        _ => return None,
    })
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    out: String,
    pending: Vec<u8>,
    pending_enc: &'static Encoding,
    doc_enc: &'static Encoding,
    fonts: Vec<(i32, &'static Encoding)>,
    fonttbl_font: Option<i32>,
    high_surrogate: Option<u16>,
}

impl Reader<'_> {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let (s, _) = self.pending_enc.decode_without_bom_handling(&self.pending);
            self.out.push_str(&s);
            self.pending.clear();
        }
    }

    fn encoding_for(&self, g: &Group) -> &'static Encoding {
        g.font
            .and_then(|f| self.fonts.iter().find(|(n, _)| *n == f).map(|(_, e)| *e))
            .unwrap_or(self.doc_enc)
    }

    fn push_byte(&mut self, b: u8, enc: &'static Encoding) {
        if enc != self.pending_enc {
            self.flush();
            self.pending_enc = enc;
        }
        self.pending.push(b);
    }

    fn push_char(&mut self, c: char) {
        self.flush();
        self.out.push(c);
    }

    fn push_unicode(&mut self, n: i32) {
        let unit = (n.rem_euclid(65536)) as u16;
        if (0xD800..0xDC00).contains(&unit) {
            self.flush();
            self.high_surrogate = Some(unit);
            return;
        }
        let c = match self.high_surrogate.take() {
            Some(hi) if (0xDC00..0xE000).contains(&unit) => {
                char::decode_utf16([hi, unit]).next().and_then(Result::ok)
            }
            _ => char::from_u32(u32::from(unit)),
        };
        self.push_char(c.unwrap_or('\u{FFFD}'));
    }

    /// Reads a control word's letters and optional numeric parameter at `pos` (after `\`).
    fn control_word(&mut self) -> (String, Option<i32>) {
        let start = self.pos;
        while self
            .input
            .get(self.pos)
            .is_some_and(u8::is_ascii_alphabetic)
            && self.pos - start < 32
        {
            self.pos += 1;
        }
        let word = String::from_utf8_lossy(self.input.get(start..self.pos).unwrap_or_default())
            .into_owned();
        let num_start = self.pos;
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        while self.input.get(self.pos).is_some_and(u8::is_ascii_digit) && self.pos - num_start < 11
        {
            self.pos += 1;
        }
        let param = std::str::from_utf8(self.input.get(num_start..self.pos).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map(|n| n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
        if param.is_none() {
            self.pos = num_start; // a lone '-' is not a parameter
        }
        if self.input.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        (word, param)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Extracts the text of an RTF document.
pub fn rtf_to_text(input: &[u8], cx: &mut Context<'_>) -> Result<RtfText, SanitizeError> {
    let mut r = Reader {
        input,
        pos: 0,
        out: String::new(),
        pending: Vec::new(),
        pending_enc: encoding_rs::WINDOWS_1252,
        doc_enc: encoding_rs::WINDOWS_1252,
        fonts: Vec::new(),
        fonttbl_font: None,
        high_surrogate: None,
    };
    let mut stack: Vec<Group> = Vec::new();
    let mut g = Group {
        skip: false,
        uc: 1,
        font: None,
        in_fonttbl: false,
    };
    let mut object = false;
    let mut pictures = 0usize;
    // Fallback characters still to skip after a \uN.
    let mut skip_chars: u32 = 0;
    // The next control word starts an ignorable destination (`\*`).
    let mut star = false;
    // First token after `{`: a destination word applies to the whole group.
    let mut group_start = false;
    let mut steps: u32 = 0;

    while let Some(&b) = input.get(r.pos) {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(65_536) {
            cx.budget().check_deadline()?;
        }
        match b {
            b'{' => {
                r.pos += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(SanitizeError::Malformed(format!(
                        "RTF groups nested deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(g);
                group_start = true;
                skip_chars = 0;
                continue;
            }
            b'}' => {
                r.pos += 1;
                let was_fonttbl_entry = g.in_fonttbl;
                match stack.pop() {
                    Some(prev) => g = prev,
                    None => break, // the document's closing brace (or garbage after it)
                }
                if was_fonttbl_entry && !g.in_fonttbl {
                    r.fonttbl_font = None;
                }
                star = false;
                group_start = false;
                skip_chars = 0;
                continue;
            }
            b'\\' => {
                r.pos += 1;
                let Some(&next) = input.get(r.pos) else {
                    break;
                };
                if next.is_ascii_alphabetic() {
                    let (word, param) = r.control_word();
                    let was_star = std::mem::take(&mut star);
                    let at_start = std::mem::take(&mut group_start);
                    if OBJECT_WORDS.contains(&word.as_str()) {
                        object = true;
                    }
                    if word == "pict" {
                        pictures += 1;
                    }
                    if word == "bin" {
                        // Binary data of N bytes follows: skip it unread.
                        let n = usize::try_from(param.unwrap_or(0).max(0)).unwrap_or(0);
                        r.pos = r.pos.saturating_add(n).min(input.len());
                        continue;
                    }
                    if word == "fonttbl" {
                        g.in_fonttbl = true;
                        g.skip = true;
                        continue;
                    }
                    if g.in_fonttbl {
                        match (word.as_str(), param) {
                            ("f", Some(n)) => r.fonttbl_font = Some(n),
                            ("fcharset", Some(cs)) => {
                                if let (Some(f), Some(enc)) = (
                                    r.fonttbl_font,
                                    codepage_for_charset(cs).and_then(encoding_for_codepage),
                                ) && r.fonts.len() < 4096
                                {
                                    r.fonts.push((f, enc));
                                }
                            }
                            _ => {}
                        }
                        continue;
                    }
                    if (was_star && at_start) || SKIP_DESTINATIONS.contains(&word.as_str()) {
                        g.skip = true;
                        continue;
                    }
                    if g.skip {
                        continue;
                    }
                    if skip_chars > 0 {
                        skip_chars -= 1;
                        // A fallback control word counts as one character.
                        if !matches!(word.as_str(), "par" | "line" | "tab") {
                            continue;
                        }
                    }
                    match (word.as_str(), param) {
                        ("ansicpg", Some(cp)) => {
                            if let Some(enc) = encoding_for_codepage(cp) {
                                r.doc_enc = enc;
                            }
                        }
                        ("uc", Some(n)) => g.uc = u32::try_from(n.clamp(0, 16)).unwrap_or(1),
                        ("u", Some(n)) => {
                            r.push_unicode(n);
                            skip_chars = g.uc;
                        }
                        ("f", Some(n)) => g.font = Some(n),
                        ("deff", Some(n)) if g.font.is_none() => g.font = Some(n),
                        ("plain", _) => {}
                        ("par" | "line" | "sect" | "page" | "row", _) => r.push_char('\n'),
                        ("tab" | "cell", _) => r.push_char('\t'),
                        ("emdash", _) => r.push_char('—'),
                        ("endash", _) => r.push_char('–'),
                        ("bullet", _) => r.push_char('•'),
                        ("lquote", _) => r.push_char('‘'),
                        ("rquote", _) => r.push_char('’'),
                        ("ldblquote", _) => r.push_char('“'),
                        ("rdblquote", _) => r.push_char('”'),
                        ("emspace" | "enspace" | "qmspace", _) => r.push_char(' '),
                        _ => {}
                    }
                    continue;
                }
                // Control symbols.
                r.pos += 1;
                match next {
                    b'*' => {
                        star = true;
                        continue;
                    }
                    b'\'' => {
                        let hi = input.get(r.pos).copied().and_then(hex_val);
                        let lo = input.get(r.pos + 1).copied().and_then(hex_val);
                        r.pos = (r.pos + 2).min(input.len());
                        group_start = false;
                        if swallowed(g.skip, &mut skip_chars) {
                            continue;
                        }
                        if let (Some(hi), Some(lo)) = (hi, lo) {
                            let enc = r.encoding_for(&g);
                            r.push_byte(hi << 4 | lo, enc);
                        }
                        continue;
                    }
                    _ => {}
                }
                group_start = false;
                if swallowed(g.skip, &mut skip_chars) {
                    continue;
                }
                match next {
                    b'\\' | b'{' | b'}' => {
                        let enc = r.encoding_for(&g);
                        r.push_byte(next, enc);
                    }
                    b'~' => r.push_char('\u{00A0}'),
                    b'_' => r.push_char('-'),
                    b'\n' | b'\r' => r.push_char('\n'),
                    _ => {} // \- optional hyphen, \| \: and unknown symbols
                }
            }
            b'\r' | b'\n' => r.pos += 1,
            _ => {
                r.pos += 1;
                group_start = false;
                if swallowed(g.skip, &mut skip_chars) {
                    continue;
                }
                let enc = r.encoding_for(&g);
                r.push_byte(b, enc);
            }
        }
    }
    r.flush();
    Ok(RtfText {
        text: r.out,
        object,
        pictures,
    })
}

/// RTF documents become UTF-8 text files.
#[derive(Debug, Clone, Copy)]
pub struct RtfSanitizer;

impl FormatSanitizer for RtfSanitizer {
    fn name(&self) -> &'static str {
        "rtf"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        if !input.starts_with(b"{\\rt") {
            return Err(SanitizeError::Malformed("not an RTF document".into()));
        }
        cx.budget().check_deadline()?;
        let rtf = rtf_to_text(input, cx)?;
        cx.budget().charge_decoded(rtf.text.len() as u64)?;
        let cleaned = super::text::clean(&rtf.text);
        let mut found = Vec::new();
        if rtf.object {
            found.push(threats::RTF_OBJECT);
        }
        if cleaned.bidi {
            found.push(threats::TEXT_BIDI_CONTROL);
        }
        let mut reason = "RTF converted to plain text".to_owned();
        if rtf.object {
            reason.push_str("; embedded object removed");
        }
        if rtf.pictures > 0 {
            reason.push_str(&format!("; {} picture(s) not kept", rtf.pictures));
        }
        let mut detail = serde_json::Map::new();
        detail.insert("converted_to".into(), "txt".into());
        detail.insert("pictures_dropped".into(), rtf.pictures.into());
        Ok(Rebuilt::new(
            cleaned.text.into_bytes(),
            Action::ConvertedToText,
            Kind::Text,
            "text/plain; charset=utf-8",
        )
        .with_extension("txt")
        .with_threats(found)
        .with_reason(reason)
        .with_detail(serde_json::Value::Object(detail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::sanitize_file;

    fn text_of(rtf: &[u8]) -> (String, Vec<String>) {
        let out = sanitize_file(rtf, Some("doc.rtf"), &Policy::default());
        let threats = out.report.threats().iter().map(|s| s.to_string()).collect();
        let file = out.output.unwrap();
        assert_eq!(file.name, "doc.txt");
        (String::from_utf8(file.bytes.into_vec()).unwrap(), threats)
    }

    #[test]
    fn japanese_via_ansicpg932_and_fcharset128() {
        // 見積書 in Shift_JIS: 8C A9 90 CF 8F 91.
        let rtf = br"{\rtf1\ansi\ansicpg932\deff0{\fonttbl{\f0\fnil\fcharset128 MS Mincho;}}
{\f0 \'8c\'a9\'90\'cf\'8f\'91\par
Total: 100\par}}";
        let (text, threats) = text_of(rtf);
        assert_eq!(text, "見積書\r\nTotal: 100\r\n");
        assert!(threats.is_empty());
    }

    #[test]
    fn font_charset_wins_over_document_codepage() {
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}{\f1\fcharset128 MS Gothic;}}\f1 \'93\'fa\'96\'7b\f0  caf\'e9}";
        let (text, _) = text_of(rtf);
        assert_eq!(text, "日本 café");
    }

    #[test]
    fn unicode_escapes_skip_fallbacks() {
        let rtf = br"{\rtf1\uc1 \u26085?\u26412?\uc2 \u-3913\'81\'40 end\uc1 \u55357?\u56832?}";
        let (text, _) = text_of(rtf);
        // U+F0B7 (private use, from -3913) then its two fallback bytes are skipped.
        assert_eq!(text, "日本\u{F0B7} end😀");
    }

    #[test]
    fn objects_and_ignorable_destinations_are_dropped() {
        let rtf = br#"{\rtf1\ansi Before {\object\objemb{\*\objclass Equation.3}{\*\objdata 01050000020000000b0000004571756174696f6e2e3300}{\result {\pict\wmetafile8 0100}}} After{\*\generator Evil;}{\field{\*\fldinst HYPERLINK ""http://evil.example/""}{\fldrslt link text}}\bin4 ABCD end}"#;
        let (text, threats) = text_of(rtf);
        assert_eq!(text, "Before  Afterlink text end");
        assert!(threats.contains(&threats::RTF_OBJECT.to_owned()));
        assert!(!text.contains("Equation") && !text.contains("0105"));
    }

    #[test]
    fn escaped_braces_and_specials() {
        let (text, _) = text_of(br"{\rtf1 a\{b\}c\\d\tab e\~f\emdash g}");
        assert_eq!(text, "a{b}c\\d\te\u{00A0}f—g");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut rtf = b"{\\rtf1 ".to_vec();
        rtf.extend(std::iter::repeat_n(b'{', 100_000));
        let out = sanitize_file(&rtf, Some("deep.rtf"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::PARSE_FAILED));
    }

    #[test]
    fn rtlo_is_removed() {
        let (text, threats) = text_of(br"{\rtf1 invoice\u8238?fdp.exe}");
        assert_eq!(text, "invoicefdp.exe");
        assert!(threats.contains(&threats::TEXT_BIDI_CONTROL.to_owned()));
    }
}
