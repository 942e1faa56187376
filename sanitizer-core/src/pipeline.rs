//! The recursion: one place where every part (a file, an attachment, an archive member, an
//! embedded file) is sniffed, checked against the dangerous-name rule, charged to the budget,
//! dispatched to its [`FormatSanitizer`] under a panic guard, and recorded in the report.
//!
//! Containers (mail, archives) never call another sanitizer directly: they call
//! [`Context::sanitize_child`], which charges depth and part count, so limits hold however the
//! formats nest.
//!
//! Invariants:
//! - Output bytes exist only as [`SafeBytes`], which only this crate can construct, and only from
//!   a sanitizer's [`Rebuilt`] output or a notice built by the crate itself.
//! - Every part yields exactly one [`ReportItem`]; a removed part says why.
//! - A sanitizer error or panic removes the part; it never passes the input through.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use resvg::usvg::fontdb;

use crate::error::SanitizeError;
use crate::formats;
use crate::limits::Budget;
use crate::policy::Policy;
use crate::report::{Action, FileInfo, Kind, Report, ReportItem, Verdict};
use crate::sniff;
use crate::threats;
use crate::unicode::{normalize_filename, with_extension};

/// Bytes that came out of a sanitizer. Only `sanitizer-core` can make one, so code that sends
/// unsanitized bytes downstream does not type-check.
#[derive(Clone, PartialEq, Eq)]
pub struct SafeBytes(Vec<u8>);

impl SafeBytes {
    /// Only the crate's own sanitizers produce these.
    pub(crate) fn new(bytes: Vec<u8>) -> SafeBytes {
        SafeBytes(bytes)
    }

    /// The sanitized bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sanitized bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for SafeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SafeBytes({} bytes)", self.0.len())
    }
}

/// What a format sanitizer made of its input.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub(crate) bytes: Vec<u8>,
    pub(crate) action: Action,
    pub(crate) kind: Kind,
    pub(crate) mime: String,
    pub(crate) extension: Option<String>,
    pub(crate) threats: Vec<&'static str>,
    pub(crate) reason: String,
    pub(crate) detail: Option<serde_json::Value>,
}

impl Rebuilt {
    /// A rebuilt output of `kind` with content type `mime`.
    pub(crate) fn new(bytes: Vec<u8>, action: Action, kind: Kind, mime: impl Into<String>) -> Self {
        Rebuilt {
            bytes,
            action,
            kind,
            mime: mime.into(),
            extension: None,
            threats: Vec::new(),
            reason: String::new(),
            detail: None,
        }
    }

    /// The output has another type than the input: its file name gets this extension.
    pub fn with_extension(mut self, ext: &str) -> Self {
        self.extension = Some(ext.to_owned());
        self
    }

    /// Adds threat ids found (and neutralised) in the input.
    pub fn with_threats(mut self, found: impl IntoIterator<Item = &'static str>) -> Self {
        for t in found {
            if !self.threats.contains(&t) {
                self.threats.push(t);
            }
        }
        self
    }

    /// A human-readable summary of what was done.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Per-action detail for the report.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The output bytes (for the sanitizer's own re-checks).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Every format sanitizer implements this. It decides from the bytes (the pipeline already
/// sniffed them), and either rebuilds the input into a safe form or fails with a reason.
pub trait FormatSanitizer: Sync {
    /// Short name for logs and reports.
    fn name(&self) -> &'static str;

