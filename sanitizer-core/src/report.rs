//! The report: one JSON object per item, field names fixed by CONTRACT.md.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a piece of content is, by its bytes. Serialised in snake_case (`"archive_unsupported"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// RFC 5322 message.
    Mail,
    /// Plain text.
    Text,
    /// HTML.
    Html,
    /// PDF.
    Pdf,
    /// Office Open XML (docx, xlsx, pptx and macro-enabled siblings).
    Ooxml,
    /// OpenDocument (odt, ods, odp).
    Odf,
    /// OLE2 compound file (doc, xls, ppt).
    Ole2,
    /// Rich Text Format.
    Rtf,
    /// SVG.
    Svg,
    /// Raster image.
    Image,
    /// Comma-separated values.
    Csv,
    /// ZIP archive.
    Zip,
    /// TAR archive.
    Tar,
    /// GZIP stream.
    Gzip,
    /// TNEF (winmail.dat).
    Tnef,
    /// Outlook .msg.
    Msg,
    /// iCalendar / vCard.
    Calendar,
    /// Executable (PE, ELF, Mach-O, MSI, ...).
    Executable,
    /// Script.
    Script,
    /// Archive formats not rebuilt (7z, rar, lzh, cab, iso).
    ArchiveUnsupported,
    /// Recognised but unsupported (一太郎, DocuWorks, HEIC, ...).
    Unsupported,
    /// Not recognised.
    Unknown,
}

impl Kind {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mail => "mail",
            Kind::Text => "text",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Ooxml => "ooxml",
            Kind::Odf => "odf",
            Kind::Ole2 => "ole2",
            Kind::Rtf => "rtf",
            Kind::Svg => "svg",
            Kind::Image => "image",
            Kind::Csv => "csv",
            Kind::Zip => "zip",
            Kind::Tar => "tar",
            Kind::Gzip => "gzip",
            Kind::Tnef => "tnef",
            Kind::Msg => "msg",
            Kind::Calendar => "calendar",
            Kind::Executable => "executable",
            Kind::Script => "script",
            Kind::ArchiveUnsupported => "archive_unsupported",
            Kind::Unsupported => "unsupported",
            Kind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The overall outcome for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing found, nothing changed in meaning.
    Clean,
    /// Something was removed or converted.
    Sanitized,
    /// No output (files only; a mail is never blocked).
    Blocked,
}

impl Verdict {
    /// The snake_case name used in reports (`clean`, `sanitized`, `blocked`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Sanitized => "sanitized",
            Verdict::Blocked => "blocked",
        }
    }
}

/// What was done to one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Passed unchanged (only for content that is inert by construction, e.g. normalised text).
    Kept,
    /// Rebuilt from an allow-list (OOXML, archives, mail).
    Rebuilt,
    /// Rendered to pixels.
    Rasterized,
    /// Converted to plain text.
    ConvertedToText,
    /// Converted to another format (xls → xlsx, svg → png).
    Converted,
    /// Decoded and re-encoded (images).
    Reencoded,
    /// Removed.
    Removed,
}

impl Action {
    /// Whether this action changes what the recipient gets in a way worth a notice.
    pub fn changes_meaning(self) -> bool {
        !matches!(self, Action::Kept | Action::Reencoded | Action::Rebuilt)
    }
}

/// Name, size, hash and kind of an input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name, when there is one.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Kind, sniffed from the bytes.
    pub kind: Kind,
}

impl FileInfo {
    /// Describes `bytes`.
    pub fn describe(name: Option<&str>, bytes: &[u8], kind: Kind) -> FileInfo {
        FileInfo {
            name: name.map(str::to_owned),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            kind,
        }
    }
}

/// Whether `id` looks like a report id we make: 1 to 64 ASCII letters, digits, `-` or `_` (a
/// UUID or ULID). Report ids become file names in the quarantine.
pub fn is_valid_report_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One part's entry in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportItem {
    /// Stable path of the part (`attachment[2]/report.zip/a.docm`); release and audit refer to it.
    pub path: String,
    /// Sniffed kind of the part.
    pub kind: Kind,
    /// What was done.
    pub action: Action,
    /// Threat ids found (see [`crate::threats`]).
    pub threats: Vec<String>,
    /// Human-readable reason, English.
    pub reason: String,
    /// Optional per-action detail (`{"converted_to": "docx"}`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<serde_json::Value>,
}

/// The report for one item (a mail or a file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Report id (UUID); also in the `X-Mugai-Report-Id` header.
    pub id: String,
    /// The input.
    pub input: FileInfo,
    /// The overall verdict.
    pub verdict: Verdict,
    /// The output, `null` when blocked.
    pub output: Option<FileInfo>,
    /// One entry per part.
    pub items: Vec<ReportItem>,
    /// Warnings (`pdf.font_missing`, ...): the output is safe but may be incomplete.
    pub warnings: Vec<String>,
    /// Quarantine id of the original, when it was kept.
    pub quarantine_id: Option<String>,
    /// Wall-clock duration of sanitizing, in milliseconds.
    pub duration_ms: u64,
}

impl Report {
    /// Every threat id in the report, deduplicated, in first-seen order.
    pub fn threats(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.items.iter().flat_map(|i| i.threats.iter()) {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }

    /// The verdict implied by the items when there is an output: `sanitized` if any part
    /// carried a threat or changed in meaning, else `clean`.
    pub fn verdict_from_items(items: &[ReportItem]) -> Verdict {
        if items
            .iter()
            .any(|i| !i.threats.is_empty() || i.action.changes_meaning())
        {
            Verdict::Sanitized
        } else {
            Verdict::Clean
        }
    }

    /// The report as one line of JSON (for JSON Lines).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
