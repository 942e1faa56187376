//! Glyphs of one page as Unicode with their boxes, from a text-only interpretation.
//!
//! hayro's renderer device is private, so the glyphs cannot be taken from the render itself:
//! the page is interpreted a second time with [`GlyphCollector`], a [`Device`] that keeps the
//! glyph runs and ignores paths, images and clips (so it costs a fraction of the render).
//! Positions are in page space: the interpretation starts from the page's initial transform
//! without the y flip, i.e. PDF points with the origin at the bottom left of the rendered
//! (cropped, rotated) page — the space of the output's MediaBox.

use hayro::hayro_interpret::font::{Glyph, GlyphRun};
use hayro::hayro_interpret::hayro_cmap::WritingMode;
use hayro::hayro_interpret::{
    BlendMode, ClipPath, Context, Device, DrawMode, DrawProps, Image, ImageDrawProps,
    InterpreterCache, InterpreterSettings, SoftMask, TransformExt, interpret_page,
};
use hayro::hayro_syntax::page::Page;
use hayro::kurbo::{Affine, BezPath, Point, Rect};

/// Glyph space units per em in hayro's glyph transforms.
const UNITS_PER_EM: f64 = 1000.0;
/// Advance assumed when a font gives none (half an em).
const DEFAULT_ADVANCE: f64 = 500.0;
/// Descent and ascent of the box given to every glyph, in em (the layer font uses the same).
pub const DESCENT: f64 = 0.2;
/// See [`DESCENT`].
pub const ASCENT: f64 = 0.8;
/// Most glyphs kept for one page (a hostile page could show millions).
pub const MAX_GLYPHS: usize = 200_000;

/// One shown glyph.
#[derive(Debug, Clone, PartialEq)]
pub struct PageGlyph {
    /// Its Unicode text (may be several characters for ligatures), unfiltered.
    pub text: String,
    /// Origin on the baseline, page space.
    pub origin: (f64, f64),
    /// Baseline direction: unit vector along the advance.
    pub dir: (f64, f64),
    /// Font size in page space (length of one em, perpendicular to the baseline).
    pub size: f64,
    /// Advance in page space along `dir`.
    pub advance: f64,
    /// Axis-aligned box of the glyph's em square ([-DESCENT, ASCENT] em high, one advance
    /// wide) in page space: x0, y0, x1, y1.
    pub bbox: [f64; 4],
    /// Shown with a mode that paints nothing (render mode 3 or clip-only).
    pub invisible: bool,
}

impl PageGlyph {
    /// Whether the baseline runs left to right, upright (within about 6 degrees).
    pub fn is_horizontal(&self) -> bool {
        self.dir.0 > 0.0 && self.dir.1.abs() < 0.1 * self.dir.0
    }
}

/// A device that collects glyphs and discards everything else.
#[derive(Debug, Default)]
pub struct GlyphCollector {
    /// The glyphs, in content-stream order.
    pub glyphs: Vec<PageGlyph>,
    /// The previous run's signature, so that fill-then-stroke (render mode 2) is kept once.
    last_run: Option<(usize, [f64; 6], [f64; 6])>,
    /// Glyphs not kept because of [`MAX_GLYPHS`].
    pub overflow: usize,
}

fn run_signature(run: &GlyphRun<'_, '_>, ctm: Affine) -> Option<(usize, [f64; 6], [f64; 6])> {
    let glyphs = run.glyphs();
    let first = glyphs.first()?;
    let last = glyphs.last()?;
    Some((
        glyphs.len(),
        (ctm * first.transform()).as_coeffs(),
        (ctm * last.transform()).as_coeffs(),
    ))
}

fn unicode(glyph: &Glyph<'_>) -> Option<String> {
    use hayro::hayro_interpret::hayro_cmap::BfString;
    match glyph.as_unicode()? {
        BfString::Char(c) => Some(c.to_string()),
        BfString::String(s) => Some(s),
    }
}

fn advance_units(glyph: &Glyph<'_>) -> f64 {
    let adv = match glyph {
        Glyph::Outline(g) => g.advance_width(),
        Glyph::Type3(_) => None,
    };
    match adv {
        Some(a) if a.is_finite() && a > 0.0 => f64::from(a),
        _ => DEFAULT_ADVANCE,
    }
}

