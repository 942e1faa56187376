//! Rasterize mode: every page rendered with hayro and written into a new, image-only PDF.
//!
//! Pipeline, page by page so that memory does not grow with the page count:
//! 1. the document is opened once on the calling thread to size every page; each page's scale
//!    is clamped so it fits `max_pixels_per_image` (and hayro's 65,535-pixel canvas side), and
//!    all pages are charged to the pixel budget **before** anything is rendered;
//! 2. worker threads (one per core, at most [`MAX_WORKERS`]) each open their own copy of the
//!    document (hayro's render cache is not `Send`), claim pages in order, render and encode
//!    them ([`super::encode`]); a worker may run at most [`WINDOW`] pages ahead of the writer;
//! 3. the calling thread writes the pages in their original order with pdf-writer: a catalog,
//!    a page tree, and per page a MediaBox of the rendered (cropped, rotated) size, one image
//!    XObject and a content stream that paints it. No metadata, annotations or actions.
//!
//! With `text_layer` on, each worker also interprets its page a second time for the glyphs
//! (hayro's render device is private, so the render itself cannot hand them out), keeps the
//! words the rendered pixels show were visible, or asks the lent OCR engine for a page without
//! any; the writer puts them over the image as invisible text in the one font of [`text`]
//! (written once per document).
//!
//! A render that panics is caught in its worker and fails the document; the deadline is
//! checked before every page (a single page's render cannot be interrupted: the daemon's
//! worker process limits are the backstop for that).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use hayro::hayro_interpret::{InterpreterCache, InterpreterSettings, InterpreterWarning};
use hayro::hayro_syntax::{LoadPdfError, Pdf as HayroPdf, PdfData};
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use pdf_writer::{Content, Filter, Name, Pdf, Rect, Ref};

use crate::error::SanitizeError;
use crate::limits::{Budget, LimitKind};
use crate::pipeline::Ocr;

use super::encode::{EncodedPage, encode_page, write_images};
use super::fonts::FontResolver;
use super::text::{self, OcrRequest, PageText, Pixels, font::LayerFont};

/// Most render threads used for one document.
pub const MAX_WORKERS: usize = 4;
/// How many pages a worker may render ahead of the writer (bounds memory for slow pages).
pub const WINDOW: usize = 8;
/// hayro's canvas side is a `u16`.
const MAX_SIDE: f32 = 65_000.0;

/// One page's geometry: its size in points (after crop box and rotation) and the render scale.
#[derive(Debug, Clone, Copy)]
struct PagePlan {
    width_pt: f32,
    height_pt: f32,
    scale: f32,
}

/// What [`rasterize`] does besides rendering.
#[derive(Clone, Copy)]
pub struct RasterOptions<'o> {
    /// Render resolution.
    pub dpi: u32,
    /// Write an invisible text layer of the original's visible text.
    pub text_layer: bool,
    /// OCR engine for pages without text (only used with `text_layer`).
    pub ocr: Option<&'o dyn Ocr>,
    /// Languages for the OCR engine (`jpn+eng`).
    pub ocr_languages: &'o str,
    /// Wall-clock seconds the OCR of one page may take.
    pub ocr_page_secs: u32,
}

impl std::fmt::Debug for RasterOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RasterOptions")
            .field("dpi", &self.dpi)
            .field("text_layer", &self.text_layer)
            .field("ocr", &self.ocr.is_some())
            .field("ocr_languages", &self.ocr_languages)
            .field("ocr_page_secs", &self.ocr_page_secs)
            .finish()
    }
}

impl RasterOptions<'_> {
    /// Image only, at `dpi`.
    pub fn image_only(dpi: u32) -> RasterOptions<'static> {
        RasterOptions {
            dpi,
            text_layer: false,
            ocr: None,
            ocr_languages: "",
            ocr_page_secs: 0,
        }
    }
}

/// Statistics for the report and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct RasterStats {
    /// Pages written.
    pub pages: usize,
    /// Pages whose scale was lowered to fit the pixel limit.
    pub clamped: usize,
    /// Pages per storage kind (`g4`, `grey`, `indexed`, `grey_jpeg`, `jpeg`).
    pub encodings: BTreeMap<&'static str, usize>,
    /// Whether some text had no font (the page may be incomplete).
    pub font_missing: bool,
    /// Pages with a text layer.
    pub text_pages: usize,
    /// Words written into the text layer.
    pub words: usize,
    /// Words of the original not written because they were not visible.
    pub words_dropped: usize,
    /// Pages given to the OCR engine.
    pub ocr_pages: usize,
    /// Pages whose OCR failed (delivered without a layer).
    pub ocr_failed: usize,
}

