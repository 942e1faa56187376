//! Legacy Office (doc/xls/ppt, OLE2 compound files): never passed as they are.
//!
//! By default (`office.convert_legacy`) the document is converted by LibreOffice, lent by the
//! caller as [`Context::converter`], to its OOXML equivalent (doc → docx, xls → xlsx,
//! ppt → pptx), and that is cleaned by the OOXML sanitizer: the report says `converted`, with
//! `{"converted_to": "docx"}`, and carries the OOXML findings. In Office rasterize mode the
//! document is converted to PDF and rendered by the PDF sanitizer instead. Without a converter,
//! with conversion disabled, or when LibreOffice fails, the document is removed (blocked at the
//! top level) with the reason.
//!
//! A VBA project (`_VBA_PROJECT`, `Macros`, `VBA` storages) is reported as `ole2.vba_macro`
//! whatever happens next. Encrypted OOXML (an OLE2 file holding `EncryptedPackage`) is
//! `content.encrypted`.

use crate::error::SanitizeError;
use crate::formats::ooxml;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::Action;
use crate::threats;

/// Sanitizes legacy Office compound files by conversion.
#[derive(Debug, Clone, Copy)]
pub struct Ole2Sanitizer;

/// Which Office application wrote a compound file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Word,
    Excel,
    PowerPoint,
}

impl App {
    /// (input extension, OOXML extension).
    fn exts(self) -> (&'static str, &'static str) {
        match self {
            App::Word => ("doc", "docx"),
            App::Excel => ("xls", "xlsx"),
            App::PowerPoint => ("ppt", "pptx"),
        }
    }
}

