//! What mail-parser is given, and how its result is torn down: structure only, bounded stack.
//!
//! mail-parser builds nested messages (message/rfc822, digest parts) into a recursive structure.
//! Parsing an inline nested message is iterative, but two things recurse once per level:
//! - dropping the result (a message nested 20,000 deep, 1.4 MB, overflowed a 2 MB stack and
//!   aborted the process), and
//! - a *transfer-encoded* nested message: mail-parser decodes it, parses it recursively and
//!   converts it with `into_owned`, which recurses over however deep the decoded content nests.
//!
//! So mail-parser never sees a transfer encoding: every header field whose name mail-parser
//! would read as `Content-Transfer-Encoding` (it ignores whitespace inside names and leading
//! colons) is renamed to [`HIDDEN_CTE`] before parsing. Every part is then "unencoded" to it and
//! nested messages are parsed inline, iteratively; the walk decodes bodies itself from the raw
//! bytes by the hidden field. [`Parsed`] takes the result apart iteratively when dropped.
//! Renaming by field *name* cannot be evaded by value syntax (`message / rfc822`, comments,
//! quotes), which mail-parser's own value parser accepts.

use std::borrow::Cow;

use mail_parser::{Message, PartType};

/// The name a `Content-Transfer-Encoding` field gets before parsing.
pub(super) const HIDDEN_CTE: &str = "Mugai-Transfer-Encoding";

/// Renames every field mail-parser would read as `Content-Transfer-Encoding`. Any line may be
/// a header line of some nested message, so all lines are looked at; only the name changes.
pub(super) fn hide_transfer_encodings(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0usize;
    let mut start = 0usize;
    while start < input.len() {
        let end = input
            .get(start..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(input.len(), |i| start + i + 1);
        let line = input.get(start..end).unwrap_or_default();
        if let Some(colon) = cte_name_end(line) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len() + 64));
            buf.extend_from_slice(input.get(copied..start).unwrap_or_default());
            buf.extend_from_slice(HIDDEN_CTE.as_bytes());
            copied = start + colon;
        }
        start = end;
    }
    match out {
        Some(mut v) => {
            v.extend_from_slice(input.get(copied..).unwrap_or_default());
            Cow::Owned(v)
        }
        None => Cow::Borrowed(input),
    }
}

/// If `line` is a field mail-parser would name `content-transfer-encoding`, the offset of its
/// colon. Its rule: leading colons are skipped, whitespace anywhere in the name is ignored, the
/// name ends at the first colon after it began, a line end before that means no field.
fn cte_name_end(line: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"content-transfer-encoding";
    let mut matched = 0usize;
    let mut started = false;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b':' if started => return (matched == NAME.len()).then_some(i),
            b':' => {}
            b'\n' => return None,
            b if b.is_ascii_whitespace() => {}
            b => {
                started = true;
                if NAME
                    .get(matched)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&b))
                {
                    matched += 1;
                } else {
                    return None;
                }
            }
        }
    }
    None
}

/// How much of the input is looked at to decide whether it has a header block.
const HEADER_SCAN: usize = 64 * 1024;

/// Header fields whose presence makes a block a mail header even when its first line is not
/// a field (an mbox `From ` line, a stray line a client prepended).
const KNOWN_FIELDS: [&str; 14] = [
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "received",
    "return-path",
    "sender",
    "reply-to",
    "delivered-to",
    "content-transfer-encoding",
];

/// Whether `input` cannot be read as a message: there is no header block at its start, or that
/// block is mostly binary. The header block is everything before the first empty line (at most
/// [`HEADER_SCAN`] bytes); it is a header block when its first line is a header field
/// (`name:`, white space allowed before the colon) or when any of its lines is a field we
/// recognise ([`KNOWN_FIELDS`]). It is binary when more than 1 in 16 of its bytes are control
/// characters other than TAB, CR, LF and ESC (ISO-2022-JP): header text never has them, noise
/// has about one in nine. mail-parser reads anything as a message (noise becomes a body), so
/// this is decided here.
pub(super) fn unparseable(input: &[u8]) -> bool {
    let scan = input.get(..HEADER_SCAN).unwrap_or(input);
    let scan = scan.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(scan);
    let mut lines = scan
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty());
    let mut block_len = 0usize;
    let mut controls = 0usize;
    let mut count = |l: &[u8]| {
        block_len += l.len() + 1;
        controls += l
            .iter()
            .filter(|b| (b.is_ascii_control() && !b"\t\r\x1b".contains(b)) || **b == 0x7F)
            .count();
    };
    let Some(first) = lines.next() else {
        return true; // empty input, or an empty header block
    };
    count(first);
    let mut header = field_name(first).is_some();
    for l in lines {
        count(l);
        if !header
            && field_name(l).is_some_and(|n| KNOWN_FIELDS.iter().any(|k| k.eq_ignore_ascii_case(n)))
        {
            header = true;
        }
    }
    !header || controls.saturating_mul(16) > block_len
}

