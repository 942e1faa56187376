//! The transform: one item in, its safe output (or none) and its report out.
//!
//! Every source (the CLI, and later the drop directory, the SMTP relay and HTTP) hands work to a
//! [`Transform`] as a [`Job`] and gets a [`JobOutcome`] back. Both types own their data and are
//! serde-serializable, so the in-process implementation ([`InProcess`]) can be swapped for a
//! pool of sandboxed worker processes that receive the policy once at start and then jobs over a
//! pipe. Nothing outside this module calls `sanitizer_core::sanitize_*` directly.
//!
//! Invariants:
//! - A job yields exactly one outcome and one report; `output` is `None` exactly when the
//!   verdict is `blocked` (a mail is never blocked).
//! - Output bytes come only from the core's `SafeBytes`: [`JobOutput`] has no public
//!   constructor, only [`JobOutput::bytes`] to read them. (A worker pool deserializes outcomes
//!   it received from its own workers; that is the one other way in.)

use serde::{Deserialize, Serialize};

use sanitizer_core::report::{Kind, Report, Verdict};
use sanitizer_core::unicode::{extension, normalize_filename, with_extension};
use sanitizer_core::{Converter, Policy, Services, sniff};

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
}

/// The safe output of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// Something that runs jobs: in this process, or in a pool of isolated workers.
pub trait Transform: Send + Sync {
    /// Sanitizes one job. Never fails: every failure is a verdict in the outcome's report.
    fn run(&self, job: &Job) -> JobOutcome;
}

/// Runs jobs in the calling thread with a fixed policy.
pub struct InProcess {
    policy: Policy,
    converter: Option<Box<dyn Converter + Send + Sync>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("converter", &self.converter.is_some())
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// A transform with `policy` and no document converter.
    pub fn new(policy: Policy) -> InProcess {
        InProcess {
            policy,
            converter: None,
        }
    }

    /// Lends the core a document converter (LibreOffice) for formats that need one.
    pub fn with_converter(mut self, converter: Box<dyn Converter + Send + Sync>) -> InProcess {
        self.converter = Some(converter);
        self
    }
}

impl Transform for InProcess {
    fn run(&self, job: &Job) -> JobOutcome {
        let services = Services {
            converter: self.converter.as_deref().map(|c| c as &dyn Converter),
        };
        sanitize(job, &self.policy, services)
    }
}

/// The one function boundary around the core: sanitizes `job` under `policy`.
pub fn sanitize(job: &Job, policy: &Policy, services: Services<'_>) -> JobOutcome {
    match job.mode {
        Mode::File => {
            let out = sanitizer_core::sanitize_file_with(
                &job.input,
                job.name.as_deref(),
                policy,
                services,
            );
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
        Mode::Mail => {
            let out = sanitizer_core::sanitize_mail_with(&job.input, policy, services);
            let name = mail_output_name(job.name.as_deref());
            let mut report = out.report;
            // The core does not know the file name of a mail; the report should.
            report.input.name.clone_from(&job.name);
            if let Some(info) = report.output.as_mut() {
                info.name = Some(name.clone());
            }
            JobOutcome {
                output: Some(JobOutput {
                    name,
                    mime: "message/rfc822".into(),
                    kind: Kind::Mail,
                    bytes: out.message.into_vec(),
                }),
                report,
            }
        }
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
        }
    }

    #[test]
    fn html_becomes_text_with_new_extension() {
        let t = InProcess::new(Policy::default());
        let out = t.run(&file(
            b"<html><script>alert(1)</script><p>Hi</p></html>",
            "a.html",
        ));
        let o = out.output.as_ref().unwrap();
        assert_eq!(o.name, "a.txt");
        assert!(!String::from_utf8_lossy(o.bytes()).contains("alert"));
        assert!(out.report.threats().contains(&"html.script"));
    }

    #[test]
    fn executable_is_blocked() {
        let out = InProcess::new(Policy::default()).run(&file(b"MZ\x90\0", "x.pdf"));
        assert!(out.is_blocked());
        assert!(out.output.is_none());
    }

    #[test]
    fn mail_is_never_blocked_and_named_eml() {
        let job = Job {
            input: b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: x\r\n\r\nhi\r\n".to_vec(),
            name: Some("m.txt".into()),
            mode: Mode::Mail,
        };
        let out = InProcess::new(Policy::default()).run(&job);
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
    fn jobs_and_outcomes_round_trip_through_serde() {
        let job = file(b"<p>x</p>", "a.html");
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        let out = InProcess::new(Policy::default()).run(&job);
        let back: JobOutcome = serde_json::from_str(&serde_json::to_string(&out).unwrap()).unwrap();
        assert_eq!(back, out);
    }
}
