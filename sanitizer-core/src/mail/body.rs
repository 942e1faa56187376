//! Body text helpers: line ends, invisible controls, links, inline PGP, stub detection.

use std::borrow::Cow;

use crate::links::rewrite_links_in_text;
use crate::unicode::{clean_text, is_invisible_control};

/// `\r\n` and lone `\r` become `\n`; bidi/zero-width and other controls are removed.
pub(super) fn normalize_text(s: &str) -> (String, bool) {
    let unified: Cow<'_, str> = if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    };
    // Most bodies have nothing to remove: a scan is cheaper than rebuilding the string.
    let needs_cleaning = unified
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_invisible_control(c));
    if !needs_cleaning {
        return (unified.into_owned(), false);
    }
    clean_text(&unified)
}

/// Where [`rewrite_links_in_text`] ends a URL (it must stay in step with `links.rs`; the
/// equivalence test in `tests.rs` checks that it does). Its list's non-ASCII characters
/// (「」（）、。，) are covered by "not ASCII".
fn ends_url(c: char) -> bool {
    !c.is_ascii() || c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')')
}

/// [`rewrite_links_in_text`] applied segment by segment, each segment ending just after a
/// character that ends a URL. No URL crosses such a character and none starts with one, so the
/// result is the same as for the whole text; but the rewriter re-scans (and lower-cases) the
/// rest of its input after every link, which is quadratic: a 30 KB body with 200 links cost
/// 6 ms, and a hostile 2 MB line of `<http://a` would run for minutes. Per segment it is
/// linear, and only segments that can hold a link (a `:` or `www.`) are handed to it; the rest
/// is copied in bulk.
pub(super) fn rewrite_links_linear(text: &str, mode: crate::policy::LinkMode) -> (String, usize) {
    if mode == crate::policy::LinkMode::Keep {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut count = 0usize;
    let mut copied = 0usize;
    let mut seg_start = 0usize;
    let mut candidate = false;
    let mut ws = 0usize;
    let mut flush = |seg_start: usize, seg_end: usize, copied: &mut usize, out: &mut String| {
        out.push_str(text.get(*copied..seg_start).unwrap_or_default());
        let (l, n) = rewrite_links_in_text(text.get(seg_start..seg_end).unwrap_or_default(), mode);
        out.push_str(&l);
        count += n;
        *copied = seg_end;
    };
    for (i, c) in text.char_indices() {
        match c {
            ':' => candidate = true,
            'w' | 'W' => ws += 1,
            '.' if ws >= 3 => candidate = true,
            _ => ws = 0,
        }
        if c != 'w' && c != 'W' {
            ws = 0;
        }
        if ends_url(c) {
            let end = i + c.len_utf8();
            if candidate {
                flush(seg_start, end, &mut copied, &mut out);
            }
            seg_start = end;
            candidate = false;
        }
    }
    if candidate {
        flush(seg_start, text.len(), &mut copied, &mut out);
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    (out, count)
}

/// Removes inline PGP encrypted blocks (their content cannot be inspected).
pub(super) fn strip_pgp(text: &str) -> Option<String> {
    strip_armour(
        text,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
        "[暗号化された内容を削除しました / encrypted content removed]",
    )
}

/// Removes inline PGP signature blocks of clear-signed text (the text stays; a signature
/// cannot stay valid in a rebuilt message).
pub(super) fn strip_pgp_signature(text: &str) -> Option<String> {
    strip_armour(
        text,
        "-----BEGIN PGP SIGNATURE-----",
        "-----END PGP SIGNATURE-----",
        "[電子署名を削除しました / signature removed]",
    )
}

fn strip_armour(text: &str, begin: &str, end: &str, placeholder: &str) -> Option<String> {
    if !text.contains(begin) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(begin) {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push_str(placeholder);
        let after = rest.get(i..).unwrap_or_default();
        rest = match after.find(end) {
            Some(j) => after.get(j + end.len()..).unwrap_or_default(),
            None => "",
        };
    }
    out.push_str(rest);
    Some(out)
}

/// Whether a text/plain alternative is empty or only says "view this in HTML".
pub(super) fn is_stub(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return true;
    }
    if t.chars().count() > 200 {
        return false;
    }
    let lower = t.to_lowercase();
    lower.contains("html") || lower.contains("ブラウザ") || lower.contains("browser")
}
