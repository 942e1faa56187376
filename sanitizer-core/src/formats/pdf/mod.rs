//! PDF: rasterized (default) or cleaned structurally, then re-checked.
//!
//! - [`PdfMode::Rasterize`]: every page is rendered (hayro) and written into a new image-only
//!   PDF ([`rasterize`]); nothing active can survive by construction. Threats found in the
//!   input are still reported, so the verdict and the notice say what was there.
//! - [`PdfMode::Clean`]: active content is removed with lopdf and a fresh file written
//!   ([`clean`]); text stays selectable.
//! - Both: the output is parsed again by another code path and must pass [`recheck`], else the
//!   file is blocked.
//!
//! Fonts the PDF does not embed (Japanese above all) are resolved from the policy's CJK font
//! files ([`fonts`]); text that still has no font gives the `pdf.font_missing` warning.
//!
//! `pdf.text_layer` (default on) puts the original's visible text over rasterized pages as
//! invisible text in a font of our own ([`text`]); with `pdf.ocr` and a lent OCR engine, pages
//! without text are recognised instead. Only Unicode characters cross, never the original's
//! fonts or encodings.

pub mod active;
pub mod clean;
pub mod encode;
pub mod fonts;
pub mod rasterize;
mod recheck;
pub mod text;

pub use recheck::recheck;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::SanitizeError;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::policy::PdfMode;
use crate::report::{Action, Kind};
use crate::threats as t;

/// Warning id: some text could not be given a font; the page may be incomplete.
pub const WARN_FONT_MISSING: &str = "pdf.font_missing";
/// Warning id: the OCR engine failed on some page, which was delivered without a text layer.
pub const WARN_OCR_FAILED: &str = "pdf.ocr_failed";

/// The PDF sanitizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfSanitizer;

/// Threats present in the input, for the report of rasterize mode (where rasterizing removes
/// them all), and the decoded size of its Flate streams charged to the budget before hayro
/// (which has no decompression limit of its own) sees them. A file lopdf cannot parse is still
/// rasterized if hayro can read it; only a tripped limit stops it here.
///
/// Also says whether the file was encrypted with the empty user password (lopdf decrypted it)
/// and whether its page tree had to be rebuilt from its page objects.
fn scan_input(input: &[u8], cx: &mut Context<'_>) -> Result<Scanned, SanitizeError> {
    // lopdf runs on a scratch copy of the budget (a panic inside it must not leave a
    // half-charged budget); what it decoded is then charged to the item.
    let mut scratch = cx.budget().clone();
    let before = scratch.decoded_remaining();
    let scanned = catch_unwind(AssertUnwindSafe(|| {
        let mut doc = clean::load(input, &scratch)?;
        clean::charge_streams(&doc, &mut scratch)?;
        let decrypted = doc.was_encrypted();
        let tree_rebuilt = clean::recover_page_tree(&mut doc);
        let found = active::remove_active(&mut doc);
        Ok::<_, SanitizeError>((found, decrypted, tree_rebuilt))
    }));
    let (mut found, decrypted, tree_rebuilt) = match scanned {
        Ok(Ok(r)) => r,
        Ok(Err(e @ SanitizeError::Limit { .. })) => return Err(e),
        _ => (BTreeSet::new(), false, false),
    };
    cx.budget()
        .charge_decoded(before.saturating_sub(scratch.decoded_remaining()))?;
    if active::has_obfuscated_names(input) {
        found.insert(t::PDF_OBFUSCATED_NAME);
    }
    if active::has_incremental_update(input) {
        found.insert(t::PDF_INCREMENTAL_UPDATE);
    }
    Ok(Scanned {
        found,
        decrypted,
        tree_rebuilt,
    })
}

/// What [`scan_input`] learnt about the input.
struct Scanned {
    found: BTreeSet<&'static str>,
    decrypted: bool,
    tree_rebuilt: bool,
}

impl FormatSanitizer for PdfSanitizer {
    fn name(&self) -> &'static str {
        "pdf"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let policy = cx.policy().pdf.clone();
        cx.budget().check_deadline()?;
        match policy.mode {
            PdfMode::Rasterize => {
                let scanned = scan_input(input, cx)?;
                let found = scanned.found;
                let fonts = fonts::FontResolver::new(cx.fonts());
                // A PDF that opens with the empty user password is decrypted first, as clean
                // mode does, so that both modes agree (README: encrypted inputs).
                // A missing page tree is rebuilt the same way as in clean mode.
                if scanned.decrypted {
                    cx.warn(clean::WARN_ENCRYPTED_EMPTY_PASSWORD);
                }
                if scanned.tree_rebuilt {
                    cx.warn(clean::WARN_PAGE_TREE_REBUILT);
                }
                let repaired = (scanned.decrypted || scanned.tree_rebuilt)
                    .then(|| clean::repaired_copy(input, cx.budget()))
                    .flatten();
                let source = repaired.as_deref().unwrap_or(input);
                let ocr = if policy.ocr { cx.ocr() } else { None };
                let options = rasterize::RasterOptions {
                    dpi: policy.dpi,
                    text_layer: policy.text_layer,
                    ocr,
                    ocr_languages: &policy.ocr_languages,
                    ocr_page_secs: policy.ocr_page_secs,
                };
                let (bytes, stats) = rasterize::rasterize(source, &options, &fonts, cx.budget())?;
                recheck(&bytes, PdfMode::Rasterize)?;
                if stats.font_missing {
                    cx.warn(WARN_FONT_MISSING);
                }
                if stats.ocr_failed > 0 {
                    cx.warn(WARN_OCR_FAILED);
                }
                let detail = serde_json::json!({
                    "mode": "rasterize",
                    "pages": stats.pages,
                    "dpi": policy.dpi,
                    "clamped_pages": stats.clamped,
                    "encodings": stats.encodings,
                    "text_layer": {
                        "enabled": policy.text_layer,
                        "pages": stats.text_pages,
                        "words": stats.words,
                        "words_dropped_invisible": stats.words_dropped,
                        "pages_ocr": stats.ocr_pages,
                        "pages_ocr_failed": stats.ocr_failed,
                    },
                });
                Ok(
                    Rebuilt::new(bytes, Action::Rasterized, Kind::Pdf, "application/pdf")
                        .with_threats(found)
                        .with_reason(format!(
                            "{} page(s) rasterized to images{}; links and active content removed",
                            stats.pages,
                            if stats.text_pages > 0 {
                                "; visible text kept as an invisible text layer"
                            } else {
                                "; text removed"
                            }
                        ))
                        .with_detail(detail),
                )
            }
            PdfMode::Clean => {
                let cleaned = clean::clean(input, cx.budget())?;
                for w in &cleaned.warnings {
                    cx.warn(w);
                }
                let (bytes, found) = (cleaned.bytes, cleaned.threats);
                recheck(&bytes, PdfMode::Clean)?;
                let reason = if found.is_empty() {
                    "rebuilt from its reachable objects; nothing active found".to_owned()
                } else {
                    format!("active content removed: {}", found.join(", "))
                };
                Ok(
                    Rebuilt::new(bytes, Action::Rebuilt, Kind::Pdf, "application/pdf")
                        .with_threats(found)
                        .with_reason(reason)
                        .with_detail(serde_json::json!({"mode": "clean"})),
                )
            }
        }
    }
}

#[cfg(test)]
mod colour_tests;
#[cfg(test)]
mod tests;