    /// Rebuilds `input`. Containers call [`Context::sanitize_child`] for their members.
    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError>;
}

/// A document converter outside the pure core (LibreOffice, run by the daemon in its own
/// sandbox). The core never starts processes itself; a caller that has a converter passes it in
/// [`Services`], and formats that need one (legacy OLE2, Office rasterize mode) use it when
/// present and remove the part with a reason when not.
pub trait Converter: Sync {
    /// Converts `input`, whose original extension is `from_ext` (`doc`, `xls`, `ppt`, `docx`,
    /// ...), to the format named by `to` (`docx`, `xlsx`, `pptx`, `pdf`). Must give up by
    /// `deadline`.
    fn convert(
        &self,
        input: &[u8],
        from_ext: &str,
        to: &str,
        deadline: std::time::Instant,
    ) -> Result<Vec<u8>, String>;
}

/// One word recognised by an [`Ocr`] engine, in image pixels (origin top left).
#[derive(Debug, Clone, PartialEq)]
pub struct OcrWord {
    /// The word as Unicode text.
    pub text: String,
    /// Left edge in pixels.
    pub left: u32,
    /// Top edge in pixels.
    pub top: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A text recogniser outside the pure core (Tesseract, run by the daemon as a confined
/// child). Used for rasterized pages that carry no text when `pdf.ocr` is on.
pub trait Ocr: Sync {
    /// Recognises the words of one 8-bit grey image (`width` x `height`, row-major) rendered
    /// at `dpi`, in `languages` (`jpn+eng`). Must give up by `deadline`.
    fn recognize(
        &self,
        grey: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        languages: &str,
        deadline: std::time::Instant,
    ) -> Result<Vec<OcrWord>, String>;
}

/// Fonts lent by the caller. The core reads no files: the renderers get the fonts for text a
/// document names but does not embed (above all Japanese) from here, and SVG text is drawn
/// only with the fonts given here (a document never names a file to load).
///
/// [`Fonts`] is a ready implementation holding bytes the caller loaded; the daemon's
/// implementation reads the configured files lazily, once per process.
pub trait FontSource: Send + Sync {
    /// A CJK font collection whose faces 0–3 are Japanese, Korean, Simplified and Traditional
    /// Chinese (the layout of the Noto CJK `.ttc` files): the serif (Mincho) one when `serif`,
    /// else the sans-serif (Gothic) one. `None` when there is none.
    fn cjk(&self, serif: bool) -> Option<Arc<Vec<u8>>>;
    /// The font database SVG text is drawn with; `None`: SVG text is left out.
    fn svg_fonts(&self) -> Option<Arc<fontdb::Database>>;
}

/// A [`FontSource`] of fonts already in memory.
#[derive(Debug, Clone, Default)]
pub struct Fonts {
    /// CJK sans-serif collection (for example `NotoSansCJK-Regular.ttc`).
    pub cjk_sans: Option<Arc<Vec<u8>>>,
    /// CJK serif collection; `None` uses `cjk_sans` for serif text too.
    pub cjk_serif: Option<Arc<Vec<u8>>>,
    /// Fonts for SVG text.
    pub svg: Option<Arc<fontdb::Database>>,
}

impl FontSource for Fonts {
    fn cjk(&self, serif: bool) -> Option<Arc<Vec<u8>>> {
        if serif && self.cjk_serif.is_some() {
            return self.cjk_serif.clone();
        }
        self.cjk_sans.clone()
    }

    fn svg_fonts(&self) -> Option<Arc<fontdb::Database>> {
        self.svg.clone()
    }
}

/// Capabilities the caller lends the core for one item.
#[derive(Clone, Copy, Default)]
pub struct Services<'a> {
    /// Document converter, if one is available.
    pub converter: Option<&'a dyn Converter>,
    /// Fonts for text documents name but do not embed; without them such text is left out
    /// of rasterized pages (warning `pdf.font_missing`).
    pub fonts: Option<&'a Arc<dyn FontSource>>,
    /// The password of encrypted ZIP archives in this item (PPAP), given by its recipient:
    /// with it the ZIP sanitizer opens ZipCrypto archives and rebuilds their members as usual
    /// (see [`crate::formats::zip::decrypt_zip`]). Only ever set inside a worker.
    pub archive_password: Option<&'a [u8]>,
    /// Text recogniser for pages without text, if one is available (`pdf.ocr`).
    pub ocr: Option<&'a dyn Ocr>,
}

impl std::fmt::Debug for Services<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("converter", &self.converter.is_some())
            .field("fonts", &self.fonts.is_some())
            .field(
                "archive_password",
                &self.archive_password.map(|_| "[redacted]"),
            )
            .field("ocr", &self.ocr.is_some())
            .finish()
    }
}

