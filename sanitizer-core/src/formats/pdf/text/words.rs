//! From glyphs to the words of the layer: visibility against the rendered pixels, grouping by
//! gaps and lines, and the character filter.
//!
//! Visibility: a glyph whose box shows no ink variation in the rendered page (white on white,
//! clipped away, painted over, outside the page) was not visible and is dropped, as is text
//! shown in render mode 3. Grouping follows what `pdftotext` does with the original: a word
//! ends at a space, at a gap wider than [`WORD_GAP`] of the font size, at a change of font
//! size or line, or when the text moves backwards.

use super::Word;
use super::extract::{DESCENT, PageGlyph};

/// A gap wider than this fraction of the font size ends a word (pdftotext uses 0.1).
pub const WORD_GAP: f64 = 0.1;
/// A baseline shift larger than this fraction of the font size is a new line (pdftotext: 0.5).
const LINE_SHIFT: f64 = 0.5;
/// A font size change larger than this fraction ends a word (pdftotext: 0.05), so that
/// subscripts and superscripts are words of their own, as pdftotext gives the original.
const SIZE_CHANGE: f64 = 0.05;
/// Moving back by more than this fraction of the font size ends a word (pdftotext: 0.2).
const BACK_STEP: f64 = 0.2;
/// Luminance range below which a glyph box counts as uniform (nothing visible).
const INK_RANGE: u8 = 24;
/// Most pixels read for one glyph: larger boxes are sampled on a grid.
const GLYPH_SAMPLES: u64 = 65_536;
/// Most pixels read for one page, as a multiple of its pixel count: beyond it (a hostile page
/// of huge overlapping glyphs) the remaining glyphs count as not visible.
const PAGE_SCANS: u64 = 8;

/// A rendered page: premultiplied RGBA over an opaque background, `scale` pixels per point.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'p> {
    /// RGBA bytes, row-major, top row first.
    pub rgba: &'p [u8],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels per point.
    pub scale: f64,
}

impl Pixels<'_> {
    /// Pixels [`group`] may read on this page.
    pub fn scan_budget(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * PAGE_SCANS
    }

    /// Whether the page-space box (x0, y0, x1, y1) shows any ink variation; the pixels read
    /// are taken from `budget` (nothing is read, and the box counts as blank, once it is spent).
    pub fn has_ink(&self, bbox: [f64; 4], budget: &mut u64) -> bool {
        let [x0, y0, x1, y1] = bbox;
        let page_h = f64::from(self.height) / self.scale;
        // Inset a little horizontally so a neighbour's anti-aliased edge does not count.
        let inset = (x1 - x0) * 0.1;
        let px0 = ((x0 + inset) * self.scale).floor().max(0.0);
        let px1 = ((x1 - inset) * self.scale)
            .ceil()
            .min(f64::from(self.width));
        let py0 = ((page_h - y1) * self.scale).floor().max(0.0);
        let py1 = ((page_h - y0) * self.scale)
            .ceil()
            .min(f64::from(self.height));
        if !(px0 < px1 && py0 < py1) {
            return false;
        }
        let (px0, px1, py0, py1) = (px0 as usize, px1 as usize, py0 as usize, py1 as usize);
        let area = ((px1 - px0) * (py1 - py0)) as u64;
        // Sample every `step`-th pixel of every `step`-th row of large boxes.
        let step = ((area as f64 / GLYPH_SAMPLES as f64).sqrt().ceil() as usize).max(1);
        let cost = area / (step * step) as u64;
        if cost > *budget {
            return false;
        }
        *budget -= cost;
        let stride = self.width as usize * 4;
        let (mut lo, mut hi) = (u8::MAX, u8::MIN);
        // Start in the x-height band (from 3/5 of the box down, the box being 4/5 ascent),
        // where nearly every glyph has ink: a visible glyph is then settled in a few rows.
        let band = py0 + (py1 - py0) * 3 / 5;
        for row in (band..py1).chain(py0..band).step_by(step) {
            let start = row * stride + px0 * 4;
            let end = row * stride + px1 * 4;
            let Some(line) = self.rgba.get(start..end) else {
                return false;
            };
            for px in line.chunks_exact(4).step_by(step) {
                if let [r, g, b, _] = px {
                    let l = (u32::from(*r) * 77 + u32::from(*g) * 150 + u32::from(*b) * 29) >> 8;
                    let l = u8::try_from(l).unwrap_or(u8::MAX);
                    lo = lo.min(l);
                    hi = hi.max(l);
                }
            }
            if hi.saturating_sub(lo) >= INK_RANGE {
                return true;
            }
        }
        false
    }
}

/// Whether `c` may be written into the layer: no controls, no bidi overrides or isolates, no
/// replacement character (what undecodable input turns into), no private noncharacters.
pub fn allowed_char(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || c == '\u{FFFD}'
        || c == '\u{FEFF}'
        || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// The letters of a Latin presentation-form ligature (what a glyph named `fi` maps to), so
/// that the layer reads and searches as the letters, as text extractors give them.
fn expand_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{FB00}' => "ff",
        '\u{FB01}' => "fi",
        '\u{FB02}' => "fl",
        '\u{FB03}' => "ffi",
        '\u{FB04}' => "ffl",
        '\u{FB05}' | '\u{FB06}' => "st",
        _ => return None,
    })
}

/// The characters of a glyph's Unicode text that may go into the layer, ligatures expanded.
pub fn layer_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().filter(|c| allowed_char(*c)) {
        match expand_ligature(c) {
            Some(letters) => out.push_str(letters),
            None => out.push(c),
        }
    }
    out
}

