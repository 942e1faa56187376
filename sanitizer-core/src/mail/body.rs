//! Body text helpers: line ends, invisible controls, inline PGP, stub detection.

use std::borrow::Cow;

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
