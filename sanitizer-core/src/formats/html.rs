//! HTML to plain text: nothing of the HTML survives (no tags, scripts, styles, remote
//! resources); links are kept as text and rewritten by the link policy.

use crate::error::SanitizeError;
use crate::links::rewrite_links_in_text;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::policy::Policy;
use crate::report::{Action, Kind};
use crate::threats;

/// Plain text made from HTML, and what the HTML contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlText {
    /// The text, UTF-8, `\n` line ends.
    pub text: String,
    /// Active or tracking constructs found (`html.script`, `html.remote_resource`, ...).
    pub threats: Vec<&'static str>,
    /// Number of links rewritten.
    pub links: usize,
}

/// Converts an HTML document or fragment to plain text under `policy`.
pub fn html_to_text(html: &str, policy: &Policy) -> HtmlText {
    let mut found = Vec::new();
    let lower = html.to_ascii_lowercase();
    for (needle, id) in [
        ("<script", threats::HTML_SCRIPT),
        ("javascript:", threats::HTML_SCRIPT),
        ("<iframe", threats::HTML_EMBED),
        ("<object", threats::HTML_EMBED),
        ("<embed", threats::HTML_EMBED),
        ("<form", threats::HTML_FORM),
        ("http-equiv=\"refresh\"", threats::HTML_META_REFRESH),
        ("<base", threats::HTML_META_REFRESH),
    ] {
        if lower.contains(needle) && !found.contains(&id) {
            found.push(id);
        }
    }
    let text = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 100_000)
        .unwrap_or_default();
    let (text, links) = rewrite_links_in_text(&text, policy.links.mode);
    HtmlText {
        text,
        threats: found,
        links,
    }
}

/// HTML files become UTF-8 text files.
#[derive(Debug, Clone, Copy)]
pub struct HtmlSanitizer;

impl FormatSanitizer for HtmlSanitizer {
    fn name(&self) -> &'static str {
        "html"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let html = String::from_utf8_lossy(input);
        let out = html_to_text(&html, cx.policy());
        Ok(Rebuilt::new(
            out.text.into_bytes(),
            Action::ConvertedToText,
            Kind::Text,
            "text/plain; charset=utf-8",
        )
        .with_extension("txt")
        .with_threats(out.threats)
        .with_reason("HTML converted to plain text"))
    }
}