/// State shared by every part of one item.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) budget: Budget,
    pub(crate) items: Vec<ReportItem>,
    pub(crate) warnings: Vec<String>,
    pub(crate) report_id: String,
}

impl Session {
    pub(crate) fn new(policy: &Policy) -> Session {
        Session {
            budget: Budget::new(&policy.limits),
            items: Vec::new(),
            warnings: Vec::new(),
            report_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// What a sanitizer sees of the item it works in: the policy, the budget, its position.
pub struct Context<'a> {
    policy: &'a Policy,
    services: Services<'a>,
    session: &'a mut Session,
    path: String,
    depth: u32,
}

/// One part handed to [`Context::sanitize_child`].
#[derive(Debug, Clone, Copy)]
pub struct PartInput<'b> {
    /// The part's bytes (already transfer-decoded).
    pub bytes: &'b [u8],
    /// The name it was given (MIME filename, archive member name), untrusted.
    pub name: Option<&'b str>,
    /// The declared content type, untrusted.
    pub declared_type: Option<&'b str>,
}

/// A part that survived, in safe form.
#[derive(Debug, Clone)]
pub struct SafePart {
    /// The sanitized bytes.
    pub bytes: SafeBytes,
    /// Normalised file name, its extension changed when the type changed.
    pub name: Option<String>,
    /// Content type of the output.
    pub mime: String,
    /// Kind of the output.
    pub kind: Kind,
    /// What was done.
    pub action: Action,
    /// Threats found in the input (neutralised).
    pub threats: Vec<&'static str>,
    /// Summary of what was done.
    pub reason: String,
}

/// A part that was removed.
#[derive(Debug, Clone)]
pub struct Removal {
    /// Sniffed kind of the input.
    pub kind: Kind,
    /// Normalised name of the input, if any.
    pub name: Option<String>,
    /// Why, in English.
    pub reason: String,
    /// Threat ids.
    pub threats: Vec<&'static str>,
}

/// What became of a part.
#[derive(Debug, Clone)]
pub enum PartOutcome {
    /// The part survives in safe form.
    Kept(SafePart),
    /// The part was removed.
    Removed(Removal),
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        policy: &'a Policy,
        services: Services<'a>,
        session: &'a mut Session,
        path: String,
    ) -> Self {
        Context {
            policy,
            services,
            session,
            path,
            depth: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &'a Policy {
        self.policy
    }

    /// The document converter lent by the caller, if any.
    pub fn converter(&self) -> Option<&'a dyn Converter> {
        self.services.converter
    }

    /// The fonts lent by the caller, if any.
    pub fn fonts(&self) -> Option<Arc<dyn FontSource>> {
        self.services.fonts.cloned()
    }

    /// The archive password lent by the caller, if any (PPAP unlocking).
    pub fn archive_password(&self) -> Option<&'a [u8]> {
        self.services.archive_password
    }

    /// The text recogniser lent by the caller, if any.
    pub fn ocr(&self) -> Option<&'a dyn Ocr> {
        self.services.ocr
    }

    /// The item's budget.
    pub fn budget(&mut self) -> &mut Budget {
        &mut self.session.budget
    }

    /// The report path of the current part.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Container nesting depth of the current part (top level = 0).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The report id of the item (for notices and headers).
    pub fn report_id(&self) -> &str {
        &self.session.report_id
    }

    /// Records a warning id (`pdf.font_missing`), once.
    pub fn warn(&mut self, id: &str) {
        if !self.session.warnings.iter().any(|w| w == id) {
            self.session.warnings.push(id.to_owned());
        }
    }

    /// Records a report item for something inside the current part that is not a part of its
    /// own (an HTML body converted to text, a macro removed from a document).
    pub fn record(&mut self, item: ReportItem) {
        self.session.items.push(item);
    }

    /// The items recorded so far (a container reads what its children did, for its notice).
    pub fn items(&self) -> &[ReportItem] {
        &self.session.items
    }

    /// Sanitizes a member of the current container: charges depth and part count, then runs the
    /// member's own sanitizer. `segment` is appended to the report path (`attachment[2]/a.pdf`).
    pub fn sanitize_child(&mut self, segment: &str, part: PartInput<'_>) -> PartOutcome {
        let path = if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{}/{}", self.path, segment)
        };
        let depth = self.depth.saturating_add(1);
        let mut child = Context {
            policy: self.policy,
            services: self.services,
            session: &mut *self.session,
            path,
            depth,
        };
        let gate = child
            .session
            .budget
            .check_depth(depth)
            .and_then(|()| child.session.budget.charge_part())
            .and_then(|()| child.session.budget.check_deadline());
        if let Err(e) = gate {
            let kind = sniff::sniff(part.bytes);
            let name = part.name.map(|n| normalize_filename(n).name);
            return child.removed(kind, name, vec![e.threat_id()], e.to_string());
        }
        process(&mut child, part)
    }

    fn removed(
        &mut self,
        kind: Kind,
        name: Option<String>,
        threats: Vec<&'static str>,
        reason: String,
    ) -> PartOutcome {
        self.session.items.push(ReportItem {
            path: self.path.clone(),
            kind,
            action: Action::Removed,
            threats: threats.iter().map(|t| (*t).to_owned()).collect(),
            reason: reason.clone(),
            detail: None,
        });
        PartOutcome::Removed(Removal {
            kind,
            name,
            reason,
            threats,
        })
    }
}