/// Render settings of the interpreter for one thread.
fn interpreter_settings(fonts: &FontResolver) -> InterpreterSettings {
    let resolve = fonts.clone();
    let warn = fonts.clone();
    InterpreterSettings {
        font_resolver: Arc::new(move |q| resolve.resolve(q)),
        warning_sink: Arc::new(move |w| {
            if matches!(w, InterpreterWarning::UnsupportedFont) {
                warn.mark_missing();
            }
        }),
        ..InterpreterSettings::default()
    }
}

fn open(data: &PdfData) -> Result<HayroPdf, SanitizeError> {
    HayroPdf::new(data.clone()).map_err(|e| match e {
        LoadPdfError::Decryption(_) => SanitizeError::encrypted(
            crate::threats::PDF_ENCRYPTED,
            "encrypted PDF that cannot be opened without a password",
        ),
        _ => SanitizeError::Malformed("PDF could not be parsed".into()),
    })
}

/// Sizes every page and clamps its scale; charges the pixels before any rendering.
fn plan(
    pdf: &HayroPdf,
    dpi: u32,
    budget: &mut Budget,
    stats: &mut RasterStats,
) -> Result<Vec<PagePlan>, SanitizeError> {
    let pages = pdf.pages();
    budget.check_pages(pages.len() as u64)?;
    if pages.is_empty() {
        return Err(SanitizeError::Malformed("PDF without pages".into()));
    }
    let max_pixels = budget.limits().max_pixels_per_image as f64;
    let mut plans = Vec::with_capacity(pages.len());
    for page in pages.iter() {
        let (w, h) = page.render_dimensions();
        if !(w.is_finite() && h.is_finite()) || w < 1.0 || h < 1.0 {
            return Err(SanitizeError::Malformed("page with an invalid size".into()));
        }
        let mut scale = dpi as f32 / 72.0;
        let area = f64::from(w * scale) * f64::from(h * scale);
        if area > max_pixels {
            scale = (max_pixels / (f64::from(w) * f64::from(h))).sqrt() as f32 * 0.999;
            stats.clamped += 1;
        }
        let side = w.max(h) * scale;
        if side > MAX_SIDE {
            scale = MAX_SIDE / w.max(h);
            stats.clamped += 1;
        }
        let pw = ((w * scale) as u64).max(1);
        let ph = ((h * scale) as u64).max(1);
        budget.charge_pixels(pw, ph)?;
        plans.push(PagePlan {
            width_pt: w,
            height_pt: h,
            scale,
        });
    }
    Ok(plans)
}

/// Writer/worker coordination: the next page to claim and the number already written.
struct Progress {
    next: usize,
    written: usize,
    abort: bool,
}

/// A rendered, encoded page and its text.
struct RenderedPage {
    image: EncodedPage,
    text: PageText,
}

type PageResult = Result<RenderedPage, SanitizeError>;

/// What a worker needs for the text of its pages.
struct TextJob<'a, 'o> {
    cache: InterpreterCache<'a>,
    ocr: Option<OcrRequest<'o>>,
}

/// The visible words of `page` (or its OCR words when it has none); a panic in the text-only
/// interpretation costs the page its layer, not the document.
fn page_text<'a>(
    page: &'a hayro::hayro_syntax::page::Page<'a>,
    job: &TextJob<'a, '_>,
    settings: &InterpreterSettings,
    pixels: &Pixels<'_>,
) -> PageText {
    let found = catch_unwind(AssertUnwindSafe(|| {
        let glyphs = text::extract::page_glyphs(page, &job.cache, settings);
        text::words::group(&glyphs.glyphs, pixels)
    }))
    .unwrap_or_default();
    match job.ocr {
        Some(request) if found.words.is_empty() => PageText {
            dropped: found.dropped,
            ..text::recognize(request, pixels)
        },
        _ => PageText {
            words: found.words,
            turns: found.turns,
            dropped: found.dropped,
            ..PageText::default()
        },
    }
}

fn render_one<'a>(
    pdf: &'a HayroPdf,
    cache: &RenderCache<'a>,
    settings: &InterpreterSettings,
    text_job: Option<&TextJob<'a, '_>>,
    index: usize,
    plan: PagePlan,
) -> PageResult {
    let page = pdf
        .pages()
        .get(index)
        .ok_or_else(|| SanitizeError::Internal("page vanished".into()))?;
    let pixmap = hayro::render(
        page,
        cache,
        settings,
        &RenderSettings::default(),
        &PixmapSettings {
            x_scale: plan.scale,
            y_scale: plan.scale,
            bg_color: hayro::vello_cpu::color::palette::css::WHITE,
        },
    );
    let (width, height) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
    let rgba = pixmap.data_as_u8_slice();
    let text = match text_job {
        Some(job) => {
            let pixels = Pixels {
                rgba,
                width,
                height,
                scale: f64::from(plan.scale),
            };
            page_text(page, job, settings, &pixels)
        }
        None => PageText::default(),
    };
    Ok(RenderedPage {
        image: encode_page(rgba, width, height)?,
        text,
    })
}

