//! What mail-parser is given: the input with nested-message content types defused.

use std::borrow::Cow;

/// Content types that make mail-parser parse a nested message, and the same-length private
/// subtypes they are renamed to before parsing.
const NESTING_TYPES: [(&[u8], &[u8]); 3] = [
    (b"message/rfc822", b"message/x-mug1"),
    (b"message/global", b"message/x-mug2"),
    (b"multipart/digest", b"multipart/x-mugd"),
];

/// mail-parser builds nested messages into a recursive structure whose `drop` and `into_owned`
/// recurse once per level: a message nested 20,000 deep (1.4 MB) overflows the stack, and a
/// base64-encoded one does so inside the parser. So mail-parser never sees a nested message:
/// on `Content-Type` lines (and folded continuations) the nesting types are renamed to private
/// subtypes of the same length, which it keeps as opaque parts; the walk treats those as
/// messages and hands them to `sanitize_child`, which re-parses each one level at a time under
/// the depth limit. Bodies are untouched (base64 and quoted-printable lines never start with
/// `Content-Type:` or whitespace).
pub(super) fn defuse_nesting(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut start = 0usize;
    let mut prev_was_ct = false;
    while start < input.len() {
        let end = input
            .get(start..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(input.len(), |i| start + i + 1);
        let line = input.get(start..end).unwrap_or_default();
        let is_ct = line.len() >= 13
            && line
                .get(..13)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"content-type:"));
        let continuation = prev_was_ct && matches!(line.first(), Some(b' ' | b'\t'));
        if is_ct || continuation {
            for (from, to) in NESTING_TYPES {
                let mut i = 0usize;
                while let Some(w) = line.get(i..i + from.len()) {
                    if w.eq_ignore_ascii_case(from) {
                        let buf = out.get_or_insert_with(|| input.to_vec());
                        if let Some(dst) = buf.get_mut(start + i..start + i + to.len()) {
                            dst.copy_from_slice(to);
                        }
                        i += from.len();
                    } else {
                        i += 1;
                    }
                }
            }
        }
        prev_was_ct = is_ct || continuation;
        start = end;
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(input),
    }
}
