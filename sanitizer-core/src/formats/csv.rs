//! CSV formula neutralisation ("CSV injection"), used by the text sanitizer for parts named
//! `.csv`/`.tsv` (CSV sniffs as text; see [`text`](super::text)).
//!
//! A spreadsheet runs a cell as a formula when it starts with `=`, `+`, `-` or `@` (and, in some
//! versions, after a leading tab or CR). `=HYPERLINK(...)` phishes, `=cmd|' /C calc'!A0` is DDE.
//! Such cells get a leading `'`, which makes Excel and LibreOffice show the text as typed.
//!
//! The rule, per field (after RFC 4180 unquoting, ignoring leading spaces):
//! - a field that starts with `=`, `+`, `-`, `@`, tab or CR is neutralised,
//! - **except** a plain number: optional sign, digits with optional `,` thousands separators, an
//!   optional decimal part and exponent (`-1`, `+81`, `-1,234.5`, `1e-3`). Numbers cannot run
//!   anything, and negative amounts are everyday data in municipal spreadsheets.
//!
//! Fields are parsed properly (quotes, doubled quotes, delimiters and line breaks inside quotes).
//! Only when a cell is neutralised is the text rewritten: untouched fields keep their bytes;
//! a rewritten field is re-quoted.

use std::borrow::Cow;

/// The neutralised text and how many cells were changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neutralised<'a> {
    /// The CSV text (borrowed when nothing changed).
    pub text: Cow<'a, str>,
    /// Number of cells that got a leading `'`.
    pub cells: usize,
}

/// Neutralises formula-looking cells in `text` (CRLF or LF records) with field delimiter
/// `delim` (`,` or tab).
pub fn neutralise(text: &str, delim: u8) -> Neutralised<'_> {
    let delim = char::from(delim);
    let mut out = String::new();
    let mut copied = 0; // bytes of `text` already copied to `out`
    let mut cells = 0;
    let mut pos = 0;
    let bytes_len = text.len();
    while pos <= bytes_len {
        let (end, value, next) = parse_field(text, pos, delim);
        if needs_neutralising(&value) {
            cells += 1;
            out.push_str(text.get(copied..pos).unwrap_or_default());
            out.push_str(&quote(&format!("'{value}"), delim));
            copied = end;
        }
        match next {
            Some(n) => pos = n,
            None => break,
        }
    }
    if cells == 0 {
        return Neutralised {
            text: Cow::Borrowed(text),
            cells,
        };
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Neutralised {
        text: Cow::Owned(out),
        cells,
    }
}

/// Parses the field starting at byte `start`: returns the byte offset where the field's raw
/// text ends, its unquoted value, and where the next field starts (`None` at the end of input).
fn parse_field(text: &str, start: usize, delim: char) -> (usize, String, Option<usize>) {
    let rest = text.get(start..).unwrap_or_default();
    let mut value = String::new();
    let mut iter = rest.char_indices().peekable();
    if rest.starts_with('"') {
        iter.next();
        while let Some((i, c)) = iter.next() {
            if c == '"' {
                if iter.peek().map(|(_, c)| *c) == Some('"') {
                    iter.next();
                    value.push('"');
                    continue;
                }
                // Closing quote; anything up to the delimiter/line end is kept as-is
                // (malformed, but spreadsheets accept it).
                let after = i + 1;
                return finish_unquoted(text, start + after, value, delim);
            }
            value.push(c);
        }
        // Unterminated quote: the field runs to the end.
        return (text.len(), value, None);
    }
    finish_unquoted(text, start, value, delim)
}

/// Reads unquoted characters from `from` up to the delimiter or line end.
fn finish_unquoted(
    text: &str,
    from: usize,
    mut value: String,
    delim: char,
) -> (usize, String, Option<usize>) {
    let rest = text.get(from..).unwrap_or_default();
    for (i, c) in rest.char_indices() {
        let at = from + i;
        if c == delim {
            return (at, value, Some(at + c.len_utf8()));
        }
        if c == '\r' || c == '\n' {
            let mut next = at + 1;
            if c == '\r' && text.get(next..next + 1) == Some("\n") {
                next += 1;
            }
            return (at, value, (next < text.len()).then_some(next));
        }
        value.push(c);
    }
    (text.len(), value, None)
}

fn needs_neutralising(value: &str) -> bool {
    let trimmed = value.trim_start_matches(' ');
    let Some(first) = trimmed.chars().next() else {
        return false;
    };
    if value.starts_with(['\t', '\r']) {
        return true;
    }
    matches!(first, '=' | '+' | '-' | '@') && !is_plain_number(trimmed)
}

/// `-1`, `+81`, `-1,234.5`, `.5`, `1e-3`: sign, digits (commas allowed between digits),
/// optional fraction, optional exponent; nothing else.
fn is_plain_number(s: &str) -> bool {
    let b = s.trim_end_matches(' ').as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let mut digits = 0;
    while let Some(&c) = b.get(i) {
        let separator = c == b',' && digits > 0 && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if c.is_ascii_digit() {
            digits += 1;
        } else if !separator {
            break;
        }
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

fn quote(value: &str, delim: char) -> String {
    if value.contains([delim, '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        let csv = "名前,値\r\n\"=HYPERLINK(\"\"http://evil.example/\"\",\"\"詳細\"\")\",1\r\n@SUM(A1:A2),+cmd|' /C calc'!A0\r\n";
        let n = neutralise(csv, b',');
        assert_eq!(n.cells, 3);
        assert_eq!(
            n.text,
            "名前,値\r\n\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"詳細\"\")\",1\r\n'@SUM(A1:A2),'+cmd|' /C calc'!A0\r\n"
        );
    }

    #[test]
    fn quoted_formulas_and_tsv() {
        let n = neutralise("\"=1+1\",\"a,b\"\n", b',');
        assert_eq!(n.text, "'=1+1,\"a,b\"\n");
        let n = neutralise("a\t=1+2\tc\r\n", b'\t');
        assert_eq!(n.text, "a\t'=1+2\tc\r\n");
        // Leading spaces do not hide a formula.
        assert_eq!(neutralise("  =1", b',').cells, 1);
    }

    #[test]
    fn numbers_and_ordinary_text_stay() {
        let csv = "-1,+81,\"-1,234.5\",1e-3,-.5,text,,\"\"\r\n金額,-300\r\n";
        let n = neutralise(csv, b',');
        assert_eq!(n.cells, 0);
        assert!(matches!(n.text, Cow::Borrowed(_)));
        // A phone number is not a plain number: neutralised.
        assert_eq!(neutralise("+81 3-1234-5678", b',').cells, 1);
        assert_eq!(neutralise("-1+2", b',').cells, 1);
    }

    #[test]
    fn unterminated_quote_is_one_field() {
        let n = neutralise("a,\"=x\r\nb", b',');
        // The unterminated field's value is "=x\r\nb": neutralised, re-quoted as one field.
        assert_eq!(n.cells, 1);
        assert_eq!(n.text, "a,\"'=x\r\nb\"");
    }
}
