//! Output file names: which extensions each delivered kind may carry, the text-extension rule
//! and Windows reserved device names.
//!
//! Rules (CONTRACT.md, CLI section; README "Output names"):
//! - **Text keeps its name only with a text extension.** A file delivered as text keeps its
//!   name only when its extension is in [`TEXT_EXTENSIONS`]; otherwise `.txt` is appended
//!   (`query.iqy` → `query.iqy.txt`, `README` → `README.txt`), because Windows picks the program
//!   by extension and `.iqy`, `.slk`, `.xml`, `.hta`, ... open in something that runs content.
//! - **Windows reserved device names** (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`,
//!   `LPT1`–`LPT9`, their superscript-digit forms, `CONIN$`, `CONOUT$`), compared
//!   case-insensitively on the part before the first dot with trailing dots and spaces ignored,
//!   get a `_` after that part: `CON.txt` → `CON_.txt`, `nul` → `nul_`, `Aux .tar.gz` →
//!   `Aux _.tar.gz`. Applied to every component by [`normalize_filename`] (so to archive members,
//!   their directories, attachments and output files alike).
//! - **The extension matches the kind.** [`output_name`] derives a delivered file's name from
//!   the input's name and the kind the re-check found; a name suggested by whoever produced the
//!   bytes (a worker process) may only pick among the extensions allowed for that kind.

use crate::report::Kind;
use crate::unicode::{extension, normalize_filename, with_extension};

/// Extensions a file delivered as text may keep (compared in lower case). Everything else gets
/// `.txt` appended.
pub const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "csv", "tsv", "log", "md", "json"];

/// Device names Windows reserves in every directory, whatever the extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "COM¹", "COM²", "COM³", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
    "LPT9", "LPT¹", "LPT²", "LPT³", "CONIN$", "CONOUT$",
];

/// Whether `component` (one path component) names a Windows device.
pub fn is_reserved(component: &str) -> bool {
    let stem = component.split('.').next().unwrap_or_default();
    let stem = stem.trim_end_matches([' ', '.']).to_uppercase();
    RESERVED.contains(&stem.as_str())
}

/// `component` with a `_` after its reserved stem (`CON.txt` → `CON_.txt`); unchanged when it
/// is not a Windows device name.
pub fn avoid_reserved(component: &str) -> String {
    if !is_reserved(component) {
        return component.to_owned();
    }
    match component.split_once('.') {
        Some((stem, rest)) => format!("{stem}_.{rest}"),
        None => format!("{component}_"),
    }
}

/// Whether `name` ends in a text extension ([`TEXT_EXTENSIONS`]).
pub fn has_text_extension(name: &str) -> bool {
    extension(name).is_some_and(|e| TEXT_EXTENSIONS.contains(&e.as_str()))
}

/// The name a file delivered as text gets: `name` when its extension is a text one, else
/// `name.txt`.
pub fn text_name(name: &str) -> String {
    if has_text_extension(name) {
        name.to_owned()
    } else {
        format!("{name}.txt")
    }
}

/// Extensions an output of `kind` may carry; `bytes` tells PNG from JPEG for images. Empty for
/// kinds that are never delivered.
pub fn extensions_for(kind: Kind, bytes: &[u8]) -> &'static [&'static str] {
    match kind {
        Kind::Text => TEXT_EXTENSIONS,
        Kind::Csv => &["csv", "tsv"],
        Kind::Pdf => &["pdf"],
        Kind::Mail => &["eml"],
        Kind::Zip => &["zip"],
        Kind::Tar => &["tar"],
        Kind::Gzip => &["gz", "tgz"],
        Kind::Image if bytes.starts_with(b"\x89PNG") => &["png"],
        Kind::Image => &["jpg", "jpeg"],
        Kind::Ooxml => &["docx", "xlsx", "pptx", "dotx", "xltx", "potx", "ppsx"],
        Kind::Odf => &["odt", "ods", "odp", "odg", "ott", "ots", "otp", "otg"],
        _ => &[],
    }
}

/// The name of a delivered file of `kind` (checked by the caller) made from the input's name
/// (`input`; `output` when there is none).
///
/// `suggested` (the producer's name for the output, untrusted) is used only when it is the
/// input's normalised name with one allowed extension replaced or appended (`a.docm` →
/// `a.docx`, `page.html` → `page.txt`, `query.iqy` → `query.iqy.txt`). Otherwise the input's
/// name is kept when its extension is allowed for `kind`, text gets `.txt` appended, and any
/// other kind gets its first allowed extension in place of the old one.
pub fn output_name(
    input: Option<&str>,
    kind: Kind,
    bytes: &[u8],
    suggested: Option<&str>,
) -> String {
    let base = normalize_filename(input.unwrap_or("output")).name;
    let allowed = extensions_for(kind, bytes);
    let allowed_ext = |n: &str| extension(n).filter(|e| allowed.contains(&e.as_str()));
    if let Some(s) = suggested
        && let Some(e) = allowed_ext(s)
        && (s == base || s == with_extension(&base, &e) || s == format!("{base}.{e}"))
    {
        return s.to_owned();
    }
    if allowed_ext(&base).is_some() {
        return base;
    }
    match (kind, allowed.first()) {
        (Kind::Text, _) => text_name(&base),
        (_, Some(e)) => with_extension(&base, e),
        (_, None) => base,
    }
}

