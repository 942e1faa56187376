//! The `mugai` command line: argument parsing (clap derive) and the one-shot commands
//! `sanitize`, `mail`, `policy` and `check-policy`.
//!
//! Exit codes (CONTRACT.md): 0 every input produced a safe output; 3 at least one input was
//! blocked; 2 usage or configuration error; 1 anything else (I/O). When several apply, 1 wins
//! over 3, and 3 over 0.
//!
//! Choices where CONTRACT.md is silent (what a user would expect):
//! - `sanitize` with one input file and an OUTPUT that is an existing directory (or ends in
//!   `/`) writes into that directory, as `cp` would.
//! - `sanitize -` reads standard input (only as the sole input); the output is named by its
//!   sniffed type when written into a directory.
//! - An explicit output file (`-o FILE`, one input) is replaced atomically if it exists: the user
//!   named it. In a directory, nothing is ever replaced (collision suffixes).
//! - The report's `output.name` is the sanitized name (`page.txt`); in a batch it is the name
//!   actually written, including a collision suffix.
//! - A blocked input in a batch leaves `NAME.blocked.txt` (a second one `NAME (2).ext.blocked.txt`)
//!   with the reason, threats and report id; a single blocked file leaves nothing.
//! - Directory walks skip the output directory when it lies inside an input directory, every
//!   symbolic link (to a file or a directory: never followed, a message on stderr), and FIFOs,
//!   sockets and devices (reads that may never end). A symlink given as an argument is
//!   followed, as `cp` would: the user named it.
//! - An argument that is not a regular file (`/dev/zero`, a FIFO, a socket, a device) is refused
//!   with a message (exit 1) without being opened for reading; `-` reads standard input.
//! - An output never gets wider permissions than its input had: its mode is the input's mode
//!   & 0666 & !umask (a 0600 input gives a 0600 output).
//! - Control characters (C0, DEL, C1) and bidi/zero-width characters in names, paths and
//!   reasons are shown escaped (`\u{1b}`) on the terminal and in `NAME.blocked.txt`, so a file
//!   name cannot move the cursor, recolour the terminal or add a line of its own.
//! - An input over `limits.max_input_bytes` is read only up to the limit (the core blocks it);
//!   its report still carries the real size and SHA-256; it is not quarantined (the original is
//!   still where the user has it).
//! - A quarantine failure is exit 1, the item's report then has `quarantine_id: null`; the
//!   message says whether it was transient (disk full) or permanent.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sanitizer_core::report::{Action, Verdict};
use sanitizer_core::{Converter, DEFAULT_POLICY_TOML, Policy};

use crate::atomic::{Access, Existing, write_atomic};
use crate::convert::LibreOffice;
use crate::outbox::{write_blocked_note, write_new_with};
use crate::pool::{Isolated, PoolConfig};
use crate::quarantine::{DirStore, QuarantineId, QuarantineStore};
use crate::sanitize::{InProcess, Job, JobOutcome, Mode, Transform};

const EXIT_CODES: &str = "\
Exit codes:
  0  every input produced a safe output
  3  at least one input was blocked (no output; the report says why)
  2  usage or configuration error (bad option, invalid policy file)
  1  anything else (an input could not be read, an output could not be written)
  When several apply: 1 wins over 3, 3 over 0.";

const TOP_EXAMPLES: &str = "\
Examples:
  mugai sanitize invoice.html -o invoice.txt
  mugai sanitize --report report.jsonl inbox/ -o safe/
  mugai mail < in.eml > safe.eml
  mugai policy > policy.toml
  RUST_LOG=info mugai sanitize ...   # logs on standard error (default: warnings only)

";

const SANITIZE_HELP: &str = "\
Output naming:
  One input file ('-' = standard input): OUTPUT is that file ('-' = standard output); if
  OUTPUT is an existing directory or ends in '/', the output is written into it.
  Several inputs or a directory: OUTPUT is a directory (created if missing). Each output keeps
  its path relative to the input directory it came from (for file arguments, just the file
  name). The extension changes when the type changed (page.html -> page.txt,
  a.docm -> a.docx, mail -> .eml). An existing file is never overwritten: a numeric suffix is
  added instead (a.txt, a (2).txt, ...). A blocked input gets no output, but a note
  NAME.blocked.txt with the reason is written where its output would have gone.
  Mail files (.eml, or content that is an RFC 5322 message) are sanitized as mail.

