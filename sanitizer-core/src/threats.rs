//! Every threat id the reports can carry, in one place.
//!
//! Ids are `<kind>.<construct>` in snake_case and stable: audit logs, release requests and
//! scripts refer to them. Add new ids here (in the section of their format) and nowhere else;
//! [`ALL`] lists them all for documentation and tests.

macro_rules! threat_ids {
    ($( $(#[$doc:meta])* $name:ident = $id:literal; )*) => {
        $( $(#[$doc])* pub const $name: &str = $id; )*
        /// Every threat id defined above.
        pub const ALL: &[&str] = &[$($id),*];
    };
}

threat_ids! {
    // --- limits (one per [`crate::limits::LimitKind`]) ---
    /// Input larger than allowed.
    LIMIT_INPUT_BYTES = "limit.input_bytes";
    /// Too much decoded/decompressed data.
    LIMIT_DECODED_BYTES = "limit.decoded_bytes";
    /// Compression ratio too high (bomb).
    LIMIT_RATIO = "limit.ratio";
    /// Nested too deep.
    LIMIT_DEPTH = "limit.depth";
    /// Too many parts or members.
    LIMIT_PARTS = "limit.parts";
    /// Output too large.
    LIMIT_OUTPUT_BYTES = "limit.output_bytes";
    /// Too many pages.
    LIMIT_PAGES = "limit.pages";
    /// Image or page too large in pixels.
    LIMIT_PIXELS = "limit.pixels";
    /// Too many pixels in total.
    LIMIT_TOTAL_PIXELS = "limit.total_pixels";
    /// Too many animation frames.
    LIMIT_FRAMES = "limit.frames";
    /// The item's deadline passed.
    LIMIT_DEADLINE = "limit.deadline";

    // --- generic outcomes ---
    /// The part could not be parsed or rebuilt.
    PARSE_FAILED = "parse.failed";
    /// A recognised but unsupported format (not a threat as such; listed as unsupported).
    UNSUPPORTED_FORMAT = "format.unsupported";
    /// Encrypted content that cannot be inspected (formats without an id of their own; PDF,
    /// Office and archives use [`PDF_ENCRYPTED`], [`OFFICE_ENCRYPTED`], [`ARCHIVE_ENCRYPTED`]).
    ENCRYPTED = "content.encrypted";
    /// Our own output failed the residual re-check.
    RESIDUAL_RECHECK = "recheck.failed";
    /// A sanitizer panicked or hit an internal error.
    INTERNAL_ERROR = "internal.error";
    /// The sanitizing worker process was killed (time, memory, crash).
    WORKER_KILLED = "worker.killed";
    /// The sanitizing worker crashed (stack overflow, fault).
    WORKER_CRASHED = "worker.crashed";
    /// The worker hit its address-space cap.
    LIMIT_MEMORY = "limit.memory";
    /// The worker hit its CPU-time cap.
    LIMIT_CPU = "limit.cpu";
    /// The worker tried something its sandbox forbids (socket, exec, file access).
    SANDBOX_VIOLATION = "sandbox.violation";

    // --- type and name ---
    /// Declared MIME type or extension disagrees with the bytes.
    MIME_TYPE_MISMATCH = "mime.type_mismatch";
    /// Executable content (PE, ELF, Mach-O, MSI, ...).
    EXECUTABLE = "executable.binary";
    /// Script content (shell, JS, VBS, PowerShell, batch, HTA, ...).
    SCRIPT = "script.code";
    /// A filename whose extension is executable or script.
    FILENAME_EXECUTABLE = "filename.executable";
    /// A declared MIME type that is executable or script.
    MIME_EXECUTABLE = "mime.executable";
    /// A filename with bidi controls (RTLO tricks).
    FILENAME_BIDI_CONTROL = "filename.bidi_control";
    /// A filename with path separators, traversal or control characters.
    FILENAME_PATH = "filename.path";
    /// A filename with a double extension (`invoice.pdf.exe`).
    FILENAME_DOUBLE_EXTENSION = "filename.double_extension";
    /// A filename whose extension is a macro-enabled Office template, add-in or slideshow
    /// (`.dotm`, `.xltm`, `.potm`, `.xlam`, `.ppam`, `.ppsm`, `.sldm`).
    FILENAME_MACRO_ENABLED = "filename.macro_enabled";

    // --- text that Office, a browser or the Windows shell opens as something else ---
    /// Excel web query (`.iqy`) or ODBC query (`.dqy`): `WEB` / `XLODBC` first line.
    TEXT_WEB_QUERY = "text.web_query";
    /// Internet shortcut (`.url`, `.website`): an `[InternetShortcut]` section.
    TEXT_INTERNET_SHORTCUT = "text.internet_shortcut";
    /// Windows Explorer command file (`.scf`): a `[Shell]` section with `Command=`.
    TEXT_SHELL_COMMAND = "text.shell_command";
    /// Windows shell XML (`.library-ms`, `.searchConnector-ms`, `.settingcontent-ms`).
    TEXT_SHELL_XML = "text.shell_xml";
    /// ClickOnce deployment or application manifest (`.application`, `.xbap`, `.manifest`).
    TEXT_CLICKONCE = "text.clickonce";
    /// Java Web Start launch file (`.jnlp`).
    TEXT_JNLP = "text.jnlp";
    /// Registry script (`.reg`): `Windows Registry Editor` / `REGEDIT4` first line.
    TEXT_REGISTRY_SCRIPT = "text.registry_script";
    /// Setup information file (`.inf`): a `[Version]` section with a `Signature=`.
    TEXT_SETUP_INFORMATION = "text.setup_information";
    /// Desktop entry (`.desktop`): a `[Desktop Entry]` section (runs its `Exec=` line).
    TEXT_DESKTOP_ENTRY = "text.desktop_entry";

    // --- mail ---
    /// The HTML body was converted to text.
    HTML_BODY = "html.body";
    /// A script element or javascript: URL in HTML.
    HTML_SCRIPT = "html.script";
    /// An on* event handler attribute.
    HTML_EVENT_HANDLER = "html.event_handler";
    /// iframe/object/embed/applet.
    HTML_EMBED = "html.embed";
    /// A form.
    HTML_FORM = "html.form";
    /// meta refresh or base href.
    HTML_META_REFRESH = "html.meta_refresh";
    /// A remote resource (image, stylesheet, CSS url()) such as a tracking pixel.
    HTML_REMOTE_RESOURCE = "html.remote_resource";
    /// Links were defanged or removed.
    LINK_REWRITTEN = "link.rewritten";
    /// Bidi or zero-width controls in headers or body.
    TEXT_BIDI_CONTROL = "text.bidi_control";
    /// An inbound X-Mugai-* header (forged verdict).
    MAIL_FORGED_HEADER = "mail.forged_header";
    /// A header that is not allow-listed was dropped (not reported as a threat by itself).
    MAIL_HEADER_DROPPED = "mail.header_dropped";
    /// Bare CR or LF in the message.
    MAIL_BARE_LINE_ENDING = "mail.bare_line_ending";
    /// multipart/signed or detached signature removed.
    MAIL_SIGNATURE = "mail.signature";
    /// S/MIME or PGP encrypted content.
    MAIL_ENCRYPTED = "mail.encrypted";
    /// The message could not be parsed.
    MAIL_UNPARSEABLE = "mail.unparseable";
    /// Calendar or vCard content.
    MAIL_CALENDAR = "mail.calendar";
    /// The character set could not be decoded cleanly.
    MAIL_CHARSET = "mail.charset";
    /// More than one From header (the first is kept).
    MAIL_DUPLICATE_FROM = "mail.duplicate_from";

    // --- images and SVG ---
    /// Metadata (EXIF, XMP, IPTC, text chunks) removed by re-encoding.
    IMAGE_METADATA = "image.metadata";
    /// Data after the image end (polyglot).
    IMAGE_TRAILING_DATA = "image.trailing_data";
    /// A script in SVG.
    SVG_SCRIPT = "svg.script";
    /// An external reference in SVG.
    SVG_EXTERNAL_REFERENCE = "svg.external_reference";
    /// foreignObject in SVG.
    SVG_FOREIGN_OBJECT = "svg.foreign_object";

    // --- text / csv ---
    /// Formula-looking CSV cells neutralised.
    CSV_FORMULA = "csv.formula";

    // --- calendar / vCard ---
    /// An ATTACH property (or vCard PHOTO/LOGO/SOUND/KEY) dropped from a calendar or vCard.
    CALENDAR_ATTACHMENT = "calendar.attachment";
    /// A VALARM component (alarms can run procedures or send mail) dropped.
    CALENDAR_ALARM = "calendar.alarm";
    /// A URL/SOURCE/CONFERENCE property dropped.
    CALENDAR_URL = "calendar.url";

    // --- pdf ---
    /// JavaScript.
    PDF_JAVASCRIPT = "pdf.javascript";
    /// OpenAction.
    PDF_OPEN_ACTION = "pdf.open_action";
    /// Additional actions (/AA).
    PDF_ADDITIONAL_ACTIONS = "pdf.additional_actions";
    /// Launch action.
    PDF_LAUNCH = "pdf.launch";
    /// GoToR / GoToE remote goto.
    PDF_REMOTE_GOTO = "pdf.remote_goto";
    /// SubmitForm.
    PDF_SUBMIT_FORM = "pdf.submit_form";
    /// ImportData.
    PDF_IMPORT_DATA = "pdf.import_data";
    /// URI action.
    PDF_URI = "pdf.uri";
    /// Rendition / multimedia.
    PDF_RENDITION = "pdf.rendition";
    /// Embedded files / file attachment annotations.
    PDF_EMBEDDED_FILE = "pdf.embedded_file";
    /// RichMedia.
    PDF_RICH_MEDIA = "pdf.rich_media";
    /// 3D content.
    PDF_3D = "pdf.3d";
    /// XFA forms.
    PDF_XFA = "pdf.xfa";
    /// AcroForm.
    PDF_ACROFORM = "pdf.acroform";
    /// Hex-escaped names used to hide keys.
    PDF_OBFUSCATED_NAME = "pdf.obfuscated_name";
    /// Incremental updates.
    PDF_INCREMENTAL_UPDATE = "pdf.incremental_update";
    /// Encrypted PDF.
    PDF_ENCRYPTED = "pdf.encrypted";

    // --- office ---
    /// VBA macros.
    OOXML_VBA_MACRO = "ooxml.vba_macro";
    /// ActiveX controls.
    OOXML_ACTIVEX = "ooxml.activex";
    /// Embedded OLE objects.
    OOXML_OLE_OBJECT = "ooxml.ole_object";
    /// External relationship (remote template etc.).
    OOXML_EXTERNAL_RELATIONSHIP = "ooxml.external_relationship";
    /// attachedTemplate.
    OOXML_ATTACHED_TEMPLATE = "ooxml.attached_template";
    /// externalLink / externalData parts.
    OOXML_EXTERNAL_LINK = "ooxml.external_link";
    /// DDE field or formula.
    OOXML_DDE = "ooxml.dde";
    /// customUI callbacks.
    OOXML_CUSTOM_UI = "ooxml.custom_ui";
    /// A part outside the allow-list.
    OOXML_UNKNOWN_PART = "ooxml.unknown_part";
    /// Macro-enabled type converted to macro-free.
    OOXML_MACRO_ENABLED_TYPE = "ooxml.macro_enabled_type";
    /// ODF macros (Basic/, Scripts/).
    ODF_MACRO = "odf.macro";
    /// ODF event listeners.
    ODF_EVENT_LISTENER = "odf.event_listener";
    /// ODF embedded objects.
    ODF_EMBEDDED_OBJECT = "odf.embedded_object";
    /// ODF external link.
    ODF_EXTERNAL_LINK = "odf.external_link";
    /// An ODF package member outside the allow-list.
    ODF_UNKNOWN_PART = "odf.unknown_part";
    /// Formula that reaches outside the workbook (WEBSERVICE, FILTERXML, CALL, REGISTER, EXEC,
    /// RTD, external workbook references): the formula is dropped, its cached value kept.
    OOXML_EXTERNAL_FORMULA = "ooxml.external_formula";
    /// Excel 4 (XLM) macro sheet.
    OOXML_XLM_MACRO = "ooxml.xlm_macro";
    /// A defined name that runs a macro when the workbook opens or closes (`Auto_Open`,
    /// `_xlnm.Auto_Open`, `Excel_BuiltIn_Auto_Open`, ...).
    OOXML_AUTO_RUN_NAME = "ooxml.auto_run_name";
    /// Encrypted (password-protected) Office document, legacy or OOXML.
    OFFICE_ENCRYPTED = "office.encrypted";
    /// Flat OPC XML (an OOXML package in one XML file): rebuilt as OOXML.
    OFFICE_FLAT_XML = "office.flat_xml";
    /// Word 2003 XML (WordprocessingML) or Excel 2003 XML (SpreadsheetML): reduced to its text.
    OFFICE_XML_2003 = "office.xml_2003";
    /// Another Office XML document (`<?mso-application` naming another program, InfoPath).
    OFFICE_XML_DOCUMENT = "office.xml_document";
    /// SYLK spreadsheet (`ID;P`), which can carry Excel 4 macro cells.
    OFFICE_SYLK = "office.sylk";
    /// ODF DDE formula.
    ODF_DDE = "odf.dde";
    /// ODF formula that reaches outside the document (WEBSERVICE, external references).
    ODF_EXTERNAL_FORMULA = "odf.external_formula";
    /// OLE2 VBA storage.
    OLE2_VBA_MACRO = "ole2.vba_macro";
    /// Excel 4 (XLM) macro sheet in a legacy workbook.
    OLE2_XLM_MACRO = "ole2.xlm_macro";
    /// Embedded object storage (`MBD…`, `ObjectPool`, `_…` object storages).
    OLE2_EMBEDDED_OBJECT = "ole2.embedded_object";
    /// Equation Editor 3.0 object (`Equation Native`, CVE-2017-11882).
    OLE2_EQUATION_EDITOR = "ole2.equation_editor";
    /// OLE1 packaged object (`\x01Ole10Native`).
    OLE2_OLE10_NATIVE = "ole2.ole10_native";
    /// RTF embedded object.
    RTF_OBJECT = "rtf.object";

    // --- archives ---
    /// Encrypted archive or member (PPAP).
    ARCHIVE_ENCRYPTED = "archive.encrypted";
    /// Path traversal or absolute path in a member name.
    ARCHIVE_PATH_TRAVERSAL = "archive.path_traversal";
    /// Symlink, hard link or device file member.
    ARCHIVE_SPECIAL_FILE = "archive.special_file";
    /// Setuid/setgid bits.
    ARCHIVE_SETUID = "archive.setuid";
    /// Overlapping or inconsistent entries (zip bomb tricks).
    ARCHIVE_OVERLAP = "archive.overlap";
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for id in super::ALL {
            assert!(seen.insert(*id), "duplicate threat id {id}");
            let (kind, construct) = id.split_once('.').unwrap_or_default();
            assert!(!kind.is_empty() && !construct.is_empty(), "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'),
                "{id}"
            );
        }
    }
}