/// The content type of a delivered file of `kind` named `name` (decided by the caller, never
/// taken from whoever produced the bytes: a forged `text/html` would make a browser run it).
pub fn content_type(kind: Kind, name: &str, bytes: &[u8]) -> &'static str {
    let ext = extension(name).unwrap_or_default();
    match kind {
        Kind::Text => "text/plain; charset=utf-8",
        Kind::Csv => "text/csv; charset=utf-8",
        Kind::Pdf => "application/pdf",
        Kind::Mail => "message/rfc822",
        Kind::Zip => "application/zip",
        Kind::Tar => "application/x-tar",
        Kind::Gzip => "application/gzip",
        Kind::Image if bytes.starts_with(b"\x89PNG") => "image/png",
        Kind::Image => "image/jpeg",
        Kind::Ooxml => match ext.as_str() {
            "docx" | "dotx" => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            "xlsx" | "xltx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            _ => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        },
        Kind::Odf => match ext.as_str() {
            "odt" | "ott" => "application/vnd.oasis.opendocument.text",
            "ods" | "ots" => "application/vnd.oasis.opendocument.spreadsheet",
            "odp" | "otp" => "application/vnd.oasis.opendocument.presentation",
            _ => "application/vnd.oasis.opendocument.graphics",
        },
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_get_an_underscore() {
        for (given, want) in [
            ("CON.txt", "CON_.txt"),
            ("con", "con_"),
            ("nul", "nul_"),
            ("Aux.tar.gz", "Aux_.tar.gz"),
            ("COM1.docx", "COM1_.docx"),
            ("lpt9", "lpt9_"),
            ("PRN .txt", "PRN _.txt"),
            ("COM¹.txt", "COM¹_.txt"),
        ] {
            assert_eq!(avoid_reserved(given), want, "{given}");
        }
        for ok in [
            "console.txt",
            "COM10.txt",
            "CONX",
            "a.CON",
            "見積書.txt",
            "LPT.txt",
        ] {
            assert_eq!(avoid_reserved(ok), ok);
        }
    }

    #[test]
    fn text_keeps_only_text_extensions() {
        assert_eq!(text_name("query.iqy"), "query.iqy.txt");
        assert_eq!(text_name("a.slk"), "a.slk.txt");
        assert_eq!(text_name("README"), "README.txt");
        assert_eq!(text_name("data.CSV"), "data.CSV");
        assert_eq!(text_name("notes.md"), "notes.md");
        assert_eq!(text_name("a.json"), "a.json");
    }

    #[test]
    fn output_names_follow_the_checked_kind() {
        let png = b"\x89PNG\r\n\x1a\n";
        // The producer's suggestion may only swap in an allowed extension.
        assert_eq!(
            output_name(Some("a.docm"), Kind::Ooxml, b"", Some("a.docx")),
            "a.docx"
        );
        assert_eq!(
            output_name(Some("page.html"), Kind::Text, b"", Some("page.txt")),
            "page.txt"
        );
        assert_eq!(
            output_name(Some("page.html"), Kind::Text, b"", Some("page.html")),
            "page.html.txt"
        );
        assert_eq!(
            output_name(Some("invoice.pdf"), Kind::Image, png, Some("invoice.html")),
            "invoice.png"
        );
        assert_eq!(
            output_name(Some("a.txt"), Kind::Text, b"", Some("../../x")),
            "a.txt"
        );
        assert_eq!(
            output_name(Some("a.txt"), Kind::Text, b"", Some("/etc/cron.d/x.txt")),
            "a.txt"
        );
        assert_eq!(
            output_name(Some("q.iqy"), Kind::Text, b"", None),
            "q.iqy.txt"
        );
        assert_eq!(
            output_name(Some("../x/CON.pdf"), Kind::Pdf, b"", None),
            "CON_.pdf"
        );
        assert_eq!(
            output_name(None, Kind::Zip, b"", Some("evil.exe")),
            "output.zip"
        );
        assert_eq!(
            output_name(Some("photo.JPG"), Kind::Image, b"\xff\xd8\xff", None),
            "photo.JPG"
        );
    }
}