Reports:
  --report FILE writes one JSON object per input (JSON Lines); '-' writes them to standard
  output. Without --report, a one-line summary per input goes to standard error (unless
  --quiet).

Examples:
  mugai sanitize invoice.html -o invoice.txt
  mugai sanitize --report report.jsonl inbox/ -o safe/
  mugai sanitize --quarantine /var/lib/mugai/quarantine a.pdf b.docx c.eml -o out/
  mugai sanitize page.html -o - | less
  curl -s https://example.jp/form.html | mugai sanitize - -o form.txt

";

const MAIL_HELP: &str = "\
Examples:
  mugai mail < in.eml > safe.eml
  mugai mail --report report.json in.eml -o safe.eml
  mugai mail --policy strict.toml --quarantine /var/lib/mugai/quarantine in.eml -o -

";

const POLICY_HELP: &str = "\
Examples:
  mugai policy > policy.toml         # start from the defaults, then edit
  mugai policy --check policy.toml   # same as: mugai check-policy policy.toml

";

/// Content Disarm and Reconstruction for mail and files.
///
/// Mugai turns untrusted mail and files into safe ones: mail bodies become plain text,
/// documents are rebuilt from an allow-list or rendered to images, and everything active
/// (scripts, macros, executables, external links) is removed. Each input gets a JSON report
/// saying what was found and done.
#[derive(Debug, Parser)]
#[command(name = "mugai", version, after_help = format!("{TOP_EXAMPLES}{EXIT_CODES}"))]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sanitize files (and mail files) into an output file or directory.
    ///
    /// Each INPUT (a file or a directory, walked recursively) is sanitized under the policy:
    /// rebuilt, converted or re-encoded into a safe form, or blocked when that is impossible
    /// (executables, encrypted or malformed files, bombs). Nothing is ever written in place;
    /// outputs go to OUTPUT following the naming rules below.
    #[command(after_help = format!("{SANITIZE_HELP}{EXIT_CODES}"))]
    Sanitize(SanitizeArgs),
    /// Sanitize one RFC 5322 message (standard input to standard output by default).
    ///
    /// The message is rebuilt: the body becomes plain text with a notice of what was done at
    /// the top, attachments are sanitized or removed, and the verdict is recorded in the
    /// X-Mugai-Sanitized and X-Mugai-Report-Id headers. A mail is never blocked: at worst the
    /// recipient gets a notice-only message, and the exit code is 0.
    #[command(after_help = format!("{MAIL_HELP}{EXIT_CODES}"))]
    Mail(MailArgs),
    /// Print the default policy (commented TOML), or check a policy file.
    ///
    /// The printed policy is the built-in default; save it, edit it and pass it with --policy.
    /// Unknown keys are errors, so a typo cannot silently weaken the policy.
    #[command(after_help = POLICY_HELP)]
    Policy(PolicyArgs),
    /// Check a policy file: prints OK, or the error naming the file and key (exit 2).
    CheckPolicy {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

/// Options shared by `sanitize` and `mail`.
#[derive(Debug, Args)]
pub struct Common {
    /// Sanitizing policy (TOML; see `mugai policy`). Default: the built-in policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Write the JSON report(s) here, one object per line; `-` for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub report: Option<PathBuf>,
    /// Keep each original whose verdict is not `clean`, with its report, in this directory
    /// (content-addressed; the same store the daemon uses).
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// No per-input summary on standard error.
    #[arg(short, long)]
    pub quiet: bool,
    /// Sanitize inside this process instead of sandboxed, one-job worker processes. For
    /// debugging only: a hostile input could then hang or crash the command itself.
    #[arg(long)]
    pub no_isolation: bool,
}

/// `mugai sanitize`.
#[derive(Debug, Args)]
pub struct SanitizeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Input files or directories; `-` (alone) for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input file; `-` for standard output) or directory.
    #[arg(short, long, value_name = "OUTPUT", required = true)]
    pub output: PathBuf,
    /// Inputs sanitized in parallel in a batch. Default: the number of CPUs.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
}

