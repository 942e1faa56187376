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

pub(crate) mod formula;
pub mod package;
pub mod xml;

pub use package::{Package, PackageWriter};

use crate::error::SanitizeError;
use crate::pipeline::{Context, Rebuilt};
use crate::report::{Action, Kind, ReportItem};

/// Report items recorded one by one before the rest are summed up in one item, so that a
/// package with 100,000 hostile relationships cannot blow up the report.
pub(crate) const MAX_ITEMS: usize = 50;

/// Records `(member, threat, reason)` removals as report items under the current path: the
/// first [`MAX_ITEMS`] one by one, the rest as one summary item with their threats.
pub(crate) fn record_removals(
    cx: &mut Context<'_>,
    kind: Kind,
    removals: &[(String, &'static str, String)],
) {
    for (what, threat, reason) in removals.iter().take(MAX_ITEMS) {
        let path = format!("{}/{}", cx.path(), what);
        cx.record(ReportItem {
            path,
            kind,
            action: Action::Removed,
            threats: vec![(*threat).to_owned()],
            reason: reason.clone(),
            detail: None,
        });
    }
    let rest = removals.get(MAX_ITEMS..).unwrap_or_default();
    if !rest.is_empty() {
        let mut threats: Vec<String> = Vec::new();
        for (_, t, _) in rest {
            if !threats.iter().any(|x| x == t) {
                threats.push((*t).to_owned());
            }
        }
        let path = cx.path().to_owned();
        cx.record(ReportItem {
            path,
            kind,
            action: Action::Removed,
            threats,
            reason: format!("{} more items removed or rewritten", rest.len()),
            detail: None,
        });
    }
}

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
