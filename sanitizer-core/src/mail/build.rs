//! The MIME writer: everything the output message is made of is written here, so the output
//! invariants hold by construction.
//!
//! Invariants of everything this module writes:
//! - every line ends in CRLF; no bare CR or LF (callers hand in text; line breaks are made here);
//! - header lines are folded at 78 octets where there is whitespace to fold at and never exceed
//!   998 octets (a longer token is hard-split);
//! - header values are 7-bit: non-ASCII text becomes RFC 2047 `=?UTF-8?B?...?=` words, file
//!   names RFC 2231 `filename*0*=utf-8''...` continuations;
//! - bodies are base64 or quoted-printable, so no body line is `.` or starts with `From `, and no
//!   multipart boundary (`=_mugai_...`, which neither encoding can produce) can occur in them.

/// Longest header line we aim for (RFC 5322 "SHOULD").
const SOFT_LINE: usize = 78;
/// Hard limit for a line without its CRLF (RFC 5322 "MUST" is 998).
const HARD_LINE: usize = 998;
/// Bytes of UTF-8 per RFC 2047 word (45 bytes → 60 base64 chars; word ≤ 72 chars).
const WORD_BYTES: usize = 45;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the base64 encoding of `input` (no line breaks).
pub(crate) fn base64_into(out: &mut Vec<u8>, input: &[u8]) {
    out.reserve(input.len().div_ceil(3) * 4);
    let sextet = |n: u32, shift: u32| {
        B64.get(((n >> shift) & 0x3F) as usize)
            .copied()
            .unwrap_or(b'A')
    };
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        if let [a, b, d] = *c {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(d);
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
        }
    }
    match *chunks.remainder() {
        [a] => {
            push_sextets(out, u32::from(a) << 16, 2);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            push_sextets(out, (u32::from(a) << 16) | (u32::from(b) << 8), 3);
            out.push(b'=');
        }
        _ => {}
    }
}

fn push_sextets(out: &mut Vec<u8>, n: u32, count: u32) {
    for i in 0..count {
        let idx = (n >> (18 - 6 * i)) & 0x3F;
        out.push(B64.get(idx as usize).copied().unwrap_or(b'A'));
    }
}

/// Base64 string of `input`.
pub(crate) fn base64_string(input: &[u8]) -> String {
    let mut v = Vec::with_capacity(input.len().div_ceil(3) * 4);
    base64_into(&mut v, input);
    String::from_utf8(v).unwrap_or_default()
}

/// Appends `input` as a base64 body: 76-character lines, each ending in CRLF.
pub(crate) fn base64_body(out: &mut Vec<u8>, input: &[u8]) {
    out.reserve(input.len().div_ceil(57) * 78);
    for line in input.chunks(57) {
        base64_into(out, line);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `text` (lines separated by `\n`, no CR) as a quoted-printable body with CRLF line
/// ends and soft breaks at 76 characters. A leading `.` and trailing whitespace are encoded.
pub(crate) fn qp_body(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + text.len() / 8);
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        let mut col = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            if col + 3 > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            let literal = (b == b' ' || b == b'\t' || (33..=126).contains(&b))
                && b != b'='
                && !(last && (b == b' ' || b == b'\t'))
                && !(col == 0 && (b == b'.' || bytes.get(i..).is_some_and(starts_from)));
            if literal {
                out.push(b);
                col += 1;
            } else {
                out.push(b'=');
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 0x0F));
                col += 3;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn starts_from(rest: &[u8]) -> bool {
    rest.starts_with(b"From ")
}

fn hex_digit(n: u8) -> u8 {
    b"0123456789ABCDEF"
        .get(usize::from(n))
        .copied()
        .unwrap_or(b'0')
}

/// Whether `s` is printable ASCII (space allowed) that needs no RFC 2047 encoding.
pub(crate) fn is_plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| (32..=126).contains(&b)) && !s.contains("=?")
}

/// RFC 2047 words for `text` (UTF-8, base64), each ≤ 72 characters, split on character
/// boundaries.
pub(crate) fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0usize;
    let mut end = 0usize;
    for (i, c) in text.char_indices() {
        let next = i + c.len_utf8();
        if next - start > WORD_BYTES && end > start {
            words.push(encoded_word(text.get(start..end).unwrap_or_default()));
            start = end;
        }
        end = next;
    }
    if end > start || words.is_empty() {
        words.push(encoded_word(text.get(start..end).unwrap_or_default()));
    }
    words
}

fn encoded_word(chunk: &str) -> String {
    format!("=?UTF-8?B?{}?=", base64_string(chunk.as_bytes()))
}