/// `mugai mail`.
#[derive(Debug, Args)]
pub struct MailArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// The message; `-` (default) for standard input.
    #[arg(value_name = "INPUT|-", default_value = "-")]
    pub input: PathBuf,
    /// Where the safe message goes; `-` (default) for standard output.
    #[arg(short, long, value_name = "OUTPUT|-", default_value = "-")]
    pub output: PathBuf,
}

/// `mugai policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Check this policy file instead of printing the defaults.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

/// Exit code 2, with a message; usage errors are formatted by clap.
#[derive(Debug)]
enum Fatal {
    /// A usage error in the named subcommand.
    Usage(&'static str, String),
    Config(String),
    Io(String),
}

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Fatal::Usage(sub, msg)) => {
            let mut cmd = Cli::command();
            cmd.build();
            let err = match cmd.find_subcommand_mut(sub) {
                Some(sc) => sc.error(clap::error::ErrorKind::ArgumentConflict, msg),
                None => cmd.error(clap::error::ErrorKind::ArgumentConflict, msg),
            };
            let _ = err.print();
            ExitCode::from(2)
        }
        Err(Fatal::Config(msg)) => {
            eprintln!("mugai: {msg}");
            ExitCode::from(2)
        }
        Err(Fatal::Io(msg)) => {
            eprintln!("mugai: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to standard error, filtered by `RUST_LOG` (`warn` by default). They never contain
/// message bodies.
fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal())
                .with_filter(filter),
        )
        .try_init();
}

