//! The transform: one item in, its safe output (or none) and its report out.
//!
//! Every source (the CLI, and later the drop directory, the SMTP relay and HTTP) hands work to a
//! [`Transform`] as a [`Job`] and gets a [`JobOutcome`] back. Both types own their data and are
//! serde-serializable. [`InProcess`] runs [`sanitize`] in the calling thread; a pool of
//! sandboxed worker processes implements the same trait by sending the job to a worker and
//! turning the re-checked result into a `JobOutcome` with [`JobOutcome::from_file`] /
//! [`JobOutcome::from_mail`]. Nothing outside this module calls `sanitizer_core::sanitize_*`.
//!
//! Invariants:
//! - A job yields exactly one outcome and one report; `output` is `None` exactly when the
//!   verdict is `blocked` (a mail is never blocked).
//! - Output bytes come only from the core's `SafeBytes` (through `from_file`/`from_mail`):
//!   [`JobOutput`] has no other public constructor, only [`JobOutput::bytes`] to read them.
//!   (Deserializing an outcome is the one other way in; only do it with bytes that passed the
//!   core's re-check.)
//! - [`Transform::run`] fails only when it cannot run at all ([`TransformError`], transient or
//!   not); everything about the content, including a crashed or killed sanitizer, is a verdict.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sanitizer_core::pipeline::Ocr;
use sanitizer_core::preview::{PreviewLimits, Thumbnail, thumbnails};
use sanitizer_core::report::{Kind, Report, Verdict};
use sanitizer_core::unicode::{extension, normalize_filename, with_extension};
use sanitizer_core::{Converter, FileOutcome, FontSource, MailOutcome, Policy, Services, sniff};

/// How an item is sanitized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A file: sanitized or blocked.
    File,
    /// An RFC 5322 message: never blocked, at worst a notice-only message.
    Mail,
}

impl Mode {
    /// The mode for a file given to `mugai sanitize`: mail when its name ends in `.eml` or its
    /// bytes sniff as an RFC 5322 message, else file.
    pub fn detect(name: Option<&str>, bytes: &[u8]) -> Mode {
        let eml = name.and_then(extension).is_some_and(|e| e == "eml");
        if eml || sniff::sniff(bytes) == Kind::Mail {
            Mode::Mail
        } else {
            Mode::File
        }
    }
}

/// One item to sanitize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The untrusted bytes.
    pub input: Vec<u8>,
    /// The item's file name, if it has one (names the output; never picks the sanitizer).
    pub name: Option<String>,
    /// File or mail.
    pub mode: Mode,
    /// The password of an encrypted ZIP (PPAP) file, given by its recipient to unlock it
    /// (`crate::release::Release::unlock_with_password`): the worker opens the archive with it
    /// and sanitizes the members as usual. Only ever sent to the worker; never logged or
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
}

/// A password: shown as `[redacted]` by `Debug`, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: String) -> Password {
        Password(password)
    }

    /// The password's bytes (as typed, UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

pub use sanitizer_core::formats::zip::{WARN_UNLOCKED, WARN_WRONG_PASSWORD};

/// The safe output of a job. Built only from the core's safe outputs (no `Deserialize`: bytes
/// from elsewhere, such as a worker process, must pass `sanitizer_core::recheck` first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobOutput {
    /// The output file name: normalised, extension changed when the type changed
    /// (`a.docm` → `a.docx`, mail → `.eml`).
    pub name: String,
    /// Content type of the output.
    pub mime: String,
    /// Kind of the output.
    pub kind: Kind,
    bytes: Vec<u8>,
}

impl JobOutput {
    /// The sanitized bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sanitized bytes, owned (a worker sends them to its parent).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobOutcome {
    /// The safe output; `None` when blocked.
    pub output: Option<JobOutput>,
    /// The report (CONTRACT.md shape). The caller sets `quarantine_id` and may rename
    /// `output.name` to the name it actually wrote.
    pub report: Report,
}

impl JobOutcome {
    /// Whether the item was blocked (no output).
    pub fn is_blocked(&self) -> bool {
        self.report.verdict == Verdict::Blocked
    }

