//! The invisible text layer of rasterized pages (`pdf.text_layer`, `pdf.ocr`).
//!
//! Words come from the original's content streams (as Unicode, only where they were visible)
//! or from an OCR engine for pages without text; they are written over the page image in text
//! render mode 3 with one font the output controls. Nothing of the original's fonts, actions,
//! links or annotations crosses.
//!
//! - [`extract`]: a second, text-only interpretation of the page gives its glyphs in page space;
//! - [`words`]: glyphs whose box shows no ink in the rendered page are dropped, the rest are
//!   grouped into [`Word`]s and filtered to allowed characters;
//! - [`font`]: the generated glyph-less font and its per-document `ToUnicode` map;
//! - [`write_words`]: the words as `3 Tr` text (`Tm`, `Tz`, `Tj` per word), after the page
//!   image is painted.
//!
//! Invariant: the layer's bytes are CIDs of our own font; the only text that reaches the
//! output is the characters of [`Word::text`] that pass [`words::allowed_char`], through the
//! `ToUnicode` map written by [`font::LayerFont`].

pub mod extract;
pub mod font;
pub mod words;

use std::time::Instant;

use pdf_writer::types::TextRenderingMode;
use pdf_writer::{Content, Name, Str};

use crate::pipeline::{Ocr, OcrWord};

pub use words::{PageWords, Pixels};

/// One word of the text layer, positioned in page space (PDF points, origin bottom left, the
/// same space as the rasterized page's MediaBox).
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as Unicode text (no control characters).
    pub text: String,
    /// Left edge.
    pub x0: f32,
    /// Bottom edge (descender line).
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
}

/// The text of one rasterized page, ready to be written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageText {
    /// Words for the layer.
    pub words: Vec<Word>,
    /// Direction of each word in quarter turns ([`PageWords::turns`]); missing means upright.
    pub turns: Vec<u8>,
    /// Words of the original dropped as invisible.
    pub dropped: usize,
    /// Whether the words come from OCR.
    pub ocr: bool,
    /// The OCR engine's error, when it failed (the page then has no layer).
    pub ocr_error: Option<String>,
}

/// Rounds to 1/100: finer positions buy nothing and cost bytes on every word.
fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Writes `words` into `content` as invisible text in `font`; returns how many were written
/// (words with no allowed character or a degenerate box are skipped).
///
/// One text object per page (`BT 3 Tr ... ET`), each word placed by `Tm` with its own `Tz`
/// and `Tf` only where they change: the same text as a `BT`/`ET` per word, in about half the
/// bytes.
pub fn write_words(
    content: &mut Content,
    font: &mut font::LayerFont,
    words: &[Word],
    turns: &[u8],
) -> usize {
    let mut written = 0;
    let mut state: Option<(f32, f32)> = None;
    for (i, word) in words.iter().enumerate() {
        let turn = turns.get(i).copied().unwrap_or(0);
        let (origin, size, width) = words::placement(word, turn);
        let text = words::layer_text(&word.text);
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let n = text.chars().count();
        let size = round2(size);
        let finite = [origin.0, origin.1, size, width]
            .iter()
            .all(|v| v.is_finite());
        if n == 0 || !finite || size <= 0.01 || width <= 0.0 {
            continue;
        }
        let Some(bytes) = font.encode(&text) else {
            continue;
        };
        let natural = n as f32 * size * font::ADVANCE / 1000.0;
        let scaling = (1000.0 * width / natural).round().clamp(10.0, 100_000.0) / 10.0;
        let (last_size, last_scaling) = match state {
            Some(s) => s,
            None => {
                content
                    .begin_text()
                    .set_text_rendering_mode(TextRenderingMode::Invisible);
                (f32::NAN, f32::NAN)
            }
        };
        if size != last_size {
            content.set_font(Name(font::RESOURCE_NAME), size);
        }
        if scaling != last_scaling {
            content.set_horizontal_scaling(scaling);
        }
        state = Some((size, scaling));
        let (cos, sin) = match turn {
            1 => (0.0, 1.0),
            2 => (-1.0, 0.0),
            3 => (0.0, -1.0),
            _ => (1.0, 0.0),
        };
        content
            .set_text_matrix([cos, sin, -sin, cos, round2(origin.0), round2(origin.1)])
            .show(Str(&bytes));
        written += 1;
    }
    if state.is_some() {
        content.end_text();
    }
    written
}

/// The page as 8-bit grey for OCR.
pub fn grey(pixels: &Pixels<'_>) -> Vec<u8> {
    pixels
        .rgba
        .chunks_exact(4)
        .map(|px| match px {
            [r, g, b, _] => {
                let l = (u32::from(*r) * 77 + u32::from(*g) * 150 + u32::from(*b) * 29) >> 8;
                u8::try_from(l).unwrap_or(u8::MAX)
            }
            _ => u8::MAX,
        })
        .collect()
}

/// Converts OCR words (pixels, origin top left) to page-space [`Word`]s; words outside the
/// image or without allowed characters are dropped.
pub fn from_ocr(words: &[OcrWord], pixels: &Pixels<'_>) -> Vec<Word> {
    let scale = pixels.scale as f32;
    let page_h = pixels.height as f32 / scale;
    words
        .iter()
        .filter_map(|w| {
            let text: String = w
                .text
                .chars()
                .filter(|c| words::allowed_char(*c) && !c.is_whitespace())
                .collect();
            let right = w.left.checked_add(w.width)?.min(pixels.width);
            let bottom = w.top.checked_add(w.height)?.min(pixels.height);
            if text.is_empty() || right <= w.left || bottom <= w.top {
                return None;
            }
            Some(Word {
                text,
                x0: w.left as f32 / scale,
                y0: page_h - bottom as f32 / scale,
                x1: right as f32 / scale,
                y1: page_h - w.top as f32 / scale,
            })
        })
        .collect()
}

/// What the OCR hook needs besides the page.
#[derive(Clone, Copy)]
pub struct OcrRequest<'o> {
    /// The engine.
    pub engine: &'o dyn Ocr,
    /// Tesseract language list.
    pub languages: &'o str,
    /// When the engine must give up.
    pub deadline: Instant,
}

impl std::fmt::Debug for OcrRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrRequest")
            .field("languages", &self.languages)
            .finish_non_exhaustive()
    }
}

/// Recognises a page that has no words of its own.
pub fn recognize(request: OcrRequest<'_>, pixels: &Pixels<'_>) -> PageText {
    if request.deadline <= std::time::Instant::now() {
        return PageText {
            ocr: true,
            ocr_error: Some("no time left in the item's budget for OCR".into()),
            ..PageText::default()
        };
    }
    let dpi = (pixels.scale * 72.0).round().clamp(1.0, 100_000.0) as u32;
    let grey = grey(pixels);
    match request.engine.recognize(
        &grey,
        pixels.width,
        pixels.height,
        dpi,
        request.languages,
        request.deadline,
    ) {
        Ok(found) => PageText {
            words: from_ocr(&found, pixels),
            turns: Vec::new(),
            dropped: 0,
            ocr: true,
            ocr_error: None,
        },
        Err(e) => PageText {
            ocr: true,
            ocr_error: Some(e),
            ..PageText::default()
        },
    }
}

#[cfg(test)]
mod tests;