fn run(cli: Cli) -> Result<ExitCode, Fatal> {
    match cli.command {
        Command::Policy(PolicyArgs { check: Some(file) }) | Command::CheckPolicy { file } => {
            load_policy(&file)?;
            println!("{}: OK", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyArgs { check: None }) => {
            let mut out = io::stdout().lock();
            out.write_all(DEFAULT_POLICY_TOML.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Fatal::Io(format!("standard output: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sanitize(args) => run_sanitize(args),
        Command::Mail(args) => run_mail(args),
    }
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Reads and validates a policy file; any problem is a configuration error (exit 2) naming
/// the file (and, from the parser, the key).
fn load_policy(path: &Path) -> Result<Policy, Fatal> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fatal::Config(format!("policy file {}: {e}", path.display())))?;
    Policy::from_toml(&text)
        .map_err(|e| Fatal::Config(format!("policy file {}: {e}", path.display())))
}

/// Where the per-item reports go.
enum ReportSink {
    /// No `--report`: human summaries on stderr (unless quiet).
    Summary { quiet: bool },
    /// JSON Lines to stdout.
    Stdout,
    /// JSON Lines to a file.
    File(BufWriter<File>, PathBuf),
}

/// Where outputs go.
enum Dest {
    /// Standard output.
    Stdout,
    /// Exactly this file (replaced atomically if it exists: the user named it).
    File(PathBuf),
    /// Into this directory, never overwriting; blocked inputs leave `NAME.blocked.txt`.
    Dir(PathBuf),
}

/// One input, read.
struct Item {
    bytes: Vec<u8>,
    name: Option<String>,
    display: String,
    /// The input was longer than the policy's `max_input_bytes` and only a prefix was read
    /// (the core blocks it; a prefix is not worth quarantining).
    truncated: bool,
    /// Size and SHA-256 of the whole input when only a prefix was read.
    real: Option<(u64, String)>,
    /// Permission bits of the input file (`None` for standard input): the output gets no
    /// wider ones.
    mode: Option<u32>,
}

/// How an input path may be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Named on the command line: a symlink to a regular file is read (the user named it).
    Named,
    /// Found by a directory walk: a symlink is never followed.
    Walked,
}

/// Reads an input file; see [`read_item`]. Only regular files are read: the type is checked
/// before opening (a FIFO is never opened, `/dev/zero` never read) and again on the opened
/// descriptor; the open itself never blocks (`O_NONBLOCK`) and, for walked files, never
/// follows a symlink swapped in after the walk (`O_NOFOLLOW`).
fn read_file(path: &Path, max_input: u64, follow: Follow) -> io::Result<Item> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let meta = match follow {
        Follow::Named => std::fs::metadata(path)?,
        Follow::Walked => std::fs::symlink_metadata(path)?,
    };
    let not_regular = |t: std::fs::FileType| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file; refused", describe_type(t)),
        )
    };
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if follow == Follow::Walked {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut item = read_item(file, name, path.display().to_string(), max_input)?;
    item.mode = Some(meta.permissions().mode() & 0o777);
    Ok(item)
}

/// A file type in words, for messages.
fn describe_type(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// Reads an input, at most one byte over the input limit: the core blocks it, and the report
/// gets the real size and hash, computed by streaming the rest without keeping it.
fn read_item(
    mut r: impl Read,
    name: Option<String>,
    display: String,
    max_input: u64,
) -> io::Result<Item> {
    let mut bytes = Vec::new();
    (&mut r)
        .take(max_input.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let truncated = bytes.len() as u64 > max_input;
    let real = if truncated {
        Some(hash_rest(&bytes, &mut r)?)
    } else {
        None
    };
    Ok(Item {
        bytes,
        name,
        display,
        truncated,
        real,
        mode: None,
    })
}

/// An item after the transform, before delivery.
struct Sanitized {
    job: Job,
    outcome: JobOutcome,
    display: String,
    truncated: bool,
    mode: Option<u32>,
}

/// Runs the transform on one item (any thread). `Err` is a message for the user: the
/// transform could not run (not a verdict on the content).
fn sanitize_item(transform: &dyn Transform, item: Item, mode: Mode) -> Result<Sanitized, String> {
    let job = Job {
        input: item.bytes,
        name: item.name,
        mode,
    };
    let mut outcome = transform.run(&job).map_err(|e| {
        let kind = if e.transient {
            "transient"
        } else {
            "permanent"
        };
        format!("{}: cannot sanitize ({kind}): {e}", item.display)
    })?;
    if let Some((size, sha256)) = item.real {
        outcome.report.input.size = size;
        outcome.report.input.sha256 = sha256;
    }
    tracing::info!(
        report = %outcome.report.id,
        verdict = ?outcome.report.verdict,
        kind = %outcome.report.input.kind,
        ms = outcome.report.duration_ms,
        "Item sanitized."
    );
    Ok(Sanitized {
        job,
        outcome,
        display: item.display,
        truncated: item.truncated,
        mode: item.mode,
    })
}

/// Size and hex SHA-256 of `prefix` followed by the rest of `rest`, without keeping it.
fn hash_rest(prefix: &[u8], rest: &mut impl Read) -> io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    let mut size = prefix.len() as u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        size = size.saturating_add(n as u64);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// In-process with `--no-isolation`, else a pool of sandboxed workers started from this
/// executable.
///
/// LibreOffice, when installed and the policy wants it, is lent as the document converter; it
/// always runs confined (`mugai __confine`), in this process's care, never inside a worker.
fn transform(policy: Policy, no_isolation: bool) -> Result<Arc<dyn Transform>, Fatal> {
    let exe = std::env::current_exe()
        .map_err(|e| Fatal::Io(format!("cannot find the mugai executable: {e}")))?;
    let wants_office = policy.office.convert_legacy || policy.office.rasterize;
    let converter: Option<Arc<dyn Converter + Send + Sync>> = if wants_office {
        LibreOffice::find(
            &policy.office.soffice,
            Duration::from_millis(policy.limits.deadline_ms),
        )
        .map(|lo| Arc::new(lo.confined(&exe)) as Arc<dyn Converter + Send + Sync>)
    } else {
        None
    };
    if no_isolation {
        let mut t = InProcess::new(policy);
        if let Some(c) = converter {
            t = t.with_converter(c);
        }
        return Ok(Arc::new(t));
    }
    let pool = Isolated::new(policy, PoolConfig::new(exe), converter)
        .map_err(|e| Fatal::Io(e.to_string()))?;
    Ok(Arc::new(pool))
}

/// The state of one command run.
struct Runner {
    transform: Arc<dyn Transform>,
    max_input: u64,
    quarantine: Option<DirStore>,
    reports: ReportSink,
    progress: Option<ProgressBar>,
    blocked: bool,
    failed: bool,
}

fn setup(sub: &'static str, common: &Common, output_is_stdout: bool) -> Result<Runner, Fatal> {
    let report_to_stdout = common.report.as_deref().is_some_and(is_dash);
    if report_to_stdout && output_is_stdout {
        return Err(Fatal::Usage(
            sub,
            "--report - and -o - both want standard output; send one of them to a file".into(),
        ));
    }
    let policy = match &common.policy {
        Some(p) => load_policy(p)?,
        None => Policy::default(),
    };
    let quarantine = match &common.quarantine {
        Some(dir) => Some(DirStore::open(dir).map_err(|e| Fatal::Io(e.to_string()))?),
        None => None,
    };
    let reports = match &common.report {
        None => ReportSink::Summary {
            quiet: common.quiet,
        },
        Some(p) if is_dash(p) => ReportSink::Stdout,
        Some(p) => {
            let f = File::create(p)
                .map_err(|e| Fatal::Io(format!("report file {}: {e}", p.display())))?;
            ReportSink::File(BufWriter::new(f), p.clone())
        }
    };
    Ok(Runner {
        max_input: policy.limits.max_input_bytes,
        transform: transform(policy, common.no_isolation)?,
        quarantine,
        reports,
        progress: None,
        blocked: false,
        failed: false,
    })
}

impl Runner {
    /// The exit code so far: 1 over 3 over 0.
    fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::from(1)
        } else if self.blocked {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        }
    }

    /// Prints a line on stderr without tearing the progress bar (control characters escaped).
    fn note(&self, line: &str) {
        let line = escape_controls(line);
        match &self.progress {
            Some(pb) => pb.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn error(&mut self, msg: String) {
        tracing::debug!(error = %msg, "Item failed.");
        self.note(&format!("mugai: {msg}"));
        self.failed = true;
    }

    /// Sanitizes one item in this thread and delivers it.
    fn handle(&mut self, item: Item, mode: Mode, dest: &Dest) {
        match sanitize_item(self.transform.as_ref(), item, mode) {
            Ok(done) => self.deliver(done, dest),
            Err(msg) => self.error(msg),
        }
    }

    /// Writes an item's output (or blocked note), quarantines the original when the verdict is
    /// not clean, and emits its report. Runs on the main thread, in input order, so naming
    /// and report order do not depend on which worker finished first.
    fn deliver(&mut self, done: Sanitized, dest: &Dest) {
        let Sanitized {
            job,
            mut outcome,
            display,
            truncated,
            mode,
        } = done;
        let access = mode.map_or(Access::Umask, Access::AtMost);
        let written = self.write_output(&job, &mut outcome, dest, &display, access);
        if outcome.report.verdict != Verdict::Clean
            && let Some(store) = &self.quarantine
        {
            if truncated {
                self.note(&format!(
                    "mugai: {}: larger than the input limit; original not quarantined",
                    display
                ));
            } else {
                let id = QuarantineId::of(&job.input);
                outcome.report.quarantine_id = Some(id.to_string());
                if let Err(e) = store.put(&job.input, &outcome.report) {
                    outcome.report.quarantine_id = None;
                    let kind = if e.is_transient() {
                        "transient"
                    } else {
                        "permanent"
                    };
                    self.error(format!("{display}: not quarantined ({kind}): {e}"));
                }
            }
        }
        if outcome.is_blocked() {
            self.blocked = true;
        }
        self.emit(&display, &outcome, written.as_deref());
    }

    /// Writes the output; returns where it went (for the summary).
    fn write_output(
        &mut self,
        job: &Job,
        outcome: &mut JobOutcome,
        dest: &Dest,
        display: &str,
        access: Access,
    ) -> Option<String> {
        let result = match (&outcome.output, dest) {
            (Some(out), Dest::Stdout) => {
                let mut so = io::stdout().lock();
                so.write_all(out.bytes())
                    .and_then(|()| so.flush())
                    .map(|()| "<stdout>".to_owned())
            }
            // The report keeps the sanitized name (`a.docx`): the user chose the path.
            (Some(out), Dest::File(path)) => {
                write_exact(path, out.bytes(), access).map(|p| p.display().to_string())
            }
            (Some(out), Dest::Dir(dir)) => std::fs::create_dir_all(dir)
                .and_then(|()| write_new_with(dir, &out.name, out.bytes(), access))
                .map(|p| {
                    set_output_name(outcome, &p);
                    p.display().to_string()
                }),
            (None, Dest::Dir(dir)) => {
                let name = job.name.as_deref().unwrap_or("input");
                let name = sanitizer_core::unicode::normalize_filename(name).name;
                std::fs::create_dir_all(dir)
                    .and_then(|()| write_blocked_note(dir, &name, &blocked_note(outcome)))
                    .map(|p| p.display().to_string())
            }
            (None, _) => return None,
        };
        match result {
            Ok(w) => Some(w),
            Err(e) => {
                self.error(format!("{display}: cannot write output: {e}"));
                None
            }
        }
    }

    fn emit(&mut self, display: &str, outcome: &JobOutcome, written: Option<&str>) {
        let line = outcome.report.to_json_line();
        let res = match &mut self.reports {
            ReportSink::Summary { quiet: true } => Ok(()),
            ReportSink::Summary { quiet: false } => {
                self.note(&summary(display, outcome, written));
                Ok(())
            }
            ReportSink::Stdout => {
                let mut so = io::stdout().lock();
                writeln!(so, "{line}").and_then(|()| so.flush())
            }
            ReportSink::File(w, _) => writeln!(w, "{line}"),
        };
        if let Err(e) = res {
            self.error(format!("cannot write report: {e}"));
        }
    }

    fn finish(&mut self) -> ExitCode {
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        if let ReportSink::File(w, path) = &mut self.reports {
            let res = w.flush().and_then(|()| w.get_ref().sync_all());
            if let Err(e) = res {
                let msg = format!("report file {}: {e}", path.display());
                self.error(msg);
            }
        }
        self.exit_code()
    }
}

/// Writes exactly `path`, atomically, replacing what is there.
fn write_exact(path: &Path, bytes: &[u8], access: Access) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    write_atomic(
        dir,
        &name.to_string_lossy(),
        bytes,
        Existing::Replace,
        access,
    )?;
    Ok(path.to_owned())
}

/// In a batch, the report names the file actually written (it may carry a collision suffix).
fn set_output_name(outcome: &mut JobOutcome, written: &Path) {
    if let (Some(info), Some(n)) = (outcome.report.output.as_mut(), written.file_name()) {
        info.name = Some(n.to_string_lossy().into_owned());
    }
}

/// Why an item was blocked: the reason of its first removed part.
fn block_reason(outcome: &JobOutcome) -> &str {
    outcome
        .report
        .items
        .iter()
        .find(|i| i.action == Action::Removed)
        .map_or("could not be made safe", |i| i.reason.as_str())
}

/// `s` with control characters (C0, DEL, C1) and bidi/zero-width characters written as
/// `\u{..}` escapes: names and reasons come from untrusted inputs (and a worker's claims), and
/// must not reach a terminal or a note as escape sequences or extra lines.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || sanitizer_core::unicode::is_invisible_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The text of `NAME.blocked.txt` (every field from the input or the report escaped).
fn blocked_note(outcome: &JobOutcome) -> String {
    let r = &outcome.report;
    let threats = escape_controls(&r.threats().join(", "));
    format!(
        "このファイルは安全にできないため、出力されませんでした（Mugai）。\n\
         This file was blocked by Mugai: it could not be made safe.\n\n\
         File: {}\nReason: {}\nThreats: {}\nReport ID: {}\n",
        escape_controls(r.input.name.as_deref().unwrap_or("(no name)")),
        escape_controls(block_reason(outcome)),
        if threats.is_empty() { "-" } else { &threats },
        escape_controls(&r.id),
    )
}

/// One line per item for people: `a.html: sanitized [html.script] -> out/a.txt`.
fn summary(display: &str, outcome: &JobOutcome, written: Option<&str>) -> String {
    let r = &outcome.report;
    let verdict = match r.verdict {
        Verdict::Clean => "clean",
        Verdict::Sanitized => "sanitized",
        Verdict::Blocked => "blocked",
    };
    let threats = r.threats();
    let mut line = format!("{display}: {verdict}");
    if !threats.is_empty() {
        line.push_str(&format!(" [{}]", threats.join(", ")));
    }
    if r.verdict == Verdict::Blocked {
        line.push_str(&format!(": {}", block_reason(outcome)));
    }
    match (written, r.verdict) {
        (Some(w), Verdict::Blocked) => line.push_str(&format!(" (note: {w})")),
        (Some(w), _) => line.push_str(&format!(" -> {w}")),
        (None, _) => {}
    }
    line
}

fn run_mail(args: MailArgs) -> Result<ExitCode, Fatal> {
    let to_stdout = is_dash(&args.output);
    let mut runner = setup("mail", &args.common, to_stdout)?;
    let item = if is_dash(&args.input) {
        read_item(io::stdin().lock(), None, "<stdin>".into(), runner.max_input)
    } else {
        read_file(&args.input, runner.max_input, Follow::Named)
    };
    let item = match item {
        Ok(i) => i,
        Err(e) => {
            return Err(Fatal::Io(format!(
                "cannot read {}: {e}",
                args.input.display()
            )));
        }
    };
    let dest = if to_stdout {
        Dest::Stdout
    } else {
        Dest::File(args.output.clone())
    };
    runner.handle(item, Mode::Mail, &dest);
    Ok(runner.finish())
}

/// One input file found for a batch: its path and the output directory it goes to.
struct Planned {
    path: PathBuf,
    out_dir: PathBuf,
    follow: Follow,
}

fn run_sanitize(args: SanitizeArgs) -> Result<ExitCode, Fatal> {
    let to_stdout = is_dash(&args.output);
    // `-o safe/` means a directory even when it does not exist yet.
    let output_is_dir = args.output.is_dir()
        || args
            .output
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR);
    // One input file (or `-`, standard input) is handled on its own; anything else is a batch.
    let single = match args.inputs.as_slice() {
        [one] => !one.is_dir(),
        _ => false,
    };
    if !single && args.inputs.iter().any(|p| is_dash(p)) {
        return Err(Fatal::Usage(
            "sanitize",
            "- (standard input) must be the only input".into(),
        ));
    }
    if !single && to_stdout {
        return Err(Fatal::Usage(
            "sanitize",
            "-o - (standard output) takes exactly one input file; give a directory for several \
             inputs or a directory input"
                .into(),
        ));
    }
    if !single && args.output.exists() && !args.output.is_dir() {
        return Err(Fatal::Usage(
            "sanitize",
            format!(
                "{} is not a directory; several inputs or a directory input need an output directory",
                args.output.display()
            ),
        ));
    }
    let mut runner = setup("sanitize", &args.common, to_stdout)?;

    if single {
        let Some(path) = args.inputs.first() else {
            return Err(Fatal::Usage("sanitize", "no input".into()));
        };
        let dest = if to_stdout {
            Dest::Stdout
        } else if output_is_dir {
            Dest::Dir(args.output.clone())
        } else {
            Dest::File(args.output.clone())
        };
        let item = if is_dash(path) {
            read_item(io::stdin().lock(), None, "<stdin>".into(), runner.max_input)
        } else {
            read_file(path, runner.max_input, Follow::Named)
        };
        match item {
            Ok(item) => {
                let mode = Mode::detect(item.name.as_deref(), &item.bytes);
                runner.handle(item, mode, &dest);
            }
            Err(e) => runner.error(format!("cannot read {}: {e}", path.display())),
        }
        return Ok(runner.finish());
    }

    let plan = plan_batch(&mut runner, &args.inputs, &args.output);
    if io::stderr().is_terminal() && !args.common.quiet {
        let pb = ProgressBar::new(plan.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}") {
            pb.set_style(style);
        }
        runner.progress = Some(pb);
    }
    let jobs = args.jobs.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    run_batch(&mut runner, plan, jobs);
    Ok(runner.finish())
}

