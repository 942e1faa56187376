//! Threat detection on start tags and CSS, done while tokenizing.
//!
//! Detection only reports: nothing of the HTML reaches the output anyway. It errs towards
//! reporting (a `javascript:` with tabs inside is still `javascript:` to a browser).

use html5ever::Attribute;

use crate::threats;

/// Attributes whose value is a URL that a browser may navigate to or fetch.
const URL_ATTRS: [&str; 18] = [
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "background",
    "poster",
    "lowsrc",
    "dynsrc",
    "codebase",
    "cite",
    "longdesc",
    "usemap",
    "srcset",
    "ping",
    "manifest",
    "xlink:href",
    "content",
];

/// Attributes that make a mail client fetch a resource when the mail is displayed.
const FETCH_ATTRS: [&str; 6] = ["src", "srcset", "background", "poster", "lowsrc", "dynsrc"];

/// `<link rel=...>` values that fetch something when the page is displayed.
const FETCHING_RELS: [&str; 7] = [
    "stylesheet",
    "icon",
    "preload",
    "prefetch",
    "import",
    "modulepreload",
    "manifest",
];

/// The threats one start tag carries, pushed into `found` (deduplicated by the caller).
pub(super) fn start_tag(name: &str, attrs: &[Attribute], found: &mut impl FnMut(&'static str)) {
    match name {
        "script" => found(threats::HTML_SCRIPT),
        "iframe" | "frame" | "frameset" | "object" | "embed" | "applet" => {
            found(threats::HTML_EMBED)
        }
        "form" | "input" | "isindex" | "keygen" => found(threats::HTML_FORM),
        "meta"
            if attr(attrs, "http-equiv")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh")) =>
        {
            found(threats::HTML_META_REFRESH)
        }
        "base" if attr(attrs, "href").is_some() => found(threats::HTML_META_REFRESH),
        "link" => {
            let rel = attr(attrs, "rel").unwrap_or_default().to_ascii_lowercase();
            let fetches = FETCHING_RELS.iter().any(|r| rel.contains(r));
            if fetches && attr(attrs, "href").is_some_and(is_remote) {
                found(threats::HTML_REMOTE_RESOURCE);
            }
        }
        // SVG images and <use> fetch their href.
        "image" | "use" | "feimage"
            if attr(attrs, "href")
                .or_else(|| attr(attrs, "xlink:href"))
                .is_some_and(is_remote) =>
        {
            found(threats::HTML_REMOTE_RESOURCE)
        }
        _ => {}
    }
    for a in attrs {
        let n: &str = &a.name.local;
        let v: &str = &a.value;
        if n.len() > 2
            && n.as_bytes()
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"on"))
        {
            found(threats::HTML_EVENT_HANDLER);
        }
        if URL_ATTRS.contains(&n) && is_script_url(v) {
            found(threats::HTML_SCRIPT);
        }
        if FETCH_ATTRS.contains(&n) && (is_remote(v) || (n == "srcset" && srcset_remote(v))) {
            found(threats::HTML_REMOTE_RESOURCE);
        }
        if n == "style" && css_has_remote(v) {
            found(threats::HTML_REMOTE_RESOURCE);
        }
    }
}

/// The value of attribute `name` (names are lower-cased by the tokenizer).
pub(super) fn attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| &*a.value)
}

/// The scheme-relevant start of a URL as a browser reads it: leading spaces and controls
/// dropped, tabs and newlines inside removed, lower-cased. At most `n` characters.
fn url_head(v: &str, n: usize) -> String {
    v.chars()
        .filter(|c| !(c.is_ascii_whitespace() || c.is_control()))
        .take(n)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `javascript:` / `vbscript:` (also `livescript:`) URLs, however obfuscated with whitespace,
/// and `data:` URLs that a browser would run as a document (HTML, XHTML, SVG).
pub(super) fn is_script_url(v: &str) -> bool {
    let h = url_head(v, 24);
    h.starts_with("javascript:")
        || h.starts_with("vbscript:")
        || h.starts_with("livescript:")
        || h.starts_with("data:text/html")
        || h.starts_with("data:application/xhtml")
        || h.starts_with("data:image/svg")
}

/// `http:`, `https:`, `ftp:` or protocol-relative `//host` (also `\\host`, which browsers read
/// as `//`).
pub(super) fn is_remote(v: &str) -> bool {
    let h = url_head(v, 8);
    h.starts_with("http:")
        || h.starts_with("https:")
        || h.starts_with("ftp:")
        || h.starts_with("//")
        || h.starts_with("\\\\")
        || h.starts_with("/\\")
        || h.starts_with("\\/")
}

fn srcset_remote(v: &str) -> bool {
    v.split(',').any(is_remote)
}

/// Whether CSS text loads a remote resource: `url(http...)`, `url(//...)`, `@import "http..."`.
/// CSS comments are skipped; backslash escapes (`u\72l(`) count as suspicious and report too.
pub(super) fn css_has_remote(css: &str) -> bool {
    let lower = css.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = lower
                    .get(i + 2..)
                    .and_then(|r| r.find("*/"))
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
                continue;
            }
            // Escapes can spell url( or a scheme invisibly; report rather than decode.
            b'\\' => {
                return lower.contains("url") || lower.contains("import") || lower.contains("//");
            }
            b'u' if lower.get(i..i + 4) == Some("url(") => {
                if lower.get(i + 4..).is_some_and(css_value_remote) {
                    return true;
                }
                i += 4;
                continue;
            }
            b'@' if lower.get(i..i + 7) == Some("@import") => {
                if lower.get(i + 7..).is_some_and(css_value_remote) {
                    return true;
                }
                i += 7;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

fn css_value_remote(rest: &str) -> bool {
    let v = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '"' || c == '\'');
    let v = v.strip_prefix("url(").map_or(v, |u| {
        u.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '"' || c == '\'')
    });
    is_remote(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_urls_are_seen_through_obfuscation() {
        assert!(is_script_url("javascript:alert(1)"));
        assert!(is_script_url("  JaVa\tScRiPt:alert(1)"));
        assert!(is_script_url("vbscript:msgbox"));
        assert!(is_script_url("DATA:text/html;base64,PHNjcmlwdD4="));
        assert!(!is_script_url("data:image/png;base64,AAAA"));
        assert!(!is_script_url("https://example.jp/javascript:"));
    }

    #[test]
    fn css_remote_urls() {
        assert!(css_has_remote("background:url(http://t.example/p.gif)"));
        assert!(css_has_remote(
            "background: URL( 'https://t.example/p.gif' )"
        ));
        assert!(css_has_remote(
            "x{background-image:url(\"//t.example/p.gif\")}"
        ));
        assert!(css_has_remote("@import \"https://t.example/a.css\";"));
        assert!(css_has_remote("@import url(https://t.example/a.css);"));
        assert!(css_has_remote("background:u\\72l(http://t.example/p.gif)"));
        assert!(!css_has_remote(
            "background:url(cid:logo@x) /* url(http://x) */"
        ));
        assert!(!css_has_remote("color:red; font-family: 'MS Gothic'"));
        assert!(!css_has_remote(
            "background:url(data:image/png;base64,AAAA)"
        ));
    }
}