/// The name of a header field line (`name:` or `name :`), if it is one.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = line.get(..colon)?;
    let name = name
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .and_then(|end| name.get(..=end))?;
    let ok = !name.is_empty() && name.len() <= 200 && name.iter().all(|b| (33..=126).contains(b));
    if ok {
        std::str::from_utf8(name).ok()
    } else {
        None
    }
}

/// A parsed message that is taken apart iteratively when dropped (see the module docs).
pub(super) struct Parsed<'x>(Option<Message<'x>>);

impl<'x> Parsed<'x> {
    /// Wraps a parsed message.
    pub(super) fn new(msg: Message<'x>) -> Self {
        Parsed(Some(msg))
    }

    /// The message.
    pub(super) fn get(&self) -> Option<&Message<'x>> {
        self.0.as_ref()
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack: Vec<Message<'_>> = self.0.take().into_iter().collect();
        while let Some(mut m) = stack.pop() {
            for p in m.parts.iter_mut() {
                if matches!(p.body, PartType::Message(_))
                    && let PartType::Message(inner) = std::mem::take(&mut p.body)
                {
                    stack.push(inner);
                }
            }
            // `m` now holds no nested message: dropping it does not recurse.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_without_a_header_block_is_unparseable() {
        for good in [
            &b"From: a@example.jp\r\nSubject: x\r\n\r\nbody\r\n"[..],
            b"Subject : x\n\nbody",
            b"\xEF\xBB\xBFFrom: a@example.jp\r\n\r\n",
            b"From a@example.jp Mon Nov  2 09:30:00 2026\nFrom: a@example.jp\n\nbody\n",
            b"X-Only: header without a body",
            // 8-bit Shift_JIS and ISO-2022-JP header text is not binary.
            b"Subject: \x8c\xa9\x90\xcf\r\nX: \x1b$B8+@Q\x1b(B\r\n\r\n\x00\x01\x02\x03",
        ] {
            assert!(!unparseable(good), "{:?}", String::from_utf8_lossy(good));
        }
        let mut noise = Vec::new();
        let mut x = 0x1234_5678u32;
        for _ in 0..4000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x.to_le_bytes()[0]);
        }
        let mut headed_noise = b"From: a@example.jp\r\n".to_vec();
        headed_noise.extend(noise.iter().filter(|b| **b != b'\n'));
        for bad in [
            &b""[..],
            b"\r\n\r\nbody without headers\r\n",
            b"just some text\r\nmore text\r\n",
            b"\x00\xff\xfe\x00--\x00\r\n\r\nSubject: late\r\n",
            &noise,
            &headed_noise,
        ] {
            assert!(unparseable(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn field_names_are_read_as_mail_parser_reads_them() {
        for line in [
            &b"Content-Transfer-Encoding: base64\r\n"[..],
            b"content-transfer-encoding:base64\n",
            b"Content-Transfer-Encoding : base64\r\n",
            b"::Content-Transfer-Encoding: base64\r\n",
            b" Content-Transfer- Encoding\t: base64\r\n",
        ] {
            let out = hide_transfer_encodings(line);
            assert!(
                out.starts_with(HIDDEN_CTE.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
            assert!(out.ends_with(b"base64\r\n") || out.ends_with(b"base64\n"));
        }
        for line in [
            &b"Content-Transfer-Encodings: base64\r\n"[..],
            b"X-Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding\r\n: base64\r\n",
            b"Subject: Content-Transfer-Encoding: base64\r\n",
        ] {
            assert!(
                matches!(hide_transfer_encodings(line), Cow::Borrowed(_)),
                "{line:?}"
            );
        }
    }
}