/// Sanitizes a batch with `jobs` worker threads (reading and sanitizing), delivering results
/// on this thread in plan order. At most `2 × jobs` items are in flight or waiting, so memory
/// stays bounded however large the batch.
fn run_batch(runner: &mut Runner, plan: Vec<Planned>, jobs: usize) {
    let n = plan.len();
    let jobs = jobs.clamp(1, n.max(1));
    let window = jobs.saturating_mul(2);
    let transform = Arc::clone(&runner.transform);
    let max_input = runner.max_input;
    let (job_tx, job_rx) = mpsc::channel::<(usize, PathBuf, Follow)>();
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(usize, Result<Sanitized, String>)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let res_tx = res_tx.clone();
            let (job_rx, transform) = (&job_rx, &transform);
            scope.spawn(move || {
                loop {
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((i, path, follow)) = next else { break };
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        let item = read_file(&path, max_input, follow)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                        let mode = Mode::detect(item.name.as_deref(), &item.bytes);
                        sanitize_item(transform.as_ref(), item, mode)
                    }))
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "{}: internal error while sanitizing",
                            path.display()
                        ))
                    });
                    if res_tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending = BTreeMap::new();
        let (mut sent, mut next) = (0usize, 0usize);
        while next < n {
            while sent < n && sent < next.saturating_add(window) {
                if let Some(p) = plan.get(sent) {
                    // Workers only stop when this sender is dropped, so this cannot fail.
                    let _ = job_tx.send((sent, p.path.clone(), p.follow));
                }
                sent += 1;
            }
            let Some(result) = pending.remove(&next) else {
                match res_rx.recv() {
                    Ok((i, r)) => {
                        pending.insert(i, r);
                    }
                    Err(_) => {
                        runner.error("the sanitizing threads stopped unexpectedly".into());
                        break;
                    }
                }
                continue;
            };
            let Some(p) = plan.get(next) else { break };
            if let Some(pb) = &runner.progress {
                pb.set_message(p.path.display().to_string());
            }
            match result {
                Ok(done) => runner.deliver(done, &Dest::Dir(p.out_dir.clone())),
                Err(msg) => runner.error(msg),
            }
            if let Some(pb) = &runner.progress {
                pb.inc(1);
            }
            next += 1;
        }
        drop(job_tx);
    });
}