    /// The outcome of a file job, from the core's (or a worker pool's) [`FileOutcome`].
    pub fn from_file(out: FileOutcome) -> JobOutcome {
        JobOutcome {
            output: out.output.map(|f| JobOutput {
                name: f.name,
                mime: f.mime,
                kind: f.kind,
                bytes: f.bytes.into_vec(),
            }),
            report: out.report,
        }
    }

    /// The outcome of a mail job, from the core's (or a worker pool's) [`MailOutcome`].
    /// `name` is the input's file name, if any: the core does not know it, the report should,
    /// and the output is named after it with `.eml`.
    pub fn from_mail(out: MailOutcome, name: Option<&str>) -> JobOutcome {
        let out_name = mail_output_name(name);
        let mut report = out.report;
        report.input.name = name.map(str::to_owned);
        if let Some(info) = report.output.as_mut() {
            info.name = Some(out_name.clone());
        }
        JobOutcome {
            output: Some(JobOutput {
                name: out_name,
                mime: "message/rfc822".into(),
                kind: Kind::Mail,
                bytes: out.message.into_vec(),
            }),
            report,
        }
    }
}

/// Why a job produced no outcome at all. Not a verdict about the content (those are in the
/// report): the transform itself could not run, e.g. no worker process could be started.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransformError {
    /// What went wrong.
    pub message: String,
    /// Whether retrying later may succeed (overload, out of processes): the daemon defers
    /// (SMTP 451, file left in the inbox) instead of failing the item.
    pub transient: bool,
}

/// Something that runs jobs: in this process, or in a pool of isolated workers.
pub trait Transform: Send + Sync {
    /// Sanitizes one job. Everything about the content (unsafe, malformed, too big, a crashed
    /// or killed sanitizer) is a verdict in the outcome's report; `Err` only when the transform
    /// could not run at all.
    fn run(&self, job: &Job) -> Result<JobOutcome, TransformError>;

    /// Sanitizes one job and draws its output as small pictures for a reviewer
    /// ([`sanitizer_core::preview`]); an output with nothing to draw (or no output) gives none.
    /// `Err` only when the transform could not run at all.
    fn preview(&self, job: &Job, limits: &PreviewLimits) -> Result<Vec<Thumbnail>, TransformError>;
}

/// The daemon's current transform, shared by every source and replaced on SIGHUP (a new
/// policy); jobs already running finish with the one they started with.
pub struct Current(std::sync::RwLock<Arc<dyn Transform>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").finish_non_exhaustive()
    }
}

impl Current {
    /// Starts with `transform`.
    pub fn new(transform: Arc<dyn Transform>) -> Current {
        Current(std::sync::RwLock::new(transform))
    }

    /// The transform to run the next job with.
    pub fn get(&self) -> Arc<dyn Transform> {
        let guard = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Replaces the transform for jobs that start from now on.
    pub fn set(&self, transform: Arc<dyn Transform>) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = transform;
    }
}

/// Runs jobs in the calling thread with a fixed policy.
pub struct InProcess {
    policy: Policy,
    converter: Option<Arc<dyn Converter + Send + Sync>>,
    fonts: Option<Arc<dyn FontSource>>,
    ocr: Option<Arc<dyn Ocr + Send + Sync>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("converter", &self.converter.is_some())
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// A transform with `policy`, no document converter and no fonts.
    pub fn new(policy: Policy) -> InProcess {
        InProcess {
            policy,
            converter: None,
            fonts: None,
            ocr: None,
        }
    }

    /// Lends the core a text recogniser (Tesseract) for pages without text (`pdf.ocr`).
    pub fn with_ocr(mut self, ocr: Arc<dyn Ocr + Send + Sync>) -> InProcess {
        self.ocr = Some(ocr);
        self
    }

    /// Lends the core fonts for text documents name but do not embed.
    pub fn with_fonts(mut self, fonts: Arc<dyn FontSource>) -> InProcess {
        self.fonts = Some(fonts);
        self
    }

    /// Lends the core a document converter (LibreOffice) for formats that need one.
    pub fn with_converter(mut self, converter: Arc<dyn Converter + Send + Sync>) -> InProcess {
        self.converter = Some(converter);
        self
    }
}

impl Transform for InProcess {
    fn run(&self, job: &Job) -> Result<JobOutcome, TransformError> {
        let services = Services {
            converter: self.converter.as_deref().map(|c| c as &dyn Converter),
            fonts: self.fonts.as_ref(),
            archive_password: None,
            ocr: self.ocr.as_deref().map(|o| o as &dyn Ocr),
        };
        Ok(sanitize(job, &self.policy, services))
    }