fn push_unique(v: &mut Vec<&'static str>, t: &'static str) {
    if !v.contains(&t) {
        v.push(t);
    }
}

/// Sniff, check claims, dispatch, guard, record: the same for every part at every depth.
fn process(cx: &mut Context<'_>, part: PartInput<'_>) -> PartOutcome {
    let sniffed = sniff::sniff(part.bytes);
    let mut found: Vec<&'static str> = Vec::new();
    let name = part.name.map(|raw| {
        let n = normalize_filename(raw);
        for t in &n.threats {
            push_unique(&mut found, t);
        }
        n.name
    });

    // The dangerous-name rule: a name or declared type that says executable/script removes the
    // part whatever the bytes.
    if let Some(declared) = part.declared_type
        && sniff::dangerous_mime(declared)
    {
        push_unique(&mut found, threats::MIME_EXECUTABLE);
    }
    let macro_enabled = name.as_deref().and_then(sniff::macro_enabled_name);
    if macro_enabled.is_some() {
        push_unique(&mut found, threats::FILENAME_MACRO_ENABLED);
    } else if let Some(n) = &name
        && sniff::dangerous_name(n)
    {
        push_unique(&mut found, threats::FILENAME_EXECUTABLE);
        if sniff::double_extension(n) {
            push_unique(&mut found, threats::FILENAME_DOUBLE_EXTENSION);
        }
    }
    // Claims that disagree with the bytes are reported; the bytes decide.
    let claimed = [
        part.declared_type.and_then(sniff::kind_from_mime),
        name.as_deref().and_then(sniff::kind_from_extension),
    ];
    if claimed
        .iter()
        .flatten()
        .any(|k| *k != Kind::Executable && !sniff::compatible(*k, sniffed))
    {
        push_unique(&mut found, threats::MIME_TYPE_MISMATCH);
    }
    // Text that Office, a browser or the Windows shell opens as a document or a command: never
    // delivered as text. The Office XML dialects go to the OOXML sanitizer (sniffed as OOXML);
    // the rest are removed with their own threat id.
    let disguise = matches!(sniffed, Kind::Script | Kind::Unsupported)
        .then(|| sniff::disguise(part.bytes))
        .flatten()
        .filter(|d| d.office_xml.is_none());
    match (sniffed, disguise) {
        (_, Some(d)) => push_unique(&mut found, d.threat),
        (Kind::Executable, None) => push_unique(&mut found, threats::EXECUTABLE),
        (Kind::Script, None) => push_unique(&mut found, threats::SCRIPT),
        _ => {}
    }
    let named_bad = found.iter().any(|t| {
        matches!(
            *t,
            threats::MIME_EXECUTABLE | threats::FILENAME_EXECUTABLE | threats::EXECUTABLE
        )
    });
    if let Some(d) = disguise
        && !named_bad
    {
        let reason = format!(
            "{}: text that Windows or Office opens as something other than text is never \
             delivered",
            d.what
        );
        return cx.removed(sniffed, name, found, reason);
    }
    if let Some(what) = macro_enabled
        && !named_bad
    {
        let reason = format!("{what} is never delivered (its macros would run when opened)");
        return cx.removed(sniffed, name, found, reason);
    }
    if found.iter().any(|t| {
        matches!(
            *t,
            threats::MIME_EXECUTABLE
                | threats::FILENAME_EXECUTABLE
                | threats::EXECUTABLE
                | threats::SCRIPT
        )
    }) {
        return cx.removed(
            sniffed,
            name,
            found,
            "executable or script content is never delivered".into(),
        );
    }

    let Some(sanitizer) = formats::sanitizer_for(sniffed, cx.policy) else {
        push_unique(&mut found, threats::UNSUPPORTED_FORMAT);
        let reason = match (formats::removed_by_policy(sniffed, cx.policy), sniffed) {
            (Some(why), _) => why,
            (None, Kind::ArchiveUnsupported) => {
                "archive format that is not rebuilt (7z, RAR, LZH, ...)"
            }
            (None, Kind::Unknown) => "content type not recognised",
            (None, Kind::Unsupported) => sniff::unsupported_reason(part.bytes),
            (None, _) => "unsupported format",
        };
        return cx.removed(sniffed, name, found, reason.into());
    };

    let first_item = cx.session.items.len();
    let result = catch_unwind(AssertUnwindSafe(|| sanitizer.sanitize(part.bytes, cx)));
    let rebuilt = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            push_unique(&mut found, e.threat_id());
            return cx.removed(sniffed, name, found, e.to_string());
        }
        Err(_) => {
            push_unique(&mut found, threats::INTERNAL_ERROR);
            return cx.removed(
                sniffed,
                name,
                found,
                format!("the {} sanitizer failed unexpectedly", sanitizer.name()),
            );
        }
    };
    let finished = cx
        .session
        .budget
        .check_deadline()
        .and_then(|()| cx.session.budget.charge_output(rebuilt.bytes.len() as u64));
    if let Err(e) = finished {
        push_unique(&mut found, e.threat_id());
        return cx.removed(sniffed, name, found, e.to_string());
    }
    // A text output is judged again as text: removing control characters or re-coding a
    // charset can turn harmless-looking input into a shortcut, a registry script, ...
    if matches!(rebuilt.kind, Kind::Text | Kind::Csv)
        && let Some(d) = sniff::disguise(&rebuilt.bytes).filter(|d| d.office_xml.is_none())
    {
        push_unique(&mut found, d.threat);
        let reason = format!(
            "{} once cleaned as text: text that Windows or Office opens as something other \
             than text is never delivered",
            d.what
        );
        return cx.removed(sniffed, name, found, reason);
    }
    for t in &rebuilt.threats {
        push_unique(&mut found, t);
    }
    let out_name = match (&name, &rebuilt.extension) {
        (Some(n), Some(ext)) => Some(with_extension(n, ext)),
        (n, _) => n.clone(),
    };
    // Windows picks the program by extension: text keeps only a text extension.
    let out_name = match rebuilt.kind {
        Kind::Text => out_name.map(|n| crate::naming::text_name(&n)),
        _ => out_name,
    };
    let reason = if rebuilt.reason.is_empty() {
        format!(
            "{} by the {} sanitizer",
            action_words(rebuilt.action),
            sanitizer.name()
        )
    } else {
        rebuilt.reason.clone()
    };
    // The part's own item goes before the items its children recorded.
    cx.session.items.insert(
        first_item.min(cx.session.items.len()),
        ReportItem {
            path: cx.path.clone(),
            kind: sniffed,
            action: rebuilt.action,
            threats: found.iter().map(|t| (*t).to_owned()).collect(),
            reason: reason.clone(),
            detail: rebuilt.detail.clone(),
        },
    );
    PartOutcome::Kept(SafePart {
        bytes: SafeBytes::new(rebuilt.bytes),
        name: out_name,
        mime: rebuilt.mime,
        kind: rebuilt.kind,
        action: rebuilt.action,
        threats: found,
        reason,
    })
}

