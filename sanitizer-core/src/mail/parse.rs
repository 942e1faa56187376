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
