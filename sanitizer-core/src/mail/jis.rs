//! ISO-2022-JP as mail clients read it (RFC 1468 and the Microsoft CP50220/50221/50222
//! variants), not as the WHATWG decoder does.
//!
//! The WHATWG decoder (encoding_rs) rejects two escape sequences in a row (`ESC ( B ESC $ B`,
//! written by mailers after a half-width katakana run, and met whenever encoded words are joined)
//! and knows neither JIS X 0212 nor SO/SI katakana. Mail clients, Python and nkf accept all of
//! them. This decoder only switches states; the characters themselves are looked up by turning
//! each JIS code into its EUC-JP bytes and letting encoding_rs's EUC-JP decoder read them:
//! - JIS X 0208 row/cell `b1 b2` → `b1|0x80 b2|0x80` (the WHATWG JIS X 0208 index includes NEC
//!   row 13 ①㈱ and the NEC-selected IBM rows 89–92 髙, as CP50220 writes them);
//! - JIS X 0212 (`ESC $ ( D`) → `0x8F b1|0x80 b2|0x80`;
//! - half-width katakana (`ESC ( I`, SO/SI, 8-bit "JIS8" bytes 0xA1–0xDF) → `0x8E b|0x80`.
//!
//! Lenient where clients are: line ends and other controls pass through in any state and keep
//! it (as Python and iconv do; the WHATWG decoder returns to ASCII at a line feed), a message
//! may end in a double-byte state, `ESC & @` (the JIS X 0208-1990 announcer) is ignored, JIS X
//! 0213 plane 1 (`ESC $ ( O|Q`) is read as JIS X 0208 (its superset's common part), 8-bit bytes
//! that form UTF-8 are read as UTF-8 (a footer a list server appended). What cannot be read
//! (an unknown escape, a lone byte of a pair, GB 2312/KS C 5601 of ISO-2022-JP-2, other 8-bit
//! bytes) becomes U+FFFD and marks the result lossy.

use std::borrow::Cow;

use encoding_rs::{EUC_JP, Encoding, ISO_2022_JP};

/// The graphic set in use (G0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Ascii,
    /// JIS X 0201 Roman: ASCII with ¥ and ‾.
    Roman,
    /// JIS X 0201 katakana (half-width).
    Katakana,
    Jis0208,
    Jis0212,
    /// A double-byte set we have no table for: each pair becomes U+FFFD.
    Unsupported,
}

/// Output under construction: EUC-JP bytes waiting to be decoded, and the text so far.
struct Out {
    text: String,
    euc: Vec<u8>,
    lossy: bool,
}

impl Out {
    fn flush(&mut self) {
        if self.euc.is_empty() {
            return;
        }
        let (t, bad) = EUC_JP.decode_without_bom_handling(&self.euc);
        self.text.push_str(&t);
        self.lossy |= bad;
        self.euc.clear();
    }

    fn push(&mut self, c: char) {
        self.flush();
        self.text.push(c);
    }

    fn bad(&mut self) {
        self.push('\u{FFFD}');
        self.lossy = true;
    }

    fn katakana(&mut self, b: u8) {
        // 0x21..=0x5F (7-bit) or 0xA1..=0xDF (8-bit) → U+FF61..=U+FF9F.
        let b = b | 0x80;
        if (0xA1..=0xDF).contains(&b) {
            self.euc.extend_from_slice(&[0x8E, b]);
        } else {
            self.bad();
        }
    }
}

/// The set an escape sequence (the bytes after ESC) selects, and its length without the ESC.
/// `None` for a sequence we do not know. `Some((None, n))`: a sequence to skip.
fn escape(rest: &[u8]) -> Option<(Option<Set>, usize)> {
    Some(match rest {
        [b'(', b'B', ..] => (Some(Set::Ascii), 2),
        [b'(', b'J' | b'H', ..] => (Some(Set::Roman), 2),
        [b'(', b'I', ..] => (Some(Set::Katakana), 2),
        [b'$', b'@' | b'B', ..] => (Some(Set::Jis0208), 2),
        [b'$', b'(', b'@' | b'B' | b'O' | b'Q', ..] => (Some(Set::Jis0208), 3),
        [b'$', b'(', b'D', ..] => (Some(Set::Jis0212), 3),
        [b'$', b'A', ..] => (Some(Set::Unsupported), 2),
        [b'$', b'(', b'C' | b'P', ..] => (Some(Set::Unsupported), 3),
        [b'&', b'@', ..] => (None, 2),
        _ => return None,
    })
}