fn action_words(a: Action) -> &'static str {
    match a {
        Action::Kept => "kept",
        Action::Rebuilt => "rebuilt",
        Action::Rasterized => "rasterized",
        Action::ConvertedToText => "converted to text",
        Action::Converted => "converted",
        Action::Reencoded => "re-encoded",
        Action::Removed => "removed",
    }
}

/// The result of sanitizing one file.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// The safe output and its (possibly renamed) file name; `None` when blocked.
    pub output: Option<SafeFile>,
    /// The report (`verdict` is `blocked` exactly when `output` is `None`).
    pub report: Report,
}

/// A sanitized file.
#[derive(Debug, Clone)]
pub struct SafeFile {
    /// The output file name (extension changed when the type changed, e.g. `a.docm` →
    /// `a.docx`).
    pub name: String,
    /// The sanitized bytes.
    pub bytes: SafeBytes,
    /// Content type of the output.
    pub mime: String,
    /// Kind of the output.
    pub kind: Kind,
}

/// Sanitizes one file. `name` is its file name, if known (used for the dangerous-name rule and
/// to name the output, never to pick the sanitizer).
///
/// A file that cannot be made safe as a whole is **blocked**: no output, and the report says why.
pub fn sanitize_file(input: &[u8], name: Option<&str>, policy: &Policy) -> FileOutcome {
    sanitize_file_with(input, name, policy, Services::default())
}

