//! HTML to plain text: nothing of the HTML survives (no tags, scripts, styles, remote
//! resources); links are kept as text and rewritten by the link policy.

mod detect;
mod render;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};

use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::policy::Policy;
use crate::report::{Action, Kind};
use render::{Renderer, Sink};

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
///
/// Layout: paragraphs and headings become blocks separated by a blank line, `<br>` a line
/// break, list items `・ item` / `1. item` (nested lists indented by two spaces), table rows one
/// line each with cells separated by ` | `, `<blockquote>` lines prefixed with `> `, `<pre>`
/// kept as is. Whitespace collapses as in HTML, except that a source line break between two
/// East Asian wide characters disappears (no space inside Japanese sentences).
///
/// Links: `anchor text (URL)`, the URL rewritten by `policy.links.mode` (defanged by default);
/// printed once when the anchor text is the URL. Only http(s), ftp, mailto, tel, `www.` and
/// protocol-relative hrefs are printed. URLs in the text itself are rewritten the same way.
/// Images: `[alt text]` when there is alt text; image URLs are never printed.
///
/// Nothing of the markup survives: script, style, title, template and iframe contents are
/// dropped, comments ignored, character references decoded (`&nbsp;` becomes a space).
pub fn html_to_text(html: &str, policy: &Policy) -> HtmlText {
    let sink = Sink(RefCell::new(Renderer::new(policy.links.mode, html.len())));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    // The sink never asks to pause for scripts, so one feed consumes everything.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let (text, links, threats) = tokenizer.sink.0.into_inner().finish();
    HtmlText {
        text,
        threats,
        links,
    }
}

/// Decodes an HTML file: BOM, then `<meta charset>` in the first 1024 bytes, then UTF-8 if
/// valid, else the encoding guessed by chardetng (Shift_JIS, EUC-JP, ISO-2022-JP, ...).
pub fn decode_html(bytes: &[u8]) -> String {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(bytes.get(bom..).unwrap_or_default());
        return text.into_owned();
    }
    if let Some(enc) = meta_charset(bytes.get(..1024).unwrap_or(bytes)) {
        return crate::mail::jis::decode_as(enc, bytes).0.into_owned();
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    det.feed(bytes, true);
    let enc = det.guess(Some(b"jp"), chardetng::Utf8Detection::Allow);
    crate::mail::jis::decode_as(enc, bytes).0.into_owned()
}

/// `<meta charset="x">` or `<meta http-equiv=content-type content="...; charset=x">`.
fn meta_charset(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = find(lower.get(from..)?, b"charset") {
        let after = lower.get(from + p + 7..)?;
        let after = after.strip_prefix(b"=").or_else(|| {
            let t = after.trim_ascii_start();
            t.strip_prefix(b"=")
        });
        if let Some(v) = after {
            let v = v.trim_ascii_start();
            let v = v
                .strip_prefix(b"\"")
                .or_else(|| v.strip_prefix(b"'"))
                .unwrap_or(v);
            let end = v
                .iter()
                .position(|b| matches!(b, b'"' | b'\'' | b';' | b'>' | b' ' | b'/'))
                .unwrap_or(v.len());
            // UTF-16 labels in a meta are treated as UTF-8 (HTML spec).
            return encoding_rs::Encoding::for_label(v.get(..end)?).map(|e| e.output_encoding());
        }
        from += p + 7;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// HTML files become UTF-8 text files.
#[derive(Debug, Clone, Copy)]
pub struct HtmlSanitizer;

impl FormatSanitizer for HtmlSanitizer {
    fn name(&self) -> &'static str {
        "html"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let html = decode_html(input);
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
