//! Links in text: defanged (`hxxps://example[.]jp/login`), kept, or removed, by policy.
//!
//! Defanging makes a URL readable but not clickable: the scheme is altered (`http` → `hxxp`,
//! whatever its case), every dot of the host becomes `[.]` (also the ideographic and fullwidth
//! dots that IDNA maps to `.`, and `%2e`), and userinfo (`http://bank.jp@evil.example/`, which
//! makes a reader see the wrong host) is replaced by `***@`.
//!
//! Finding URLs in text is one linear pass. A URL ends at whitespace, quotes, angle brackets,
//! and at the first non-ASCII character after the host (Japanese text often follows a URL
//! without a space: `https://example.jp/aをご覧ください`). Internationalised hosts are kept
//! whole (`https://例え.jp/`). Trailing sentence punctuation (`.`, `,`, `)` without its `(`, ...)
//! is not part of the URL.

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
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
        {
            (s, r)
        }
        _ => ("", url),
    };
    let mut out = String::with_capacity(url.len() + 16);
    match scheme.to_ascii_lowercase().as_str() {
        "" => {}
        "http" => out.push_str("hxxp:"),
        "https" => out.push_str("hxxps:"),
        "ftp" => out.push_str("fxp:"),
        "ftps" => out.push_str("fxps:"),
        _ => {
            out.push_str(scheme);
            out.push(':');
        }
    }
    // `//authority`, and the backslash spellings browsers treat the same way.
    let authority = ["//", "\\\\", "/\\", "\\/"]
        .iter()
        .find_map(|p| rest.strip_prefix(p).map(|a| (*p, a)));
    match authority {
        Some((prefix, after)) => {
            out.push_str(prefix);
            let end = after.find(['/', '\\', '?', '#']).unwrap_or(after.len());
            let (auth, tail) = after.split_at(end);
            match auth.rsplit_once('@') {
                Some((_, host)) => {
                    out.push_str("***@");
                    push_defanged_host(&mut out, host);
                }
                None => push_defanged_host(&mut out, auth),
            }
            out.push_str(tail);
        }
        None => {
            // `mailto:a@b.jp?subject=x`, `www.example.jp/a`, `tel:...`: defang up to the query.
            let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
            let (host, tail) = rest.split_at(end);
            push_defanged_host(&mut out, host);
            out.push_str(tail);
        }
    }
    out
}

fn push_defanged_host(out: &mut String, host: &str) {
    let mut rest = host;
    while let Some(c) = rest.chars().next() {
        if rest
            .as_bytes()
            .get(..3)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"%2e"))
        {
            out.push_str("[.]");
            rest = rest.get(3..).unwrap_or("");
            continue;
        }
        match c {
            // IDNA maps the ideographic, fullwidth and halfwidth full stops to `.`.
            '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => out.push_str("[.]"),
            c => out.push(c),
        }
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
}

