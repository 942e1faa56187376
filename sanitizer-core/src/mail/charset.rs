//! Character sets and transfer encodings of untrusted mail, decoded to UTF-8 without 文字化け.
//!
//! The decoders are encoding_rs's (WHATWG), except for ISO-2022-JP, which is read as mail
//! clients read it (RFC 1468 and CP50220/50221/50222, see `jis`): NEC row 13 and NEC-selected
//! IBM extensions (①, ㈱, 髙), half-width katakana (`ESC ( I`, SO/SI), JIS X 0212, escapes back
//! to back. The Shift_JIS decoder is Windows-31J (CP932) with both extension sets. Labels that
//! encoding_rs and mail-parser do not know (`cp932`, `cp50220`, `iso-2022-jp-ms`,
//! `eucjp-ms`, ...) are mapped to those decoders here; UTF-7 uses mail-parser's decoder; an
//! unknown, missing or lying label (`us-ascii` with 8-bit bytes) is guessed with chardetng.
//! A Japanese label that does not fit the bytes (`iso-2022-jp` on Shift_JIS, `shift_jis` on
//! UTF-8) loses to what decodes cleanly, and the result says so ([`Decoded::mislabelled`]).
//! Undecodable bytes become U+FFFD, never raw bytes.

use std::borrow::Cow;

use encoding_rs::{EUC_JP, Encoding, ISO_2022_JP, SHIFT_JIS, UTF_8};

use super::jis;

/// How a label is decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// A WHATWG encoding.
    Whatwg(&'static Encoding),
    /// ISO-2022-JP and its variants, by our own decoder (`jis`).
    Iso2022Jp,
    /// A decoder only mail-parser has (UTF-7, a few legacy code pages).
    MailParser(mail_parser::decoders::charsets::DecoderFnc),
    /// No usable label: ASCII/UTF-8 if valid, else a chardetng guess.
    Guess,
}

/// Lower-cases and trims a charset label (`"Shift_JIS"` → `shift_jis`), dropping an RFC 2231
/// language suffix (`iso-2022-jp*ja`).
fn normalize(label: &str) -> String {
    let l = label.trim().trim_matches(['"', '\'']).trim();
    let l = l.split('*').next().unwrap_or_default();
    l.to_ascii_lowercase()
}

/// The decoding plan for a declared charset label.
pub(crate) fn plan(label: Option<&str>) -> Plan {
    let Some(label) = label else {
        return Plan::Guess;
    };
    let l = normalize(label);
    let japanese = match l.as_str() {
        "" | "us-ascii" | "ascii" | "us_ascii" | "ansi_x3.4-1968" | "unknown-8bit"
        | "x-unknown" | "unknown" | "default" | "8bit" | "binary" => return Plan::Guess,
        "iso-2022-jp"
        | "csiso2022jp"
        | "cp50220"
        | "cp50221"
        | "cp50222"
        | "iso-2022-jp-ms"
        | "iso-2022-jp-1"
        | "iso-2022-jp-2"
        | "iso-2022-jp-3"
        | "iso-2022-jp-2004"
        | "x-windows-iso2022jp"
        | "jis"
        | "iso2022jp"
        | "csiso2022jp2"
        | "x-cp50220"
        | "x-cp50221"
        | "x-cp50222"
        | "iso-2022-jp-ext" => Some(ISO_2022_JP),
        "shift_jis" | "shift-jis" | "sjis" | "cp932" | "x-cp932" | "ms932" | "ms_kanji"
        | "windows-31j" | "windows-932" | "x-sjis" | "sjis-open" | "sjis-win" | "csshiftjis"
        | "shift_jisx0213" | "shift_jis-2004" | "x-ms-cp932" | "ibm-943" | "ibm943"
        | "cswindows31j" | "shiftjis" => Some(SHIFT_JIS),
        "euc-jp"
        | "eucjp"
        | "euc_jp"
        | "x-euc-jp"
        | "eucjp-ms"
        | "eucjp-win"
        | "x-eucjp-open"
        | "euc-jis-2004"
        | "euc-jisx0213"
        | "cseucpkdfmtjapanese"
        | "eucjp-open"
        | "ujis"
        | "x-euc" => Some(EUC_JP),
        _ => None,
    };
    if let Some(enc) = japanese {
        if enc == ISO_2022_JP {
            return Plan::Iso2022Jp;
        }
        return Plan::Whatwg(enc);
    }
    if let Some(enc) = Encoding::for_label(l.as_bytes()) {
        if enc == ISO_2022_JP {
            return Plan::Iso2022Jp;
        }
        // The WHATWG "replacement" encoding (ISO-2022-KR, HZ, ...) would turn the whole part into
        // one U+FFFD: guess instead.
        if enc.name() != "replacement" {
            return Plan::Whatwg(enc);
        }
        return Plan::Guess;
    }
    match mail_parser::decoders::charsets::map::charset_decoder(l.as_bytes()) {
        Some(f) => Plan::MailParser(f),
        None => Plan::Guess,
    }
}

