//! Links in text: defanged (`hxxps://example[.]jp/login`), kept, or removed, by policy.

use crate::policy::LinkMode;

/// Rewrites one URL according to `mode`.
pub fn rewrite_url(url: &str, mode: LinkMode) -> String {
    match mode {
        LinkMode::Keep => url.to_owned(),
        LinkMode::Remove => "[link removed]".to_owned(),
        LinkMode::Defang => defang_url(url),
    }
}

/// `https://example.jp/a` → `hxxps://example[.]jp/a`; `mailto:a@b.jp` → `mailto:a@b[.]jp`.
pub fn defang_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once(':') {
        Some((s, r))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
        {
            (s, r)
        }
        _ => ("", url),
    };
    let scheme_out = match scheme.to_ascii_lowercase().as_str() {
        "http" => "hxxp".to_owned(),
        "https" => "hxxps".to_owned(),
        "ftp" => "fxp".to_owned(),
        "" => String::new(),
        other => other.to_owned(),
    };
    // Defang the dots of the host part only.
    let (prefix, after) = match rest.strip_prefix("//") {
        Some(a) => ("//", a),
        None => ("", rest),
    };
    let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (host, tail) = after.split_at(host_end);
    let host = host.replace('.', "[.]");
    if scheme.is_empty() {
        format!("{prefix}{host}{tail}")
    } else {
        format!("{scheme_out}:{prefix}{host}{tail}")
    }
}

/// Finds URLs (`http://`, `https://`, `ftp://`, `www.`, `mailto:`, `tel:`) in plain text and
/// rewrites them by `mode`. Returns the text and how many links were rewritten.
pub fn rewrite_links_in_text(text: &str, mode: LinkMode) -> (String, usize) {
    if mode == LinkMode::Keep {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut count = 0;
    let mut rest = text;
    while let Some((start, scheme_len)) = find_link_start(rest) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let end = from
            .char_indices()
            .skip(scheme_len)
            .find(|(_, c)| {
                c.is_whitespace() || "<>\"'「」（）()、。，".contains(*c) || !c.is_ascii()
            })
            .map(|(i, _)| i)
            .unwrap_or(from.len());
        let (url, after) = from.split_at(end);
        // Trailing punctuation belongs to the sentence, not the URL.
        let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?']);
        let (url, punct) = url.split_at(trimmed.len());
        out.push_str(&rewrite_url(url, mode));
        out.push_str(punct);
        count += 1;
        rest = after;
    }
    out.push_str(rest);
    (out, count)
}

fn find_link_start(s: &str) -> Option<(usize, usize)> {
    const SCHEMES: [&str; 6] = ["http://", "https://", "ftp://", "www.", "mailto:", "tel:"];
    let lower = s.to_ascii_lowercase();
    SCHEMES
        .iter()
        .filter_map(|p| lower.find(p).map(|i| (i, p.len())))
        .filter(|(i, _)| s.is_char_boundary(*i))
        .min_by_key(|(i, _)| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defangs_urls() {
        assert_eq!(
            defang_url("https://example.jp/login?a=b.c"),
            "hxxps://example[.]jp/login?a=b.c"
        );
        assert_eq!(
            defang_url("mailto:info@city.example.lg.jp"),
            "mailto:info@city[.]example[.]lg[.]jp"
        );
        assert_eq!(defang_url("tel:03-1234-5678"), "tel:03-1234-5678");
    }

    #[test]
    fn rewrites_links_in_text() {
        let (t, n) = rewrite_links_in_text(
            "詳細は https://example.jp/a. をご覧ください",
            LinkMode::Defang,
        );
        assert_eq!(t, "詳細は hxxps://example[.]jp/a. をご覧ください");
        assert_eq!(n, 1);
        let (t, _) = rewrite_links_in_text("see www.example.com now", LinkMode::Remove);
        assert_eq!(t, "see [link removed] now");
    }
}