fn finite(p: Point) -> bool {
    p.x.is_finite() && p.y.is_finite()
}

impl GlyphCollector {
    fn push_run(&mut self, run: &GlyphRun<'_, '_>, ctm: Affine, invisible: bool) {
        let sig = run_signature(run, ctm);
        if sig.is_some() && sig == self.last_run {
            return;
        }
        self.last_run = sig;
        // Vertical writing (縦書き, a `-V` CMap): glyphs stand upright and follow each other
        // down the column, one em apart; the word runs along that column.
        let vertical = matches!(run.writing_mode(), WritingMode::Vertical);
        for g in run.glyphs() {
            if self.glyphs.len() >= MAX_GLYPHS {
                self.overflow = self.overflow.saturating_add(1);
                continue;
            }
            let Some(text) = unicode(g) else { continue };
            let m = ctm * g.transform();
            let adv = advance_units(g);
            let o = m * Point::new(0.0, 0.0);
            let x = m * Point::new(UNITS_PER_EM, 0.0);
            let up = m * Point::new(0.0, UNITS_PER_EM);
            if !(finite(o) && finite(x) && finite(up)) {
                continue;
            }
            let along = x - o;
            let across = up - o;
            let em_len = along.hypot();
            if em_len <= 1e-6 {
                continue;
            }
            let mut dir = (along.x / em_len, along.y / em_len);
            // The em measured perpendicular to the baseline (robust to skew).
            let size = (along.x * across.y - along.y * across.x).abs() / em_len;
            if !(size.is_finite() && size > 1e-3) {
                continue;
            }
            let mut advance = adv / UNITS_PER_EM * em_len;
            if vertical {
                let up_len = across.hypot();
                if up_len <= 1e-6 {
                    continue;
                }
                dir = (-across.x / up_len, -across.y / up_len);
                advance = up_len;
            }
            let corners = [
                m * Point::new(0.0, -DESCENT * UNITS_PER_EM),
                m * Point::new(adv, -DESCENT * UNITS_PER_EM),
                m * Point::new(adv, ASCENT * UNITS_PER_EM),
                m * Point::new(0.0, ASCENT * UNITS_PER_EM),
            ];
            let mut bbox = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
            for c in corners {
                bbox[0] = bbox[0].min(c.x);
                bbox[1] = bbox[1].min(c.y);
                bbox[2] = bbox[2].max(c.x);
                bbox[3] = bbox[3].max(c.y);
            }
            self.glyphs.push(PageGlyph {
                text,
                origin: (o.x, o.y),
                dir,
                size,
                advance,
                bbox,
                invisible,
            });
        }
    }
}

impl<'a> Device<'a> for GlyphCollector {
    fn draw_path(&mut self, _: &BezPath, _: DrawProps<'a>, _: &DrawMode) {}
    fn push_clip_path(&mut self, _: &ClipPath) {}
    fn push_clip_rect(&mut self, _: &Rect) {}
    fn push_transparency_group(&mut self, _: f32, _: Option<SoftMask<'a>>, _: BlendMode) {}
    fn draw_glyph_run(&mut self, run: &GlyphRun<'_, 'a>, props: DrawProps<'a>, mode: &DrawMode) {
        self.push_run(run, props.transform, matches!(mode, DrawMode::Invisible));
    }
    fn draw_image(&mut self, _: Image<'a, '_>, _: ImageDrawProps<'a>) {}
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}
}

/// Interprets `page` once without rendering and returns its glyphs in page space.
pub fn page_glyphs<'a>(
    page: &'a Page<'a>,
    cache: &InterpreterCache<'a>,
    settings: &InterpreterSettings,
) -> GlyphCollector {
    let (w, h) = page.render_dimensions();
    let transform = page.initial_transform(false).to_kurbo();
    let mut context = Context::new(
        transform,
        Rect::new(0.0, 0.0, f64::from(w), f64::from(h)),
        cache,
        page.xref(),
        settings.clone(),
    );
    let mut device = GlyphCollector::default();
    interpret_page(page, &mut context, &mut device);
    device
}