/// Decodes ISO-2022-JP (any of the variants above) to text; `true` when something could not be
/// read and became U+FFFD.
pub(crate) fn decode(bytes: &[u8]) -> (String, bool) {
    let mut out = Out {
        text: String::with_capacity(bytes.len()),
        euc: Vec::with_capacity(bytes.len()),
        lossy: false,
    };
    let mut set = Set::Ascii;
    // SO (0x0E) shifts to katakana until SI (0x0F), whatever G0 is (CP50222).
    let mut shifted = false;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            0x1B => match escape(bytes.get(i..).unwrap_or_default()) {
                Some((new, len)) => {
                    if let Some(s) = new {
                        set = s;
                        shifted = false;
                    }
                    i += len;
                }
                None => out.bad(),
            },
            0x0E => shifted = true,
            0x0F => shifted = false,
            // 8-bit bytes do not belong in ISO-2022-JP; mailers put two kinds there: UTF-8
            // (a footer added by a list server) and "JIS8" half-width katakana.
            0x80..=0xFF => match utf8_char(bytes.get(i - 1..).unwrap_or_default()) {
                Some((c, len)) => {
                    out.push(c);
                    i += len - 1;
                }
                None if (0xA1..=0xDF).contains(&b) => out.katakana(b),
                None => out.bad(),
            },
            // Controls, space and DEL pass through in every state.
            0x00..=0x20 | 0x7F => out.euc.push(b),
            _ if shifted => out.katakana(b),
            _ => match set {
                Set::Ascii => {
                    // The common case, copied as a run: everything up to the next byte that
                    // can change state or is not ASCII.
                    let run = bytes
                        .get(i - 1..)
                        .unwrap_or_default()
                        .iter()
                        .position(|c| matches!(c, 0x0E | 0x0F | 0x1B | 0x80..=0xFF))
                        .unwrap_or(bytes.len() + 1 - i);
                    out.euc
                        .extend_from_slice(bytes.get(i - 1..i - 1 + run).unwrap_or_default());
                    i += run - 1;
                }
                Set::Roman => match b {
                    b'\\' => out.push('¥'),
                    b'~' => out.push('‾'),
                    _ => out.euc.push(b),
                },
                Set::Katakana => out.katakana(b),
                Set::Jis0208 | Set::Jis0212 | Set::Unsupported => {
                    let Some(&b2) = bytes.get(i).filter(|b2| (0x21..=0x7E).contains(*b2)) else {
                        // A lone byte of a pair; what follows is read on its own.
                        out.bad();
                        continue;
                    };
                    i += 1;
                    match set {
                        Set::Jis0208 => {
                            out.euc.extend_from_slice(&[b | 0x80, b2 | 0x80]);
                            // The rest of a kanji run, pair by pair.
                            while let Some(&[c1, c2]) = bytes.get(i..i + 2)
                                && (0x21..=0x7E).contains(&c1)
                                && (0x21..=0x7E).contains(&c2)
                            {
                                out.euc.extend_from_slice(&[c1 | 0x80, c2 | 0x80]);
                                i += 2;
                            }
                        }
                        Set::Jis0212 => out.euc.extend_from_slice(&[0x8F, b | 0x80, b2 | 0x80]),
                        _ => out.bad(),
                    }
                }
            },
        }
    }
    out.flush();
    (out.text, out.lossy)
}

/// The UTF-8 character that starts `bytes` when it is a multi-byte one, and its length.
fn utf8_char(bytes: &[u8]) -> Option<(char, usize)> {
    let len = match bytes.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(bytes.get(..len)?)
        .ok()?
        .chars()
        .next()?;
    Some((c, len))
}

