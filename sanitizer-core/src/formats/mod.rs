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

/// Why the policy removes every part of `kind`, if it does (the one place such switches are
/// decided; the sanitizers themselves never check them).
pub fn removed_by_policy(kind: Kind, policy: &Policy) -> Option<&'static str> {
    match kind {
        Kind::Zip | Kind::Tar | Kind::Gzip if !policy.archives.rebuild => {
            Some("archives are removed by policy (archives.rebuild = false)")
        }
        _ => None,
    }
}

/// The sanitizer for a sniffed kind under `policy`, or `None` when that kind is removed
/// (unsupported, or switched off by the policy: [`removed_by_policy`]).
pub fn sanitizer_for(kind: Kind, policy: &Policy) -> Option<&'static dyn FormatSanitizer> {
    if removed_by_policy(kind, policy).is_some() {
        return None;
    }
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

#[cfg(test)]
mod registry_tests {
    use super::*;
    use crate::{sanitize_file, threats};

    #[test]
    fn archives_switched_off_are_removed_by_the_registry_for_every_archive_kind() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples");
        let mut policy = Policy::default();
        policy.archives.rebuild = false;
        for (file, kind) in [
            ("archives/zip_exe_and_txt.zip", Kind::Zip),
            ("archives/tar_hostile.tar", Kind::Tar),
            ("archives/tgz_script.tar.gz", Kind::Gzip),
        ] {
            assert!(sanitizer_for(kind, &policy).is_none(), "{file}");
            assert!(sanitizer_for(kind, &Policy::default()).is_some(), "{file}");
            let bytes = std::fs::read(root.join(file)).unwrap();
            let out = sanitize_file(&bytes, Some(file), &policy);
            assert!(out.output.is_none(), "{file}");
            assert!(out.report.threats().contains(&threats::UNSUPPORTED_FORMAT));
            assert!(
                out.report
                    .items
                    .iter()
                    .any(|i| i.reason.contains("archives.rebuild = false")),
                "{file}: {:?}",
                out.report.items
            );
        }
    }
}
