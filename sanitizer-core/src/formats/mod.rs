//! One module per format; each implements [`FormatSanitizer`].
//!
//! [`sanitizer_for`] is the registry: the sniffed kind (never the name or declared type) picks
//! the sanitizer; `None` means the kind is removed as unsupported.

mod archive;
pub mod calendar;
#[cfg(test)]
mod corpus_tests;
pub mod csv;
pub mod gzip;
pub mod html;
pub mod image;
pub mod msg;
pub mod odf;
pub(crate) mod office;
mod office_xml;
pub mod ole2;
pub mod ooxml;
pub mod pdf;
pub mod rtf;
pub mod svg;
pub mod tar;
pub mod text;
pub mod tnef;
pub mod zip;

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
        Kind::Zip => Some(&self::zip::ZipSanitizer),
        Kind::Tar => Some(&self::tar::TarSanitizer),
        Kind::Gzip => Some(&gzip::GzipSanitizer),
        Kind::Tnef => Some(&tnef::TnefSanitizer),
        Kind::Msg => Some(&msg::MsgSanitizer),
        Kind::Ooxml => Some(&ooxml::OoxmlSanitizer),
        Kind::Ole2 => Some(&ole2::Ole2Sanitizer),
        Kind::Odf => Some(&odf::OdfSanitizer),
        Kind::Text | Kind::Csv => Some(&text::TextSanitizer),
        Kind::Image => Some(&image::ImageSanitizer),
        Kind::Rtf => Some(&rtf::RtfSanitizer),
        Kind::Calendar => Some(&calendar::CalendarSanitizer),
        Kind::Svg => Some(&svg::SvgSanitizer),
        _ => None,
    }
}

/// The structural re-check of an output of `kind`, where that format has one (PDF, OOXML, ODF,
/// archives). `None`: no re-check exists, so the kind is never accepted from a worker.
pub fn recheck(
    kind: Kind,
    bytes: &[u8],
    policy: &Policy,
) -> Option<Result<(), crate::error::SanitizeError>> {
    match kind {
        Kind::Pdf => Some(pdf::recheck(bytes, policy.pdf.mode)),
        Kind::Ooxml => Some(ooxml::recheck(bytes, policy.links.mode)),
        Kind::Odf => Some(odf::recheck(bytes, policy.links.mode)),
        _ => None,
    }
}