fn worker(
    data: &PdfData,
    plans: &[PagePlan],
    options: &RasterOptions<'_>,
    fonts: &FontResolver,
    progress: &(Mutex<Progress>, Condvar),
    deadline: Instant,
    tx: &mpsc::Sender<(usize, PageResult)>,
) {
    let opened = catch_unwind(AssertUnwindSafe(|| open(data)))
        .unwrap_or_else(|_| Err(SanitizeError::Malformed("PDF could not be parsed".into())));
    let pdf = match opened {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send((0, Err(e)));
            return;
        }
    };
    let cache = RenderCache::new();
    let settings = interpreter_settings(fonts);
    let mut text_job = options.text_layer.then(|| TextJob {
        cache: InterpreterCache::new(),
        ocr: None,
    });
    // OCR takes seconds a page: it may use the first two thirds of the item's time, so a long
    // scan still finishes (its last pages without a layer, with a warning) instead of tripping
    // the deadline and being blocked.
    let started = Instant::now();
    let ocr_cutoff = started + deadline.saturating_duration_since(started) * 2 / 3;
    let (lock, cvar) = progress;
    loop {
        let index = {
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !p.abort && p.next < plans.len() && p.next >= p.written.saturating_add(WINDOW) {
                p = cvar.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.abort || p.next >= plans.len() {
                return;
            }
            p.next += 1;
            p.next - 1
        };
        let result = if Instant::now() >= deadline {
            Err(SanitizeError::limit(
                LimitKind::Deadline,
                "deadline passed while rendering",
            ))
        } else if let Some(plan) = plans.get(index) {
            if let Some(job) = text_job.as_mut() {
                let now = Instant::now();
                let page_deadline = if now >= ocr_cutoff {
                    now
                } else {
                    (now + std::time::Duration::from_secs(options.ocr_page_secs.into()))
                        .min(ocr_cutoff)
                };
                job.ocr = options.ocr.map(|engine| OcrRequest {
                    engine,
                    languages: options.ocr_languages,
                    deadline: page_deadline.min(deadline),
                });
            }
            catch_unwind(AssertUnwindSafe(|| {
                render_one(&pdf, &cache, &settings, text_job.as_ref(), index, *plan)
            }))
            .unwrap_or_else(|_| {
                Err(SanitizeError::Malformed(format!(
                    "page {} could not be rendered",
                    index + 1
                )))
            })
        } else {
            Err(SanitizeError::Internal("page index out of range".into()))
        };
        if tx.send((index, result)).is_err() {
            return;
        }
    }
}

fn to_i32(n: usize) -> Result<i32, SanitizeError> {
    i32::try_from(n).map_err(|_| SanitizeError::Internal("object number overflow".into()))
}

/// Hands out object numbers: catalog 1, page tree 2, then everything else in order.
#[derive(Debug)]
pub struct RefAlloc(i32);

impl RefAlloc {
    fn new() -> Self {
        RefAlloc(3)
    }

    /// An allocator for unit tests that write objects outside a whole document.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        RefAlloc::new()
    }

    /// The next free object number.
    pub fn bump(&mut self) -> Result<Ref, SanitizeError> {
        let r = Ref::new(self.0);
        self.0 = self
            .0
            .checked_add(1)
            .ok_or_else(|| SanitizeError::Internal("object number overflow".into()))?;
        Ok(r)
    }
}

