//! Shared pieces of the Office sanitizers (OOXML, ODF): a bounded package reader and writer,
//! and bounded XML helpers.
//!
//! Invariants:
//! - Every member is expanded through [`read_capped`](crate::limits::read_capped) and its compression ratio checked; the
//!   member count is capped by `limits.max_parts` before anything is expanded.
//! - Encrypted members, duplicate names (after case folding) and names with `..`, absolute paths
//!   or backslashes make the whole package malformed: a package is never half-read.
//! - XML is read without DTDs: a `<!DOCTYPE` or an entity other than the five predefined ones
//!   and character references is an error, so no entity expansion can happen. Nesting is capped
//!   at [`MAX_XML_DEPTH`](xml::MAX_XML_DEPTH) and long loops check the deadline.

pub mod package;
pub mod xml;

pub use package::{Package, PackageWriter};

use crate::error::SanitizeError;
use crate::pipeline::{Context, Rebuilt};
use crate::report::Kind;

/// Office rasterize mode: the (already cleaned) document goes through LibreOffice to PDF, and
/// the PDF through the registered PDF sanitizer (which renders it to pixels by default).
/// `found` are the threats already found in the document.
pub(crate) fn rasterize(
    doc: &[u8],
    from_ext: &str,
    found: Vec<&'static str>,
    cx: &mut Context<'_>,
) -> Result<Rebuilt, SanitizeError> {
    let Some(converter) = cx.converter() else {
        return Err(SanitizeError::Unsupported(
            "Office rasterize mode needs LibreOffice, which is not available here".into(),
        ));
    };
    let Some(pdf_sanitizer) = crate::formats::sanitizer_for(Kind::Pdf, cx.policy()) else {
        return Err(SanitizeError::Unsupported(
            "Office rasterize mode needs the PDF sanitizer, which is not available".into(),
        ));
    };
    let deadline = cx.budget().deadline();
    let pdf = converter
        .convert(doc, from_ext, "pdf", deadline)
        .map_err(|e| {
            SanitizeError::Malformed(format!(
                "LibreOffice could not convert the document to PDF: {e}"
            ))
        })?;
    cx.budget().charge_decoded(pdf.len() as u64)?;
    let rendered = pdf_sanitizer.sanitize(&pdf, cx)?;
    Ok(rendered
        .with_extension("pdf")
        .with_threats(found)
        .with_detail(serde_json::json!({"converted_to": "pdf"})))
}
