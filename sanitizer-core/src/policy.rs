//! The sanitizing policy: what to do per content kind, links, notices, limits.
//!
//! Loaded from TOML with unknown keys rejected (a typo must not silently weaken the policy).
//! Every field has a default, and the defaults are the strict profile a municipality would run.
//! [`DEFAULT_POLICY_TOML`] is the same defaults written out with comments (`mugai policy` prints
//! it); a test keeps the two in step.

use serde::{Deserialize, Serialize};

use crate::limits::Limits;

/// The default policy as commented TOML.
pub const DEFAULT_POLICY_TOML: &str = include_str!("default_policy.toml");

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Policy {
    /// Resource limits per item.
    pub limits: Limits,
    /// What to do with links in text.
    pub links: LinkPolicy,
    /// Mail-specific settings.
    pub mail: MailPolicy,
    /// Recipient notice templates.
    pub notice: NoticeTemplates,
    /// PDF handling.
    pub pdf: PdfPolicy,
    /// Office documents.
    pub office: OfficePolicy,
    /// Raster images and SVG.
    pub images: ImagePolicy,
    /// CSV files.
    pub csv: CsvPolicy,
    /// Archives.
    pub archives: ArchivePolicy,
}

/// Host paths that were policy keys once; the daemon configuration holds them now.
const MOVED_TO_CONFIG: &[(&str, &str)] = &[
    ("pdf", "cjk_font"),
    ("pdf", "cjk_serif_font"),
    ("images", "svg_font_dir"),
    ("office", "soffice"),
];

/// Error loading a policy.
#[derive(Debug, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Parses a policy from TOML. Unknown keys are an error; missing keys take their defaults.
    /// Keys that moved to the daemon configuration (host paths) are named as such.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if let Ok(table) = text.parse::<toml::Table>() {
            for (section, key) in MOVED_TO_CONFIG {
                if table
                    .get(*section)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|t| t.contains_key(*key))
                {
                    return Err(PolicyError(format!(
                        "{section}.{key} is a path on this machine, not policy: it moved to the \
                         mugai configuration file ([host] {key}); remove it from the policy"
                    )));
                }
            }
        }
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks values that the types alone cannot.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(36..=600).contains(&self.pdf.dpi) {
            return Err(PolicyError(format!(
                "pdf.dpi = {} is outside 36..=600",
                self.pdf.dpi
            )));
        }
        if self.limits.max_depth == 0 {
            return Err(PolicyError("limits.max_depth must be at least 1".into()));
        }
        if self.limits.deadline_ms == 0 {
            return Err(PolicyError("limits.deadline_ms must be positive".into()));
        }
        Ok(())
    }
}

/// How links found in text are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// `hxxps://example[.]jp/login`: readable, not clickable. Default.
    #[default]
    Defang,
    /// Kept as they are.
    Keep,
    /// Replaced by `[link removed]`.
    Remove,
}

/// Link handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LinkPolicy {
    /// `defang` (default), `keep` or `remove`.
    pub mode: LinkMode,
}

/// Mail settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailPolicy {
    /// Headers copied besides the fixed allow-list (From, To, Cc, Reply-To, Subject, Date,
    /// Message-ID, In-Reply-To, References). Default: none.
    pub extra_headers: Vec<String>,
    /// authserv-id of the trusted upstream whose `Authentication-Results` are kept; others are
    /// dropped. Default: none (all dropped).
    pub trusted_authserv_id: Option<String>,
    /// Keep `Received` trace headers (RFC 5321 forbids deleting them). Default true.
    pub keep_received: bool,
}

impl Default for MailPolicy {
    fn default() -> Self {
        MailPolicy {
            extra_headers: Vec::new(),
            trusted_authserv_id: None,
            keep_received: true,
        }
    }
}

/// Notice templates. `{items}` is replaced by the list of parts, one per line; `{report_id}` by
/// the report id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeTemplates {
    /// Japanese notice (first).
    pub ja: String,
    /// English notice (second).
    pub en: String,
    /// Text that tells the recipient how to ask for the original (both languages); empty = say
    /// nothing (the daemon empties it when no quarantine keeps originals).
    pub release: String,
}

impl Default for NoticeTemplates {
    fn default() -> Self {
        NoticeTemplates {
            ja: "このメールは無害化システム（Mugai）により無害化されました。以下の処理を行いました：\n{items}".into(),
            en: "This message was sanitized by Mugai. The following was done:\n{items}".into(),
            release: "元のファイルが必要な場合は、レポートID {report_id} を添えて情報システム担当へ依頼してください。\nTo obtain the original, ask your IT administrator quoting report ID {report_id}.".into(),
        }
    }
}