/// Finds URLs (`http://`, `https://`, `ftp://`, `www.`, `mailto:`, `tel:`, any case) in plain
/// text and rewrites them by `mode`. Returns the text and how many links were rewritten.
pub fn rewrite_links_in_text(text: &str, mode: LinkMode) -> (String, usize) {
    if mode == LinkMode::Keep {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut count = 0;
    let mut copied = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while let Some(&b) = bytes.get(i) {
        let candidate = matches!(b | 0x20, b'h' | b'f' | b'w' | b'm' | b't')
            && !i
                .checked_sub(1)
                .and_then(|p| bytes.get(p))
                .is_some_and(|&p| p.is_ascii_alphanumeric() || b"-_./@+".contains(&p));
        if let Some((scheme_len, hosted)) = candidate.then(|| scheme_at(text, i)).flatten() {
            let end = url_end(text, i, scheme_len, hosted);
            if end > i + scheme_len
                && let (Some(before), Some(url)) = (text.get(copied..i), text.get(i..end))
            {
                out.push_str(before);
                out.push_str(&rewrite_url(url, mode));
                count += 1;
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    (out, count)
}

/// Where [`rewrite_links_in_text`] ends a URL (it must stay in step with `url_end`; the
/// equivalence test in `mail/tests.rs` checks that it does). Its list's non-ASCII characters
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
pub(crate) fn rewrite_links_linear(text: &str, mode: LinkMode) -> (String, usize) {
    if mode == LinkMode::Keep {
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

/// The URL prefix at `i`: its length and whether a host follows.
fn scheme_at(text: &str, i: usize) -> Option<(usize, bool)> {
    const SCHEMES: [(&str, bool); 6] = [
        ("http://", true),
        ("https://", true),
        ("ftp://", true),
        ("www.", true),
        ("mailto:", false),
        ("tel:", false),
    ];
    SCHEMES.iter().find_map(|(p, hosted)| {
        text.get(i..i + p.len())
            .filter(|s| s.eq_ignore_ascii_case(p))
            .map(|_| (if *p == "www." { 0 } else { p.len() }, *hosted))
    })
}

/// Characters that end a URL anywhere.
fn is_terminator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`' | '{' | '}' | '|' | '^')
}

/// Japanese punctuation never part of a host.
fn is_cjk_punct(c: char) -> bool {
    matches!(c, '\u{3000}'..='\u{3001}' | '\u{3003}'..='\u{303F}' | '\u{FF01}'..='\u{FF0D}'
        | '\u{FF0F}'..='\u{FF20}' | '\u{FF3B}'..='\u{FF40}' | '\u{FF5B}'..='\u{FF60}')
}

/// Byte offset where the URL starting at `start` ends.
fn url_end(text: &str, start: usize, scheme_len: usize, hosted: bool) -> usize {
    let from = start + scheme_len;
    let rest = text.get(from..).unwrap_or("");
    let mut end = from;
    let mut path_from = rest;
    if hosted {
        // The host run: may hold non-ASCII (IDN), ends at a path/query start or punctuation.
        let run_len = rest
            .find(|c: char| {
                is_terminator(c) || matches!(c, '/' | '\\' | '?' | '#') || is_cjk_punct(c)
            })
            .unwrap_or(rest.len());
        let run = rest.get(..run_len).unwrap_or("");
        let host_len = if run.is_ascii() {
            run_len
        } else {
            // Keep an IDN host up to its last label if that label is ASCII (`例え.jp`);
            // otherwise the URL stops where the non-ASCII text starts (`example.jp詳細`).
            let first_non_ascii = run.find(|c: char| !c.is_ascii()).unwrap_or(run_len);
            match run.rfind('.') {
                Some(dot) => {
                    let tld = run.get(dot + 1..).unwrap_or("");
                    let tld_len = tld
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .unwrap_or(tld.len());
                    if tld_len > 0 {
                        dot + 1 + tld_len
                    } else {
                        first_non_ascii
                    }
                }
                None => first_non_ascii,
            }
        };
        end += host_len;
        if host_len < run_len {
            return trim_url_end(text, start, end);
        }
        path_from = rest.get(host_len..).unwrap_or("");
    }
    let path_len = path_from
        .find(|c: char| is_terminator(c) || !c.is_ascii())
        .unwrap_or(path_from.len());
    end += path_len;
    trim_url_end(text, start, end)
}

/// Drops trailing sentence punctuation and an unbalanced closing bracket.
fn trim_url_end(text: &str, start: usize, mut end: usize) -> usize {
    while let Some(url) = text.get(start..end) {
        let Some(last) = url.chars().next_back() else {
            break;
        };
        let drop = match last {
            '.' | ',' | ';' | ':' | '!' | '?' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            ']' => url.matches('[').count() < url.matches(']').count(),
            _ => false,
        };
        if !drop {
            break;
        }
        end -= last.len_utf8();
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defang_text(s: &str) -> String {
        rewrite_links_in_text(s, LinkMode::Defang).0
    }

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
        assert_eq!(
            defang_url("www.example.jp/a.html"),
            "www[.]example[.]jp/a.html"
        );
        assert_eq!(
            defang_url("//cdn.example.com/x.js"),
            "//cdn[.]example[.]com/x.js"
        );
    }

    #[test]
    fn scheme_case_does_not_matter() {
        assert_eq!(defang_url("HTTP://EXAMPLE.JP/"), "hxxp://EXAMPLE[.]JP/");
        assert_eq!(defang_url("HtTpS://example.jp"), "hxxps://example[.]jp");
        assert_eq!(
            defang_text("見て HTTPS://Example.JP/A"),
            "見て hxxps://Example[.]JP/A"
        );
    }

    #[test]
    fn userinfo_is_not_shown_as_if_it_were_the_host() {
        assert_eq!(
            defang_url("http://www.bank.example.jp@evil.example/login"),
            "hxxp://***@evil[.]example/login"
        );
        assert_eq!(
            defang_url("https://user:pass@evil.example"),
            "hxxps://***@evil[.]example"
        );
    }

    #[test]
    fn ip_and_idn_hosts_and_odd_dots() {
        assert_eq!(
            defang_url("http://192.168.10.1:8080/a"),
            "hxxp://192[.]168[.]10[.]1:8080/a"
        );
        assert_eq!(defang_url("https://例え.jp/パス"), "hxxps://例え[.]jp/パス");
        assert_eq!(
            defang_url("https://evil\u{3002}example%2Ecom/"),
            "hxxps://evil[.]example[.]com/"
        );
        assert_eq!(
            defang_url("http://evil.example\\@good.jp/"),
            "hxxp://evil[.]example\\@good.jp/"
        );
        assert_eq!(
            defang_text("先 https://例え.jp/a をご覧"),
            "先 hxxps://例え[.]jp/a をご覧"
        );
    }

    #[test]
    fn japanese_punctuation_and_text_end_a_url() {
        assert_eq!(
            defang_text("詳細は https://example.jp/a. をご覧ください"),
            "詳細は hxxps://example[.]jp/a. をご覧ください"
        );
        assert_eq!(
            defang_text("こちら（https://example.jp/a）。"),
            "こちら（hxxps://example[.]jp/a）。"
        );
        assert_eq!(
            defang_text("「https://example.jp」、https://example.jp/b。"),
            "「hxxps://example[.]jp」、hxxps://example[.]jp/b。"
        );
        assert_eq!(
            defang_text("https://example.jp/aをご覧ください"),
            "hxxps://example[.]jp/aをご覧ください"
        );
        assert_eq!(
            defang_text("https://example.jp詳細"),
            "hxxps://example[.]jp詳細"
        );
        assert_eq!(
            defang_text("(see https://example.jp/a)"),
            "(see hxxps://example[.]jp/a)"
        );
    }

    #[test]
    fn counts_and_modes() {
        let (t, n) = rewrite_links_in_text(
            "a http://x.example/ b www.y.example c mailto:z@z.example d tel:0312345678",
            LinkMode::Defang,
        );
        assert_eq!(
            t,
            "a hxxp://x[.]example/ b www[.]y[.]example c mailto:z@z[.]example d tel:0312345678"
        );
        assert_eq!(n, 4);
        let (t, n) = rewrite_links_in_text("see www.example.com now", LinkMode::Remove);
        assert_eq!((t.as_str(), n), ("see [link removed] now", 1));
        let (t, n) = rewrite_links_in_text("see https://example.com now", LinkMode::Keep);
        assert_eq!((t.as_str(), n), ("see https://example.com now", 0));
    }

    #[test]
    fn words_containing_a_scheme_are_not_links() {
        let (t, n) = rewrite_links_in_text("Hotel:Tokyo, ahttp://x", LinkMode::Defang);
        assert_eq!((t.as_str(), n), ("Hotel:Tokyo, ahttp://x", 0));
        // A bare scheme is not a link either.
        assert_eq!(
            rewrite_links_in_text("http:// と tel:", LinkMode::Defang).1,
            0
        );
    }

    #[test]
    fn many_urls_are_linear() {
        let text = "https://a.example/ ".repeat(100_000);
        let (t, n) = rewrite_links_in_text(&text, LinkMode::Defang);
        assert_eq!(n, 100_000);
        assert_eq!(t.matches("hxxps://a[.]example/").count(), 100_000);
    }
}