    fn preview(&self, job: &Job, limits: &PreviewLimits) -> Result<Vec<Thumbnail>, TransformError> {
        let services = Services {
            converter: self.converter.as_deref().map(|c| c as &dyn Converter),
            fonts: self.fonts.as_ref(),
            archive_password: None,
            ocr: None,
        };
        Ok(preview(job, &self.policy, services, limits))
    }
}

/// Sanitizes `job` as [`sanitize`] does, then draws its output's pictures (what a worker runs
/// for a preview job). The pictures are of the sanitized output only, never of the input.
pub fn preview(
    job: &Job,
    policy: &Policy,
    services: Services<'_>,
    limits: &PreviewLimits,
) -> Vec<Thumbnail> {
    let fonts = services.fonts.cloned();
    match sanitize(job, policy, services).output {
        Some(o) => thumbnails(o.bytes(), o.kind, limits, fonts),
        None => Vec::new(),
    }
}

/// The one function boundary around the core: sanitizes `job` under `policy` in this thread.
/// A worker process runs exactly this on the jobs it receives.
pub fn sanitize(job: &Job, policy: &Policy, services: Services<'_>) -> JobOutcome {
    // A PPAP password reaches the ZIP sanitizer as a lent capability, for this item only.
    let services = Services {
        archive_password: job.password.as_ref().map(Password::as_bytes),
        ..services
    };
    match job.mode {
        Mode::File => JobOutcome::from_file(sanitizer_core::sanitize_file_with(
            &job.input,
            job.name.as_deref(),
            policy,
            services,
        )),
        Mode::Mail => JobOutcome::from_mail(
            sanitizer_core::sanitize_mail_with(&job.input, policy, services),
            job.name.as_deref(),
        ),
    }
}

/// `x.msg.txt` → `x.msg.eml`; no name → `message.eml`.
fn mail_output_name(name: Option<&str>) -> String {
    match name {
        Some(n) => with_extension(&normalize_filename(n).name, "eml"),
        None => "message.eml".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(input: &[u8], name: &str) -> Job {
        Job {
            input: input.to_vec(),
            name: Some(name.into()),
            mode: Mode::File,
            password: None,
        }
    }

    #[test]
    fn html_becomes_text_with_new_extension() {
        let t = InProcess::new(Policy::default());
        let out = t
            .run(&file(
                b"<html><script>alert(1)</script><p>Hi</p></html>",
                "a.html",
            ))
            .unwrap();
        let o = out.output.as_ref().unwrap();
        assert_eq!(o.name, "a.txt");
        assert!(!String::from_utf8_lossy(o.bytes()).contains("alert"));
        assert!(out.report.threats().contains(&"html.script"));
    }

    #[test]
    fn executable_is_blocked() {
        let out = InProcess::new(Policy::default())
            .run(&file(b"MZ\x90\0", "x.pdf"))
            .unwrap();
        assert!(out.is_blocked());
        assert!(out.output.is_none());
    }

    #[test]
    fn mail_is_never_blocked_and_named_eml() {
        let job = Job {
            input: b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: x\r\n\r\nhi\r\n".to_vec(),
            name: Some("m.txt".into()),
            mode: Mode::Mail,
            password: None,
        };
        let out = InProcess::new(Policy::default()).run(&job).unwrap();
        assert!(!out.is_blocked());
        assert_eq!(out.output.unwrap().name, "m.eml");
        assert_eq!(out.report.input.name.as_deref(), Some("m.txt"));
    }

    #[test]
    fn mode_detection() {
        assert_eq!(Mode::detect(Some("a.EML"), b"hello"), Mode::Mail);
        assert_eq!(
            Mode::detect(
                Some("a.dat"),
                b"From: a@x.jp\r\nSubject: s\r\nTo: b@x.jp\r\n\r\nx"
            ),
            Mode::Mail
        );
        assert_eq!(Mode::detect(Some("a.html"), b"<html></html>"), Mode::File);
    }

    #[test]
    fn jobs_round_trip_through_serde() {
        let job = file(b"<p>x</p>", "a.html");
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