/// Writes one page (its image, then its text layer in `layer`, created on first use); returns
/// its object, the words written and the bytes of its content stream.
fn write_page(
    out: &mut Pdf,
    alloc: &mut RefAlloc,
    plan: PagePlan,
    page: &RenderedPage,
    layer: &mut Option<LayerFont>,
) -> Result<(Ref, usize, usize), SanitizeError> {
    let page_ref = alloc.bump()?;
    let content_ref = alloc.bump()?;
    let mut content = Content::new();
    let xobjects = write_images(
        out,
        alloc,
        &page.image,
        plan.width_pt,
        plan.height_pt,
        &mut content,
    )?;
    let mut words = 0;
    if !page.text.words.is_empty() {
        if layer.is_none() {
            *layer = Some(LayerFont::new(alloc)?);
        }
        if let Some(font) = layer.as_mut() {
            words = text::write_words(&mut content, font, &page.text.words, &page.text.turns);
        }
    }
    let content = content.finish();
    let content_len;
    if words > 0 {
        let packed = text::font::flate(&content)?;
        content_len = packed.len();
        out.stream(content_ref, &packed).filter(Filter::FlateDecode);
    } else {
        content_len = content.len();
        out.stream(content_ref, &content);
    }
    let mut p = out.page(page_ref);
    p.media_box(Rect::new(0.0, 0.0, plan.width_pt, plan.height_pt));
    p.parent(Ref::new(2));
    p.contents(content_ref);
    let mut resources = p.resources();
    let mut names = resources.x_objects();
    for (name, r) in &xobjects {
        names.pair(Name(name.as_bytes()), *r);
    }
    drop(names);
    if words > 0
        && let Some(font) = layer.as_ref()
    {
        resources
            .fonts()
            .pair(Name(text::font::RESOURCE_NAME), font.font_ref());
    }
    Ok((page_ref, words, content_len))
}

/// Renders `input` at `options.dpi` into a new image-only PDF, with an invisible text layer
/// when `options.text_layer` is on.
pub fn rasterize(
    input: &[u8],
    options: &RasterOptions<'_>,
    fonts: &FontResolver,
    budget: &mut Budget,
) -> Result<(Vec<u8>, RasterStats), SanitizeError> {
    let dpi = options.dpi;
    let data: PdfData = Arc::new(input.to_vec()).into();
    let mut stats = RasterStats::default();
    let plans = {
        let pdf = open(&data)?;
        plan(&pdf, dpi, budget, &mut stats)?
    };
    let n = plans.len();
    let workers = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
        .min(n);
    let deadline = budget.deadline();
    let max_output = budget.limits().max_output_bytes;
    let progress = (
        Mutex::new(Progress {
            next: 0,
            written: 0,
            abort: false,
        }),
        Condvar::new(),
    );
    let mut out = Pdf::new();
    let mut alloc = RefAlloc::new();
    let mut kids: Vec<Ref> = Vec::with_capacity(n);
    let mut layer: Option<LayerFont> = None;
    let mut out_bytes: u64 = 0;

    let written: Result<(), SanitizeError> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, PageResult)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (data, plans, progress) = (&data, &plans, &progress);
            scope.spawn(move || worker(data, plans, options, fonts, progress, deadline, &tx));
        }
        drop(tx);
        let mut pending: BTreeMap<usize, RenderedPage> = BTreeMap::new();
        let mut next = 0usize;
        let result = (|| {
            while next < n {
                let (index, page) = rx
                    .recv()
                    .map_err(|_| SanitizeError::Internal("render workers stopped".into()))?;
                pending.insert(index, page?);
                while let Some(page) = pending.remove(&next) {
                    budget.check_deadline()?;
                    let plan = plans
                        .get(next)
                        .copied()
                        .ok_or_else(|| SanitizeError::Internal("plan missing".into()))?;
                    out_bytes = out_bytes.saturating_add(page.image.byte_len() as u64);
                    *stats.encodings.entry(page.image.label()).or_insert(0) += 1;
                    let (page_ref, words, content_len) =
                        write_page(&mut out, &mut alloc, plan, &page, &mut layer)?;
                    out_bytes = out_bytes.saturating_add(content_len as u64);
                    if out_bytes > max_output {
                        return Err(SanitizeError::limit(
                            LimitKind::OutputBytes,
                            format!("rasterized output over {max_output} bytes"),
                        ));
                    }
                    kids.push(page_ref);
                    stats.words += words;
                    stats.text_pages += usize::from(words > 0);
                    stats.words_dropped += page.text.dropped;
                    stats.ocr_pages += usize::from(page.text.ocr);
                    stats.ocr_failed += usize::from(page.text.ocr_error.is_some());
                    next += 1;
                    let (lock, cvar) = &progress;
                    lock.lock().unwrap_or_else(|e| e.into_inner()).written = next;
                    cvar.notify_all();
                }
            }
            Ok(())
        })();
        let (lock, cvar) = &progress;
        lock.lock().unwrap_or_else(|e| e.into_inner()).abort = true;
        cvar.notify_all();
        result
    });
    written?;
    if let Some(font) = layer {
        font.write(&mut out, &mut alloc)?;
    }

    out.pages(Ref::new(2)).kids(kids).count(to_i32(n)?);
    out.catalog(Ref::new(1)).pages(Ref::new(2));
    stats.pages = n;
    stats.font_missing = fonts.font_missing();
    Ok((out.finish(), stats))
}
