//! One module per format; each implements [`FormatSanitizer`](crate::pipeline::FormatSanitizer).
//!
//! [`sanitizer_for`] is the registry: the sniffed kind (never the name or declared type) picks
//! the sanitizer; `None` means the kind is removed as unsupported.

pub mod html;
pub mod pdf;

use crate::pipeline::FormatSanitizer;
use crate::policy::Policy;
use crate::report::Kind;

/// The sanitizer for a sniffed kind under `policy`, or `None` when that kind is removed.
pub fn sanitizer_for(kind: Kind, policy: &Policy) -> Option<&'static dyn FormatSanitizer> {
    let _ = policy;
    match kind {
        Kind::Mail => Some(&crate::mail::MailSanitizer),
        Kind::Html => Some(&html::HtmlSanitizer),
        Kind::Pdf => Some(&pdf::PdfSanitizer),
        _ => None,
    }
}