/// Decoded text and whether any bytes could not be decoded (replaced by U+FFFD).
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    /// The text.
    pub text: Cow<'a, str>,
    /// Some bytes were invalid in the charset.
    pub lossy: bool,
    /// The declared Japanese charset did not fit and the text was decoded as this one instead.
    pub mislabelled: Option<&'static str>,
}

impl<'a> Decoded<'a> {
    fn new(text: Cow<'a, str>, lossy: bool) -> Self {
        Decoded {
            text,
            lossy,
            mislabelled: None,
        }
    }

    /// Lost bytes (U+FFFD) or landed in the private-use area (how a wrong legacy charset
    /// reads many byte pairs).
    fn is_clean(&self) -> bool {
        !self.lossy && !self.text.contains(['\u{FFFD}', '\u{1B}']) && !has_private_use(&self.text)
    }
}

/// Decodes `bytes` declared as `label`.
pub(crate) fn decode<'a>(bytes: &'a [u8], label: Option<&str>) -> Decoded<'a> {
    match plan(label) {
        Plan::Whatwg(enc) if enc == UTF_8 => {
            // Mislabelled mail is common (Latin-1 or Shift_JIS sent as "utf-8"): when the
            // label does not fit and a guess decodes without any error, the guess wins.
            // Only when almost nothing decoded as UTF-8: "café\xff" stays UTF-8 with one
            // U+FFFD rather than becoming windows-1252 mojibake.
            let d = whatwg(enc, bytes);
            let (valid, invalid) = d.text.chars().fold((0usize, 0usize), |(v, i), c| match c {
                '\u{FFFD}' => (v, i + 1),
                c if !c.is_ascii() => (v + 1, i),
                _ => (v, i),
            });
            if d.lossy && valid * 4 < invalid {
                let g = guess(bytes);
                if !g.text.contains('\u{FFFD}') && !has_private_use(&g.text) {
                    return g;
                }
            }
            d
        }
        Plan::Whatwg(enc) if enc == SHIFT_JIS || enc == EUC_JP => {
            japanese(bytes, Plan::Whatwg(enc))
        }
        Plan::Iso2022Jp => japanese(bytes, Plan::Iso2022Jp),
        Plan::Whatwg(enc) => whatwg(enc, bytes),
        Plan::MailParser(f) => {
            let text = f(bytes);
            let lossy = text.contains('\u{FFFD}');
            Decoded::new(Cow::Owned(text), lossy)
        }
        Plan::Guess => guess(bytes),
    }
}