/// Words of a page and what was dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageWords {
    /// Visible words, in content order.
    pub words: Vec<Word>,
    /// For each word, its baseline direction in quarter turns counter-clockwise (0: left to
    /// right, 1: bottom to top, 2: upside down, 3: top to bottom), rounded to the nearest.
    pub turns: Vec<u8>,
    /// Words dropped because they were not visible.
    pub dropped: usize,
}

/// A word under construction.
struct Run {
    text: String,
    bbox: [f64; 4],
    /// Where the next glyph is expected on the baseline.
    end: (f64, f64),
    dir: (f64, f64),
    size: f64,
    visible: bool,
}

impl Run {
    fn start(g: &PageGlyph, text: String, visible: bool) -> Run {
        Run {
            text,
            bbox: g.bbox,
            end: (
                g.origin.0 + g.dir.0 * g.advance,
                g.origin.1 + g.dir.1 * g.advance,
            ),
            dir: g.dir,
            size: g.size,
            visible,
        }
    }

    /// Whether `g` continues this word.
    fn continues(&self, g: &PageGlyph, visible: bool) -> bool {
        if visible != self.visible {
            return false;
        }
        // As pdftotext: gaps are measured against the current word's font size.
        let size = self.size;
        let dx = g.origin.0 - self.end.0;
        let dy = g.origin.1 - self.end.1;
        // Distance along and across the baseline.
        let along = dx * self.dir.0 + dy * self.dir.1;
        let across = -dx * self.dir.1 + dy * self.dir.0;
        let same_dir = (g.dir.0 - self.dir.0).abs() < 0.05 && (g.dir.1 - self.dir.1).abs() < 0.05;
        same_dir
            && (g.size - size).abs() <= SIZE_CHANGE * size
            && across.abs() <= LINE_SHIFT * size
            && along <= WORD_GAP * size
            && along >= -BACK_STEP * size
    }

    fn extend(&mut self, g: &PageGlyph, text: &str) {
        self.text.push_str(text);
        self.bbox[0] = self.bbox[0].min(g.bbox[0]);
        self.bbox[1] = self.bbox[1].min(g.bbox[1]);
        self.bbox[2] = self.bbox[2].max(g.bbox[2]);
        self.bbox[3] = self.bbox[3].max(g.bbox[3]);
        self.end = (
            g.origin.0 + g.dir.0 * g.advance,
            g.origin.1 + g.dir.1 * g.advance,
        );
        self.size = self.size.max(g.size);
    }

    fn finish(self, out: &mut PageWords) {
        if self.text.is_empty() {
            return;
        }
        if !self.visible {
            out.dropped += 1;
            return;
        }
        // Words along a quarter turn keep their em box; others keep the box around their
        // glyphs, one em across, so that the written size stays the font size.
        let [mut x0, mut y0, mut x1, mut y1] = self.bbox;
        let turns = quarter_turns(self.dir);
        let exact = self.dir.0.abs() < 0.1 || self.dir.1.abs() < 0.1;
        if !exact {
            if turns.is_multiple_of(2) {
                let mid = (y0 + y1) / 2.0;
                (y0, y1) = (mid - self.size / 2.0, mid + self.size / 2.0);
            } else {
                let mid = (x0 + x1) / 2.0;
                (x0, x1) = (mid - self.size / 2.0, mid + self.size / 2.0);
            }
        }
        let vals = [x0, y0, x1, y1];
        if vals.iter().any(|v| !v.is_finite()) || x1 <= x0 || y1 <= y0 {
            return;
        }
        out.words.push(Word {
            text: self.text,
            x0: x0 as f32,
            y0: y0 as f32,
            x1: x1 as f32,
            y1: y1 as f32,
        });
        out.turns.push(turns);
    }
}

/// The baseline direction `dir` (a unit vector) in quarter turns, rounded to the nearest.
fn quarter_turns(dir: (f64, f64)) -> u8 {
    if dir.0.abs() >= dir.1.abs() {
        if dir.0 >= 0.0 { 0 } else { 2 }
    } else if dir.1 > 0.0 {
        1
    } else {
        3
    }
}

/// Where a layer word written `turns` quarter turns from upright starts on its baseline, its
/// font size and its length along the baseline, from its box.
pub fn placement(word: &Word, turns: u8) -> ((f32, f32), f32, f32) {
    let d = DESCENT as f32;
    let (w, h) = (word.x1 - word.x0, word.y1 - word.y0);
    match turns {
        1 => ((word.x1 - d * w, word.y0), w, h),
        2 => ((word.x1, word.y1 - d * h), h, w),
        3 => ((word.x0 + d * w, word.y1), w, h),
        _ => ((word.x0, word.y0 + d * h), h, w),
    }
}

/// Groups the glyphs of a page into words, dropping what `pixels` shows was not visible.
pub fn group(glyphs: &[PageGlyph], pixels: &Pixels<'_>) -> PageWords {
    let mut out = PageWords::default();
    let mut run: Option<Run> = None;
    let mut budget = pixels.scan_budget();
    for g in glyphs {
        let text = layer_text(&g.text);
        let is_space = text.chars().all(char::is_whitespace);
        if is_space || text.chars().any(char::is_whitespace) {
            // A space (or a glyph mapped to several words) ends the current word.
            if let Some(r) = run.take() {
                r.finish(&mut out);
            }
            if is_space {
                continue;
            }
        }
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let visible = !g.invisible && pixels.has_ink(g.bbox, &mut budget);
        match run.as_mut() {
            Some(r) if r.continues(g, visible) => r.extend(g, &text),
            _ => {
                if let Some(r) = run.take() {
                    r.finish(&mut out);
                }
                run = Some(Run::start(g, text, visible));
            }
        }
    }
    if let Some(r) = run.take() {
        r.finish(&mut out);
    }
    out
}