/// Lists the files of a batch: file arguments go straight into OUTPUT; directories are walked
/// (sorted, OUTPUT itself skipped) keeping relative paths. Symbolic links found by the walk,
/// to files or directories, are skipped with a message and never followed; so are FIFOs,
/// sockets and devices. A symlink named as an argument is the user's choice and is followed.
fn plan_batch(runner: &mut Runner, inputs: &[PathBuf], output: &Path) -> Vec<Planned> {
    let output_canon = std::fs::canonicalize(output).ok();
    let mut plan = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            // Missing, unreadable or special files are reported when they are read.
            plan.push(Planned {
                path: input.clone(),
                out_dir: output.to_owned(),
                follow: Follow::Named,
            });
            continue;
        }
        let mut stack = vec![(input.clone(), output.to_owned())];
        while let Some((dir, out_dir)) = stack.pop() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                Ok(it) => it.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    runner.error(format!("cannot list {}: {e}", dir.display()));
                    continue;
                }
            };
            entries.sort();
            let mut subdirs = Vec::new();
            for path in entries {
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    plan.push(Planned {
                        path,
                        out_dir: out_dir.clone(),
                        follow: Follow::Walked,
                    });
                    continue;
                };
                let Some(fname) = path.file_name().map(|n| n.to_owned()) else {
                    continue;
                };
                let t = meta.file_type();
                if t.is_dir() {
                    if output_canon.is_some() && std::fs::canonicalize(&path).ok() == output_canon {
                        continue;
                    }
                    // Windows would open the device, not the folder (`aux` → `aux_`).
                    let out_name = match fname.to_str() {
                        Some(n) if sanitizer_core::naming::is_reserved(n) => {
                            sanitizer_core::naming::avoid_reserved(n).into()
                        }
                        _ => fname,
                    };
                    subdirs.push((path, out_dir.join(out_name)));
                } else if t.is_file() {
                    plan.push(Planned {
                        path,
                        out_dir: out_dir.clone(),
                        follow: Follow::Walked,
                    });
                } else {
                    // Links could lead anywhere (`/etc/shadow`, a loop); FIFOs, sockets and
                    // devices could block or never end.
                    runner.note(&format!(
                        "mugai: {}: {}, skipped",
                        path.display(),
                        describe_type(t)
                    ));
                }
            }
            // Reverse so the stack visits subdirectories in sorted order.
            stack.extend(subdirs.into_iter().rev());
        }
    }
    plan
}