/// A declared Japanese legacy charset (ISO-2022-JP, Shift_JIS, EUC-JP) checked against the
/// bytes, as Japanese clients do when they "auto-detect": valid UTF-8 with multi-byte sequences
/// is UTF-8 (no legacy Japanese text of any length is also valid UTF-8, while UTF-8 read as
/// Shift_JIS often decodes "cleanly" into 縺ゅ mojibake); 8-bit bytes under the 7-bit
/// ISO-2022-JP, or bytes the declared charset cannot read, are decoded as what chardetng finds
/// when that decodes cleanly. Anything else keeps the declared charset (and its U+FFFD).
fn japanese(bytes: &[u8], declared: Plan) -> Decoded<'_> {
    let is_jis = matches!(declared, Plan::Iso2022Jp);
    // Escape sequences decide: ISO-2022-JP, with any 8-bit UTF-8 in it (a list footer) read
    // as UTF-8 by the decoder.
    if (bytes.is_ascii() && is_jis) || has_iso2022jp_escape(bytes) {
        let mut d = iso2022jp(bytes);
        if !is_jis {
            d.mislabelled = Some("ISO-2022-JP");
        }
        return d;
    }
    if bytes.is_ascii() {
        return whatwg(UTF_8, bytes);
    }
    if std::str::from_utf8(bytes).is_ok() {
        let mut d = whatwg(UTF_8, bytes);
        d.mislabelled = Some("UTF-8");
        return d;
    }
    let primary = match declared {
        Plan::Whatwg(enc) => whatwg(enc, bytes),
        _ => iso2022jp(bytes),
    };
    // 8-bit bytes in ISO-2022-JP are half-width katakana at best ("JIS8"); another charset
    // that reads them without error is far more likely. Only Japanese charsets are candidates
    // (a single-byte Western charset reads anything "cleanly"); chardetng's choice first, as it
    // tells Shift_JIS from EUC-JP (each often reads the other without error).
    let suspicious = matches!(declared, Plan::Iso2022Jp) || !primary.is_clean();
    if suspicious {
        let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        det.feed(bytes, true);
        let first = det.guess(Some(b"jp"), chardetng::Utf8Detection::Deny);
        for enc in [first, SHIFT_JIS, EUC_JP] {
            if (enc != SHIFT_JIS && enc != EUC_JP)
                || matches!(declared, Plan::Whatwg(d) if d == enc)
            {
                continue;
            }
            let mut d = whatwg(enc, bytes);
            if d.is_clean() {
                d.mislabelled = Some(enc.name());
                return d;
            }
        }
    }
    primary
}

fn whatwg<'a>(enc: &'static Encoding, bytes: &'a [u8]) -> Decoded<'a> {
    if enc == ISO_2022_JP {
        return iso2022jp(bytes);
    }
    let (text, _, lossy) = enc.decode(bytes);
    Decoded::new(text, lossy)
}

fn iso2022jp(bytes: &[u8]) -> Decoded<'static> {
    let (text, lossy) = jis::decode(bytes);
    Decoded::new(Cow::Owned(text), lossy)
}

/// No trustworthy label: ISO-2022-JP when its escapes are present, UTF-8 when valid, else
/// chardetng's guess (Japanese mail: Shift_JIS or EUC-JP most of the time).
pub(crate) fn guess(bytes: &[u8]) -> Decoded<'_> {
    if has_iso2022jp_escape(bytes) {
        let d = iso2022jp(bytes);
        if bytes.is_ascii() || d.is_clean() {
            return d;
        }
    }
    if bytes.is_ascii() {
        return Decoded::new(
            Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
            false,
        );
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Decoded::new(Cow::Borrowed(s), false);
    }
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    det.feed(bytes, true);
    // A Japanese gateway: first the guess for a `.jp` context, then the neutral one. A guess
    // whose decoding has errors or lands in the private-use area (Shift_JIS user-defined
    // rows, which is how Latin-1 "Fr\xf6sche" reads as Shift_JIS) loses to one without.
    let jp = det.guess(Some(b"jp"), chardetng::Utf8Detection::Allow);
    let neutral = det.guess(None, chardetng::Utf8Detection::Allow);
    let mut best: Option<(usize, Decoded<'_>)> = None;
    for enc in [jp, neutral] {
        let enc = if enc == UTF_8 { SHIFT_JIS } else { enc };
        let d = whatwg(enc, bytes);
        let bad = d
            .text
            .chars()
            .filter(|c| *c == '\u{FFFD}' || ('\u{E000}'..='\u{F8FF}').contains(c))
            .count();
        if bad == 0 {
            return d;
        }
        if best.as_ref().is_none_or(|(b, _)| bad < *b) {
            best = Some((bad, d));
        }
    }
    match best {
        Some((_, d)) => d,
        None => whatwg(SHIFT_JIS, bytes),
    }
}

fn has_private_use(s: &str) -> bool {
    s.chars().any(|c| ('\u{E000}'..='\u{F8FF}').contains(&c))
}

fn has_iso2022jp_escape(b: &[u8]) -> bool {
    b.windows(3).any(|w| {
        matches!(
            w,
            [0x1B, b'$', b'B' | b'@' | b'('] | [0x1B, b'(', b'I' | b'J']
        )
    })
}