/// [`sanitize_file`] with capabilities lent by the caller (a document converter).
pub fn sanitize_file_with(
    input: &[u8],
    name: Option<&str>,
    policy: &Policy,
    services: Services<'_>,
) -> FileOutcome {
    let mut session = Session::new(policy);
    let in_kind = sniff::sniff(input);
    let top = name
        .map(|n| normalize_filename(n).name)
        .unwrap_or_else(|| "input".to_owned());
    let outcome = match session.budget.check_input(input.len() as u64) {
        Err(e) => {
            let mut cx = Context::new(policy, services, &mut session, top.clone());
            cx.removed(
                in_kind,
                Some(top.clone()),
                vec![e.threat_id()],
                e.to_string(),
            )
        }
        Ok(()) => {
            let mut cx = Context::new(policy, services, &mut session, top.clone());
            process(
                &mut cx,
                PartInput {
                    bytes: input,
                    name,
                    declared_type: None,
                },
            )
        }
    };
    let elapsed = session.budget.elapsed_ms();
    let (output, verdict, out_info) = match outcome {
        PartOutcome::Kept(p) => {
            let out_name = p.name.clone().unwrap_or_else(|| match sniff_ext(p.kind) {
                Some(ext) => with_extension("output", ext),
                None => "output".to_owned(),
            });
            let info = FileInfo::describe(Some(&out_name), p.bytes.as_slice(), p.kind);
            let verdict = Report::verdict_from_items(&session.items);
            (
                Some(SafeFile {
                    name: out_name,
                    bytes: p.bytes,
                    mime: p.mime,
                    kind: p.kind,
                }),
                verdict,
                Some(info),
            )
        }
        PartOutcome::Removed(_) => (None, Verdict::Blocked, None),
    };
    FileOutcome {
        output,
        report: Report {
            id: session.report_id,
            input: FileInfo::describe(name, input, in_kind),
            verdict,
            output: out_info,
            items: session.items,
            warnings: session.warnings,
            quarantine_id: None,
            duration_ms: elapsed,
        },
    }
}

fn sniff_ext(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Text => "txt",
        Kind::Pdf => "pdf",
        Kind::Mail => "eml",
        Kind::Csv => "csv",
        Kind::Zip => "zip",
        Kind::Tar => "tar",
        Kind::Gzip => "gz",
        _ => return None,
    })
}

/// The result of sanitizing one mail.
#[derive(Debug, Clone)]
pub struct MailOutcome {
    /// The safe RFC 5322 message (always present: a mail is never blocked).
    pub message: SafeBytes,
    /// The report (`verdict` is `clean` or `sanitized`).
    pub report: Report,
}