/// What the directory entry names of a compound file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inspection {
    app: Option<App>,
    vba: bool,
    encrypted: bool,
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A directory entry named exactly `name`: UTF-16LE followed by the NUL terminator.
fn has_entry(b: &[u8], name: &str) -> bool {
    let mut needle = utf16(name);
    needle.extend_from_slice(&[0, 0]);
    b.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn inspect(b: &[u8]) -> Inspection {
    let app = if has_entry(b, "WordDocument") {
        Some(App::Word)
    } else if has_entry(b, "Workbook") || has_entry(b, "Book") {
        Some(App::Excel)
    } else if has_entry(b, "PowerPoint Document") {
        Some(App::PowerPoint)
    } else {
        None
    };
    let vba = ["_VBA_PROJECT", "_VBA_PROJECT_CUR", "Macros", "VBA"]
        .iter()
        .any(|n| has_entry(b, n));
    let encrypted = has_entry(b, "EncryptedPackage") || has_entry(b, "EncryptionInfo");
    Inspection {
        app,
        vba,
        encrypted,
    }
}

impl FormatSanitizer for Ole2Sanitizer {
    fn name(&self) -> &'static str {
        "ole2"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let found = inspect(input);
        // The refusal names the macro when there is one, so the report shows it either way.
        let refuse = |reason: String| {
            if found.vba {
                SanitizeError::Forbidden {
                    threat: threats::OLE2_VBA_MACRO,
                    reason: format!("{reason} (the document contains VBA macros)"),
                }
            } else {
                SanitizeError::Unsupported(reason)
            }
        };
        if found.encrypted {
            return Err(SanitizeError::Encrypted(
                "password-protected Office document".into(),
            ));
        }
        let Some(app) = found.app else {
            return Err(refuse(
                "OLE2 compound file that is not a Word, Excel or PowerPoint document".into(),
            ));
        };
        let (from, to) = app.exts();
        if !cx.policy().office.convert_legacy {
            return Err(refuse(format!(
                "legacy .{from} documents are removed: conversion is disabled by policy"
            )));
        }
        let Some(converter) = cx.converter() else {
            return Err(refuse(format!(
                "legacy .{from} documents need LibreOffice to be converted, and it is not available"
            )));
        };
        let mut threats_found = Vec::new();
        if found.vba {
            threats_found.push(threats::OLE2_VBA_MACRO);
        }
        if cx.policy().office.rasterize {
            return crate::formats::office::rasterize(input, from, threats_found, cx);
        }
        let deadline = cx.budget().deadline();
        let converted = converter.convert(input, from, to, deadline).map_err(|e| {
            refuse(format!(
                "LibreOffice could not convert the .{from} document: {e}"
            ))
        })?;
        cx.budget().charge_decoded(converted.len() as u64)?;
        let mut rebuilt = ooxml::rebuild(&converted, cx)?;
        rebuilt.action = Action::Converted;
        let reason = format!(
            "legacy .{from} converted to .{to} by LibreOffice, then {}",
            rebuilt.reason
        );
        Ok(rebuilt
            .with_extension(to)
            .with_threats(threats_found)
            .with_reason(reason)
            .with_detail(serde_json::json!({"converted_to": to})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::office::PackageWriter;
    use crate::pipeline::{Converter, Services};
    use crate::policy::Policy;
    use crate::{Verdict, sanitize_file, sanitize_file_with};

    /// A compound-file-looking input with the given directory entry names.
    fn ole(names: &[&str]) -> Vec<u8> {
        let mut b = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        b.resize(512, 0);
        for n in names {
            let mut entry = utf16(n);
            entry.resize(128, 0);
            b.extend(entry);
        }
        b
    }

    /// Stands in for LibreOffice: returns a fixed docx, or fails.
    struct Fake(Option<Vec<u8>>);

    impl Converter for Fake {
        fn convert(
            &self,
            _: &[u8],
            from: &str,
            to: &str,
            _: std::time::Instant,
        ) -> Result<Vec<u8>, String> {
            assert_eq!((from, to), ("doc", "docx"));
            self.0.clone().ok_or_else(|| "soffice exited 1".to_owned())
        }
    }

    fn docx() -> Vec<u8> {
        let mut w = PackageWriter::new();
        w.deflated(
            "[Content_Types].xml",
            br#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
        )
        .unwrap();
        w.deflated("_rels/.rels", br#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#).unwrap();
        w.deflated(
            "word/document.xml",
            "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>旧文書</w:t></w:r></w:p></w:body></w:document>".as_bytes(),
        )
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn inspects_directory_names() {
        let i = inspect(&ole(&[
            "Root Entry",
            "WordDocument",
            "Macros",
            "VBA",
            "_VBA_PROJECT",
        ]));
        assert_eq!(i.app, Some(App::Word));
        assert!(i.vba && !i.encrypted);
        let i = inspect(&ole(&["Root Entry", "Workbook"]));
        assert_eq!((i.app, i.vba), (Some(App::Excel), false));
        assert!(inspect(&ole(&["EncryptionInfo", "EncryptedPackage"])).encrypted);
    }

    #[test]
    fn converted_when_a_converter_is_lent() {
        let input = ole(&["Root Entry", "WordDocument", "Macros", "_VBA_PROJECT"]);
        let fake = Fake(Some(docx()));
        let services = Services {
            converter: Some(&fake),
            fonts: None,
        };
        let out = sanitize_file_with(&input, Some("旧.doc"), &Policy::default(), services);
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        let item = &out.report.items[0];
        assert_eq!(item.action, Action::Converted);
        assert_eq!(
            item.detail,
            Some(serde_json::json!({"converted_to": "docx"}))
        );
        assert!(out.report.threats().contains(&"ole2.vba_macro"));
        let file = out.output.unwrap();
        assert_eq!(file.name, "旧.docx");
        assert_eq!(file.kind, crate::Kind::Ooxml);
    }

    #[test]
    fn removed_without_converter_or_when_conversion_fails() {
        let plain = ole(&["Root Entry", "WordDocument"]);
        let out = sanitize_file(&plain, Some("a.doc"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.threats().contains(&"format.unsupported"),
            "{:?}",
            out.report
        );

        let macro_doc = ole(&["Root Entry", "WordDocument", "Macros", "VBA"]);
        let out = sanitize_file(&macro_doc, Some("a.doc"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.threats().contains(&"ole2.vba_macro"),
            "{:?}",
            out.report
        );

        let failing = Fake(None);
        let services = Services {
            converter: Some(&failing),
            fonts: None,
        };
        let out = sanitize_file_with(&plain, Some("a.doc"), &Policy::default(), services);
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.items[0].reason.contains("soffice exited 1"),
            "{:?}",
            out.report
        );

        let policy = Policy::from_toml("[office]\nconvert_legacy = false\n").unwrap();
        let ok = Fake(Some(docx()));
        let services = Services {
            converter: Some(&ok),
            fonts: None,
        };
        let out = sanitize_file_with(&plain, Some("a.doc"), &policy, services);
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.items[0].reason.contains("disabled"),
            "{:?}",
            out.report
        );

        let enc = ole(&["EncryptionInfo", "EncryptedPackage"]);
        let out = sanitize_file_with(&enc, Some("a.docx"), &Policy::default(), services);
        assert!(
            out.report.threats().contains(&"content.encrypted"),
            "{:?}",
            out.report
        );
    }
}