/// Lenient base64: skips anything outside the alphabet, stops at padding.
pub(crate) fn base64_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u32;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            // Padding ends the data; anything after it is trailing garbage.
            b'=' if n != 1 => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lenient quoted-printable (RFC 2045 body form): a broken escape is kept literally.
pub(crate) fn qp_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0usize;
    while let Some(&c) = input.get(i) {
        if c == b'=' {
            let a = input.get(i + 1).copied();
            let b = input.get(i + 2).copied();
            match (a, b) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(x), Some(y)) => {
                    if let (Some(h), Some(l)) = (hex_val(x), hex_val(y)) {
                        out.push((h << 4) | l);
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
            // "=  \r\n": a soft break with trailing whitespace.
            let rest = input.get(i + 1..).unwrap_or_default();
            let ws = rest
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            if ws > 0 && matches!(rest.get(ws), Some(b'\r' | b'\n')) {
                i += 1 + ws;
                if input.get(i) == Some(&b'\r') {
                    i += 1;
                }
                if input.get(i) == Some(&b'\n') {
                    i += 1;
                }
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// RFC 2047 `Q` encoding: like quoted-printable, `_` is a space.
pub(crate) fn q_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0usize;
    while let Some(&c) = input.get(i) {
        match c {
            b'_' => out.push(b' '),
            b'=' => {
                if let (Some(h), Some(l)) = (
                    input.get(i + 1).copied().and_then(hex_val),
                    input.get(i + 2).copied().and_then(hex_val),
                ) {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Decodes an unstructured header value (raw bytes, possibly folded) as Japanese clients show
/// it: RFC 2047 words in any charset, anywhere (also inside quoted strings and without white
/// space around them), raw 8-bit or ISO-2022-JP text by guess.
///
/// Adjacent encoded words of the same charset (white space between them is dropped, RFC 2047
/// §6.2) are joined as *bytes* before decoding: mailers cut long Subjects at a fixed byte
/// length, so one word may end inside a character (or inside an ISO-2022-JP double-byte run)
/// that the next word continues. Words of different charsets are decoded apart. An encoded
/// word folded in its middle is read with the folding white space removed.
pub(crate) fn decode_header(raw: &[u8]) -> String {
    // Unfold: line breaks go; the white space after a break stays but is remembered, so that a
    // word folded inside its encoded text can still be read.
    let mut s: Vec<u8> = Vec::with_capacity(raw.len());
    let mut fold_ws: Vec<bool> = Vec::with_capacity(raw.len());
    let mut after_break = false;
    for &b in raw {
        match b {
            b'\r' | b'\n' => after_break = true,
            b' ' | b'\t' if after_break => {
                s.push(b);
                fold_ws.push(true);
            }
            _ => {
                after_break = false;
                s.push(b);
                fold_ws.push(false);
            }
        }
    }
    let s = &s[..];
    let mut out = String::with_capacity(s.len());
    let mut literal_start = 0usize;
    let mut i = 0usize;
    // Pending run of encoded words of the same charset: (decoder key, label, joined bytes).
    let mut pending: Option<(&'static str, String, Vec<u8>)> = None;
    fn flush(pending: &mut Option<(&'static str, String, Vec<u8>)>, out: &mut String) {
        if let Some((_, cs, acc)) = pending.take() {
            out.push_str(&decode(&acc, Some(&cs)).text);
        }
    }
    let mut closes = CloseFinder::default();
    while i < s.len() {
        if let Some((charset, bytes, end)) = parse_word(s, i, &mut closes, &fold_ws) {
            let between = s.get(literal_start..i).unwrap_or_default();
            let only_ws = between.iter().all(|b| *b == b' ' || *b == b'\t');
            let key = decoder_key(&charset);
            match &mut pending {
                Some((k, cs, acc)) if only_ws && *k == key && (key != "?" || *cs == charset) => {
                    acc.extend_from_slice(&bytes);
                }
                _ => {
                    // White space between two encoded words is dropped; before the first one
                    // it is text.
                    let first = pending.is_none();
                    flush(&mut pending, &mut out);
                    if !only_ws || first {
                        out.push_str(&guess(between).text);
                    }
                    pending = Some((key, charset, bytes));
                }
            }
            i = end;
            literal_start = end;
        } else {
            i += 1;
        }
    }
    flush(&mut pending, &mut out);
    out.push_str(&guess(s.get(literal_start..).unwrap_or_default()).text);
    out
}

/// Which decoder a label selects, so that aliases (`Shift_JIS`, `cp932`) join; `"?"` for
/// labels that only the label itself identifies.
fn decoder_key(label: &str) -> &'static str {
    match plan(Some(label)) {
        Plan::Whatwg(enc) => enc.name(),
        Plan::Iso2022Jp => "ISO-2022-JP",
        Plan::MailParser(_) | Plan::Guess => "?",
    }
}

/// Finds the next `?=` at or after a position that only grows, scanning each byte at most
/// once overall: a header full of unclosed `=?` starts must not cost a scan to its end for
/// every start (quadratic).
#[derive(Default)]
struct CloseFinder {
    /// Searched from here...
    from: usize,
    /// ...and found here (`None`: no `?=` after `from`).
    found: Option<usize>,
    /// Whether `from`/`found` hold a result.
    valid: bool,
}

impl CloseFinder {
    fn next(&mut self, s: &[u8], at: usize) -> Option<usize> {
        if self.valid && self.from <= at {
            match self.found {
                Some(c) if c >= at => return Some(c),
                None => return None,
                Some(_) => {}
            }
        }
        let found = s
            .get(at..)
            .and_then(|r| r.windows(2).position(|w| w == b"?="))
            .map(|p| at + p);
        self.from = at;
        self.found = found;
        self.valid = true;
        found
    }
}

/// Longest encoded-text we accept in one word (RFC 2047 allows 75 characters per word; broken
/// mailers write longer ones).
const MAX_WORD: usize = 4096;

/// Parses `=?charset?B|Q?text?=` at `at`: (charset, decoded bytes, end offset). White space
/// inside the text is allowed only where `fold_ws` says a fold put it (and is removed).
fn parse_word(
    s: &[u8],
    at: usize,
    closes: &mut CloseFinder,
    fold_ws: &[bool],
) -> Option<(String, Vec<u8>, usize)> {
    let rest = s.get(at..)?;
    if !rest.starts_with(b"=?") {
        return None;
    }
    let body = rest.get(2..)?;
    let q1 = body.iter().take(80).position(|b| *b == b'?')?;
    let charset = body.get(..q1)?;
    let enc = *body.get(q1 + 1)?;
    if body.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let close = closes.next(s, at + 2 + text_start)?;
    let end_rel = close - (at + 2 + text_start);
    if end_rel > MAX_WORD {
        return None;
    }
    let text = body.get(text_start..text_start + end_rel)?;
    if charset.is_empty() {
        return None;
    }
    let abs = at + 2 + text_start;
    let mut unfolded: Option<Vec<u8>> = None;
    for (k, &b) in text.iter().enumerate() {
        if b == b' ' || b == b'\t' {
            if !fold_ws.get(abs + k).copied().unwrap_or(false) {
                return None;
            }
            unfolded.get_or_insert_with(|| text.get(..k).unwrap_or_default().to_vec());
        } else if let Some(u) = unfolded.as_mut() {
            u.push(b);
        }
    }
    let text = unfolded.as_deref().unwrap_or(text);
    let bytes = match enc {
        b'B' | b'b' => base64_decode(text),
        b'Q' | b'q' => q_decode(text),
        _ => return None,
    };
    let cs = normalize(std::str::from_utf8(charset).ok()?);
    Some((cs, bytes, close + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: &'static Encoding, s: &str) -> Vec<u8> {
        let (b, _, errors) = e.encode(s);
        assert!(!errors, "{s} not encodable in {}", e.name());
        b.into_owned()
    }

    const JA: &str = "①㈱髙橋様 見積書をお送りします。ｶﾀｶﾅ";

    #[test]
    fn iso_2022_jp_with_cp5022x_extensions() {
        // encoding_rs encodes NEC row 13 and the NEC-selected IBM rows in ISO-2022-JP exactly as
        // CP50220 does (half-width katakana become full-width there, as in CP50220).
        let no_kana = "①㈱髙橋様 見積書をお送りします。";
        let bytes = enc(ISO_2022_JP, no_kana);
        assert!(bytes.starts_with(b"\x1b$B-!"), "{bytes:?}"); // ① is row 13, 0x2D21
        for label in ["ISO-2022-JP", "cp50220", "CP50221", "iso-2022-jp-ms"] {
            let d = decode(&bytes, Some(label));
            assert_eq!(d.text, no_kana, "{label}");
            assert!(!d.lossy);
        }
        // CP50221 half-width katakana: ESC ( I.
        let kana = b"\x1b(I6@6E\x1b(B";
        assert_eq!(decode(kana, Some("cp50221")).text, "ｶﾀｶﾅ");
        // Unlabelled ISO-2022-JP is recognised by its escapes.
        assert_eq!(decode(&bytes, None).text, no_kana);
    }

    #[test]
    fn independently_produced_bytes() {
        // Python: "①㈱髙".encode("cp932") == 87 40 87 8a ee e0 (髙 as NEC-selected IBM ext).
        assert_eq!(
            decode(b"\x87\x40\x87\x8a\xee\xe0", Some("cp932")).text,
            "①㈱髙"
        );
        // The same characters as CP50220 writes them: NEC row 13 (2D21, 2D6A) and the
        // NEC-selected IBM row 92 (7C62 = SJIS EEE0).
        let jis = b"\x1b$B-!-j|b\x1b(B";
        for label in ["iso-2022-jp", "CP50220", "cp50221"] {
            assert_eq!(decode(jis, Some(label)).text, "①㈱髙", "{label}");
        }
    }

    #[test]
    fn shift_jis_cp932_and_euc_jp() {
        let sjis = enc(SHIFT_JIS, JA);
        for label in ["Shift_JIS", "cp932", "windows-31j", "x-sjis", "MS932"] {
            assert_eq!(decode(&sjis, Some(label)).text, JA, "{label}");
        }
        // Unlabelled or mislabelled as us-ascii: guessed.
        assert_eq!(decode(&sjis, None).text, JA);
        assert_eq!(decode(&sjis, Some("us-ascii")).text, JA);
        let eucjp_text = "髙橋様 見積書をお送りします。よろしくお願いいたします。";
        let euc = enc(EUC_JP, eucjp_text);
        assert_eq!(decode(&euc, Some("EUC-JP")).text, eucjp_text);
        assert_eq!(decode(&euc, Some("x-euc-jp")).text, eucjp_text);
    }

    #[test]
    fn utf7_utf8_latin_and_windows() {
        assert_eq!(
            decode(b"+ZYeB9FH6ckh5Pg-, 1980.", Some("utf-7")).text,
            "文致出版社, 1980."
        );
        assert_eq!(decode("日本".as_bytes(), Some("utf-8")).text, "日本");
        assert_eq!(decode(b"caf\xe9", Some("iso-8859-1")).text, "café");
        assert_eq!(decode(b"\xbf\xe0", Some("iso-8859-5")).text, "Пр");
        assert_eq!(decode(b"\x80", Some("windows-1252")).text, "€");
        assert_eq!(decode(b"\xcf\xf0", Some("windows-1251")).text, "Пр");
    }

    #[test]
    fn mislabelled_utf8_is_rescued_by_a_clean_guess() {
        let d = decode(b"Die Hasen und die Fr\xf6sche", Some("utf-8"));
        assert_eq!(d.text, "Die Hasen und die Frösche");
        let sjis = enc(SHIFT_JIS, JA);
        assert_eq!(decode(&sjis, Some("UTF-8")).text, JA);
        assert_eq!(
            base64_decode(b"ecO2dMOkIHZhYW4uCg== ignored"),
            "yötä vaan.\n".as_bytes()
        );
    }

    #[test]
    fn undecodable_bytes_become_replacement() {
        let mut bytes = "日本語 \u{e9}".as_bytes().to_vec();
        bytes.extend_from_slice(b"\xff\xfe end");
        let d = decode(&bytes, Some("utf-8"));
        assert!(d.lossy);
        assert!(d.text.contains('\u{FFFD}'));
        assert!(d.text.starts_with("日本語 é"));
    }

    #[test]
    fn unlabelled_latin1_is_not_read_as_shift_jis() {
        assert_eq!(
            decode_header(b"Die Hasen und die Fr\xf6sche"),
            "Die Hasen und die Frösche"
        );
        assert_eq!(guess(b"caf\xe9 cr\xe8me").text, "café crème");
    }

    #[test]
    fn unknown_label_is_guessed() {
        let sjis = enc(SHIFT_JIS, JA);
        assert_eq!(decode(&sjis, Some("x-no-such-charset")).text, JA);
    }

    #[test]
    fn rfc2047_words_in_japanese_charsets() {
        let word = |cs: &str, e: &'static Encoding, s: &str| {
            format!(
                "=?{cs}?B?{}?=",
                crate::mail::build::base64_string(&enc(e, s))
            )
        };
        let h = format!(
            "{} {}",
            word("ISO-2022-JP", ISO_2022_JP, "①見積"),
            word("ISO-2022-JP", ISO_2022_JP, "書")
        );
        assert_eq!(decode_header(h.as_bytes()), "①見積書");
        let h = format!("Re: {}", word("Shift_JIS", SHIFT_JIS, "㈱髙橋"));
        assert_eq!(decode_header(h.as_bytes()), "Re: ㈱髙橋");
        // A character split across two words of the same charset survives.
        let bytes = enc(SHIFT_JIS, "髙");
        let (a, b) = bytes.split_at(1);
        let h = format!(
            "=?cp932?B?{}?=\r\n =?cp932?B?{}?=",
            crate::mail::build::base64_string(a),
            crate::mail::build::base64_string(b)
        );
        assert_eq!(decode_header(h.as_bytes()), "髙");
        // Aliases of one decoder join too.
        let h = format!(
            "=?Shift_JIS?B?{}?= =?cp932?B?{}?=",
            crate::mail::build::base64_string(a),
            crate::mail::build::base64_string(b)
        );
        assert_eq!(decode_header(h.as_bytes()), "髙");
        assert_eq!(
            decode_header(b"=?utf-8?q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        // Raw 8-bit Shift_JIS in a header.
        assert_eq!(decode_header(&enc(SHIFT_JIS, "件名です")), "件名です");
    }

    #[test]
    fn encoded_words_whose_charset_label_lies() {
        // Shift_JIS bytes in words labelled ISO-2022-JP (old Windows mailers), UTF-8 in words
        // labelled Shift_JIS: read as what decodes cleanly, cut inside a character or not.
        let sjis = enc(SHIFT_JIS, "①㈱髙橋様の見積書");
        let (a, b) = sjis.split_at(5);
        let h = format!(
            "=?ISO-2022-JP?B?{}?= =?ISO-2022-JP?B?{}?=",
            crate::mail::build::base64_string(a),
            crate::mail::build::base64_string(b)
        );
        assert_eq!(decode_header(h.as_bytes()), "①㈱髙橋様の見積書");
        let h = format!(
            "=?Shift_JIS?B?{}?=",
            crate::mail::build::base64_string("見積書の送付について".as_bytes())
        );
        assert_eq!(decode_header(h.as_bytes()), "見積書の送付について");
    }

    #[test]
    fn unclosed_words_do_not_go_quadratic() {
        let h = "=?utf-8?b?QUFB".repeat(200_000); // 2.8 MB, no closing ?=
        let started = std::time::Instant::now();
        let out = decode_header(h.as_bytes());
        assert_eq!(out.len(), h.len());
        assert!(
            started.elapsed().as_secs() < 10,
            "took {:?}",
            started.elapsed()
        );
        let ok = format!("{} =?utf-8?q?end?=", "=?x?q?a".repeat(1000));
        assert!(decode_header(ok.as_bytes()).ends_with("end"));
    }

    #[test]
    fn transfer_decoders_are_lenient() {
        assert_eq!(base64_decode(b"44GC\r\n44GE=\n"), "あい".as_bytes());
        assert_eq!(base64_decode(b"Zm9v!!YmFy"), b"foobar");
        assert_eq!(qp_decode(b"a=3Db=\r\nc=ZZ"), b"a=bc=ZZ");
        assert_eq!(q_decode(b"a_b=41"), b"a bA");
    }
}