/// Sanitizes one RFC 5322 message into a newly built safe message.
///
/// Never blocked: a message that cannot be parsed, or whose every part is removed, still yields
/// a safe notice-only message; a panic inside is caught and turned into one too.
pub fn sanitize_mail(input: &[u8], policy: &Policy) -> MailOutcome {
    sanitize_mail_with(input, policy, Services::default())
}

/// [`sanitize_mail`] with capabilities lent by the caller (a document converter).
pub fn sanitize_mail_with(input: &[u8], policy: &Policy, services: Services<'_>) -> MailOutcome {
    let mut session = Session::new(policy);
    let result = match session.budget.check_input(input.len() as u64) {
        Err(e) => Err(e),
        Ok(()) => {
            let mut cx = Context::new(policy, services, &mut session, String::new());
            match catch_unwind(AssertUnwindSafe(|| {
                crate::mail::sanitize_message(input, &mut cx)
            })) {
                Ok(r) => r,
                Err(_) => Err(SanitizeError::Internal("mail sanitizer panicked".into())),
            }
        }
    };
    let message = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            session.items.push(ReportItem {
                path: "message".into(),
                kind: Kind::Mail,
                action: Action::Removed,
                threats: vec![e.threat_id().to_owned()],
                reason: e.to_string(),
                detail: None,
            });
            let cx = Context::new(policy, services, &mut session, String::new());
            crate::mail::notice_only(input, &e, &cx)
        }
    };
    let verdict = Report::verdict_from_items(&session.items);
    let elapsed = session.budget.elapsed_ms();
    MailOutcome {
        report: Report {
            id: session.report_id,
            input: FileInfo::describe(None, input, Kind::Mail),
            verdict,
            output: Some(FileInfo::describe(None, &message, Kind::Mail)),
            items: session.items,
            warnings: session.warnings,
            quarantine_id: None,
            duration_ms: elapsed,
        },
        message: SafeBytes::new(message),
    }
}

/// The outcome for a mail whose sanitizing failed outside the core's control (its worker was
/// killed, crashed, or returned output that failed the re-check): a notice-only message, as for
/// any failed mail. Deterministic, never a retry.
pub fn failed_mail(input: &[u8], err: &SanitizeError, policy: &Policy) -> MailOutcome {
    let mut session = Session::new(policy);
    session.items.push(ReportItem {
        path: "message".into(),
        kind: Kind::Mail,
        action: Action::Removed,
        threats: vec![err.threat_id().to_owned()],
        reason: err.to_string(),
        detail: None,
    });
    let cx = Context::new(policy, Services::default(), &mut session, String::new());
    let message = crate::mail::notice_only(input, err, &cx);
    MailOutcome {
        report: Report {
            id: session.report_id,
            input: FileInfo::describe(None, input, Kind::Mail),
            verdict: Verdict::Sanitized,
            output: Some(FileInfo::describe(None, &message, Kind::Mail)),
            items: session.items,
            warnings: session.warnings,
            quarantine_id: None,
            duration_ms: session.budget.elapsed_ms(),
        },
        message: SafeBytes::new(message),
    }
}

/// The outcome for a file whose sanitizing failed outside the core's control: blocked.
pub fn failed_file(
    input: &[u8],
    name: Option<&str>,
    err: &SanitizeError,
    policy: &Policy,
) -> FileOutcome {
    let session = Session::new(policy);
    let kind = sniff::sniff(input);
    FileOutcome {
        output: None,
        report: Report {
            id: session.report_id,
            input: FileInfo::describe(name, input, kind),
            verdict: Verdict::Blocked,
            output: None,
            items: vec![ReportItem {
                path: name
                    .map(|n| normalize_filename(n).name)
                    .unwrap_or_else(|| "input".to_owned()),
                kind,
                action: Action::Removed,
                threats: vec![err.threat_id().to_owned()],
                reason: err.to_string(),
                detail: None,
            }],
            warnings: Vec::new(),
            quarantine_id: None,
            duration_ms: 0,
        },
    }
}