/// `enc.decode_without_bom_handling(bytes)`, except that ISO-2022-JP goes through [`decode`]:
/// for text files and HTML whose charset was found by label or detection.
pub(crate) fn decode_as<'a>(enc: &'static Encoding, bytes: &'a [u8]) -> (Cow<'a, str>, bool) {
    if enc == ISO_2022_JP {
        let (t, lossy) = decode(bytes);
        return (Cow::Owned(t), lossy);
    }
    enc.decode_without_bom_handling(bytes)
}

#[cfg(test)]
mod tests {
    use super::decode;

    fn ok(bytes: &[u8]) -> String {
        let (t, lossy) = decode(bytes);
        assert!(!lossy, "{bytes:?} -> {t:?}");
        t
    }

    #[test]
    fn escapes_back_to_back_are_valid() {
        // ｶﾞｲﾄﾞﾗｲﾝ, back to ASCII, at once to kanji: encoding_rs gives U+FFFD here.
        let b = b"\x1b(I6^2D^W2]\x1b(B\x1b$B2~Dj\x1b(B";
        assert!(
            encoding_rs::ISO_2022_JP.decode(b).2,
            "the WHATWG decoder rejects this"
        );
        assert_eq!(ok(b), "ｶﾞｲﾄﾞﾗｲﾝ改定");
        // Two words joined: each ends in ASCII, the next starts with an escape.
        assert_eq!(ok(b"\x1b$B2~\x1b(B\x1b(B\x1b$BDj\x1b(B"), "改定");
    }

    #[test]
    fn cp5022x_variants() {
        // NEC row 13 and NEC-selected IBM extensions (CP50220/50221).
        assert_eq!(ok(b"\x1b$B-!-j|b\x1b(B"), "①㈱髙");
        // CP50222: SO/SI katakana inside JIS X 0201 Roman.
        assert_eq!(ok(b"\x1b(J\x0e6@6E\x0fabc\x1b(B"), "ｶﾀｶﾅabc");
        // 8-bit katakana (JIS8), and UTF-8 (a footer a list server added).
        assert_eq!(ok(b"\xb6\xc0"), "ｶﾀ");
        assert_eq!(
            ok("\x1b$BF|K\\\x1b(B\r\n-- \r\n配信停止\r\n".as_bytes()),
            "日本\r\n-- \r\n配信停止\r\n"
        );
        // JIS X 0212 (ISO-2022-JP-1): 丂 is 0x3021 there.
        assert_eq!(ok(b"\x1b$(D0!\x1b(B"), "丂");
        // JIS X 0208-1990 announcer before ESC $ B; ESC $ @ (1978) reads the same.
        assert_eq!(ok(b"\x1b&@\x1b$BF|K\\\x1b(B"), "日本");
        assert_eq!(ok(b"\x1b$@F|K\\"), "日本");
        assert_eq!(ok(b"\x1b(J\\~"), "¥‾");
    }

    #[test]
    fn agrees_with_encoding_rs_where_that_reads_without_error() {
        for text in [
            "",
            "abc",
            "漢字",
            "a漢字b",
            "令和７年度①㈱髙橋様 お世話になっております。\r\nRe: 見積 (2)\r\n",
            "末尾が漢字",
            "¥100 と ～ 〜",
        ] {
            let (bytes, _, _) = encoding_rs::ISO_2022_JP.encode(text);
            let (theirs, errors) = encoding_rs::ISO_2022_JP.decode_without_bom_handling(&bytes);
            assert!(!errors, "{text}");
            assert_eq!(ok(&bytes), theirs, "{text}");
        }
    }

    #[test]
    fn controls_pass_through_and_breakage_is_replaced() {
        assert_eq!(ok(b"\x1b$BF|\r\nK\\\x1b(B"), "日\r\n本");
        let (t, lossy) = decode(b"\x1b$BF|K\x1b(Bx");
        assert!(lossy);
        assert_eq!(t, "日\u{FFFD}x");
        let (t, lossy) = decode(b"a\x1b%Gb\x82");
        assert!(lossy);
        assert_eq!(t, "a\u{FFFD}%Gb\u{FFFD}");
        let (t, lossy) = decode(b"\x1b$AF|");
        assert!(lossy);
        assert_eq!(t, "\u{FFFD}");
    }
}