/// Writes a header field `name: value`, where `value` is already 7-bit and made of tokens
/// separated by single spaces. Folds at spaces to stay near 78 octets; a token too long for
/// one line is hard-split at 998.
pub(crate) fn write_folded(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    let mut col = name.len() + 1;
    for token in value.split(' ').filter(|t| !t.is_empty()) {
        if col + 1 + token.len() > SOFT_LINE && col > name.len() + 1 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
        out.push(b' ');
        col += 1;
        let mut rest = token;
        while col + rest.len() > HARD_LINE {
            let room = HARD_LINE.saturating_sub(col).max(1);
            // Values are 7-bit by contract; stay on a character boundary anyway.
            let mut cut = room.min(rest.len());
            while cut > 0 && !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == 0 {
                cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
            }
            let Some((head, tail)) = rest.split_at_checked(cut) else {
                break;
            };
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b"\r\n ");
            col = 1;
            rest = tail;
        }
        out.extend_from_slice(rest.as_bytes());
        col += rest.len();
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an unstructured header (Subject, extra headers): plain ASCII folded as is, anything
/// else as RFC 2047 words.
pub(crate) fn write_unstructured(out: &mut Vec<u8>, name: &str, text: &str) {
    let flat = one_line(text);
    // A token too long for one line would need a hard split, which adds a space when
    // unfolded; encoded words can be split anywhere.
    if is_plain_ascii(&flat) && flat.split(' ').all(|t| t.len() < 900) {
        write_folded(out, name, &flat);
    } else {
        write_folded(out, name, &encoded_words(&flat).join(" "));
    }
}

/// Collapses line breaks, tabs and other controls to single spaces and trims.
pub(crate) fn one_line(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() && c != '\u{3000}' {
            space = true;
        } else {
            if space && !s.is_empty() {
                s.push(' ');
            }
            space = false;
            s.push(c);
        }
    }
    s
}

/// `name*0*=utf-8''%E3%81%82...; name*1*=...` (RFC 2231), plus nothing else. Each segment is
/// short enough for its own folded line.
pub(crate) fn rfc2231_params(param: &str, value: &str) -> Vec<String> {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~ ".contains(&b))
        && value.len() < 60
        && !value.starts_with(' ')
    {
        return vec![format!("{param}=\"{value}\"")];
    }
    let mut pct = String::with_capacity(value.len() * 3);
    let mut segments: Vec<String> = Vec::new();
    let mut n = 0usize;
    for c in value.chars() {
        let mut buf = [0u8; 4];
        let enc = c.encode_utf8(&mut buf);
        let mut piece = String::new();
        for b in enc.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                piece.push(char::from(b));
            } else {
                piece.push('%');
                piece.push(char::from(hex_digit(b >> 4)));
                piece.push(char::from(hex_digit(b & 0x0F)));
            }
        }
        if pct.len() + piece.len() > 54 {
            segments.push(segment(param, n, &pct));
            n += 1;
            pct.clear();
        }
        pct.push_str(&piece);
    }
    if !pct.is_empty() || segments.is_empty() {
        segments.push(segment(param, n, &pct));
    }
    segments
}

fn segment(param: &str, n: usize, pct: &str) -> String {
    if n == 0 {
        format!("{param}*0*=utf-8''{pct}")
    } else {
        format!("{param}*{n}*={pct}")
    }
}

/// Writes `Content-Type: mime; params...` or a disposition, one parameter per folded line.
pub(crate) fn write_params(out: &mut Vec<u8>, name: &str, base: &str, params: &[String]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(base.as_bytes());
    for p in params {
        out.extend_from_slice(b";\r\n ");
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The `name="=?UTF-8?B?...?="` parameter many Japanese mail clients read instead of RFC 2231.
/// Kept short enough for one line by truncating the encoded form to whole words.
pub(crate) fn rfc2047_name_param(value: &str) -> String {
    if is_plain_ascii(value) && !value.contains(['"', '\\']) && value.len() < 60 {
        return format!("name=\"{value}\"");
    }
    let words = encoded_words(value);
    let mut joined = String::new();
    for w in words {
        if joined.len() + w.len() > 900 {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(&w);
    }
    format!("name=\"{joined}\"")
}

/// Quotes `s` for a header quoted-string when it is ASCII; `None` when it needs RFC 2047.
pub(crate) fn phrase(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    if is_plain_ascii(s) {
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" !#$%&'*+-/=?^_`{|}~".contains(&b))
        {
            return s.to_owned();
        }
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        return q;
    }
    encoded_words(s).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64_string(b""), "");
        assert_eq!(base64_string(b"f"), "Zg==");
        assert_eq!(base64_string(b"fo"), "Zm8=");
        assert_eq!(base64_string(b"foo"), "Zm9v");
        assert_eq!(base64_string("あ".as_bytes()), "44GC");
    }

    #[test]
    fn folded_lines_stay_short() {
        let mut out = Vec::new();
        let long = "x".repeat(3000);
        write_folded(&mut out, "Received", &format!("from a by b {long} id 1"));
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "{}", line.len());
        }
        assert!(out.ends_with(b"\r\n"));
    }

    #[test]
    fn folding_never_splits_a_character() {
        let mut out = Vec::new();
        write_folded(&mut out, "X", &"あ".repeat(2000));
        assert!(String::from_utf8(out).is_ok());
    }

    #[test]
    fn encoded_words_are_short_and_whole() {
        let words = encoded_words(&"日本語の件名".repeat(20));
        assert!(words.len() > 1);
        assert!(words.iter().all(|w| w.len() <= 75));
    }

    #[test]
    fn qp_escapes_dots_and_from() {
        let mut out = Vec::new();
        qp_body(&mut out, ".\nFrom me\nFriday =1 \n");
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("=2E\r\n=46rom me\r\nFriday =3D1=20\r\n"),
            "{s}"
        );
    }
}