/// How PDFs are sanitized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PdfMode {
    /// Render every page to pixels and rebuild an image-only PDF. Default.
    #[default]
    Rasterize,
    /// Remove active content structurally; text stays selectable.
    Clean,
}

/// PDF settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdfPolicy {
    /// `rasterize` (default) or `clean`.
    pub mode: PdfMode,
    /// Render resolution in dots per inch. Default 150.
    pub dpi: u32,
    /// Put the original's visible text over rasterized pages as an invisible text layer
    /// (search and copy), in a font the output controls; text that was not visible (render
    /// mode 3, white on white, clipped, covered, off the page) is left out. Default true.
    pub text_layer: bool,
    /// Recognise text (OCR) on rasterized pages that carry none, when the caller lends an
    /// [`crate::pipeline::Ocr`] engine; needs `text_layer`. Default false.
    pub ocr: bool,
    /// Tesseract language list for OCR, `+`-separated. Default `jpn+eng`.
    pub ocr_languages: String,
    /// Wall-clock budget for the OCR of one page, in seconds. Default 20.
    pub ocr_page_secs: u32,
}

impl Default for PdfPolicy {
    fn default() -> Self {
        PdfPolicy {
            mode: PdfMode::Rasterize,
            dpi: 150,
            text_layer: true,
            ocr: false,
            ocr_languages: "jpn+eng".into(),
            ocr_page_secs: 20,
        }
    }
}

/// Office document settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfficePolicy {
    /// Convert legacy OLE2 documents (doc/xls/ppt) with LibreOffice, then clean. Default true.
    pub convert_legacy: bool,
    /// Rasterize Office documents (via LibreOffice to PDF) instead of rebuilding. Default false.
    pub rasterize: bool,
}

impl Default for OfficePolicy {
    fn default() -> Self {
        OfficePolicy {
            convert_legacy: true,
            rasterize: false,
        }
    }
}

/// Image settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagePolicy {
    /// Rasterize SVG to PNG (true, default) or remove it (false).
    pub rasterize_svg: bool,
    /// JPEG re-encoding quality, 1–100. Default 90.
    pub jpeg_quality: u8,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        ImagePolicy {
            rasterize_svg: true,
            jpeg_quality: 90,
        }
    }
}

/// CSV settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvPolicy {
    /// Neutralise cells that start with `=`, `+`, `-`, `@` (prefix `'`). Default true.
    pub neutralise_formulas: bool,
}

impl Default for CsvPolicy {
    fn default() -> Self {
        CsvPolicy {
            neutralise_formulas: true,
        }
    }
}

/// Archive settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchivePolicy {
    /// Recurse into ZIP/TAR/GZIP and rebuild (true, default) or remove archives (false).
    pub rebuild: bool,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        ArchivePolicy { rebuild: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_defaults_equal_code_defaults() {
        let parsed = Policy::from_toml(DEFAULT_POLICY_TOML).unwrap();
        assert_eq!(parsed, Policy::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Policy::from_toml("[links]\nmdoe = \"keep\"\n").unwrap_err();
        assert!(err.to_string().contains("mdoe"), "{err}");
        assert!(Policy::from_toml("surprise = 1\n").is_err());
    }

    #[test]
    fn host_paths_are_named_as_moved() {
        let err = Policy::from_toml("[pdf]\ncjk_font = \"/x.ttc\"\n").unwrap_err();
        assert!(err.to_string().contains("[host] cjk_font"), "{err}");
        let err = Policy::from_toml("[office]\nsoffice = \"soffice\"\n").unwrap_err();
        assert!(err.to_string().contains("moved"), "{err}");
    }

    #[test]
    fn text_layer_is_on_by_default_and_can_be_turned_off() {
        assert!(Policy::default().pdf.text_layer);
        assert!(
            Policy::from_toml("[pdf]\ntext_layer = true\n")
                .unwrap()
                .pdf
                .text_layer
        );
        assert!(
            !Policy::from_toml("[pdf]\ntext_layer = false\n")
                .unwrap()
                .pdf
                .text_layer
        );
    }

    #[test]
    fn partial_policy_keeps_other_defaults() {
        let p = Policy::from_toml("[links]\nmode = \"keep\"\n[limits]\nmax_depth = 3\n").unwrap();
        assert_eq!(p.links.mode, LinkMode::Keep);
        assert_eq!(p.limits.max_depth, 3);
        assert_eq!(p.limits.max_parts, Limits::default().max_parts);
        assert_eq!(p.pdf, PdfPolicy::default());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Policy::from_toml("[pdf]\ndpi = 5\n").is_err());
        assert!(Policy::from_toml("[limits]\ndeadline_ms = 0\n").is_err());
    }
}
