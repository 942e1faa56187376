//! Running `mugai sanitize` and `mugai mail`: the files source, the one transform, and the
//! sinks (quarantine, outbox, report log), with what a person sees on standard error.
//!
//! Choices where CONTRACT.md is silent (what a user would expect):
//! - `sanitize` with one input file and an OUTPUT that is an existing directory (or ends in
//!   `/`) writes into that directory, as `cp` would.
//! - `sanitize -` reads standard input (only as the sole input); the output is named by its
//!   sniffed type when written into a directory.
//! - An explicit output file (`-o FILE`, one input) is replaced atomically if it exists: the user
//!   named it. In a directory, nothing is ever replaced (collision suffixes).
//! - Several inputs with an OUTPUT that does not exist and looks like a file name (`out.docx`)
//!   are refused instead of creating a directory with that name; `-o out.docx/` creates it.
//! - The report's `output.name` is the sanitized name (`page.txt`); in a batch it is the name
//!   actually written, including a collision suffix.
//! - A blocked input in a batch leaves `NAME.blocked.txt` (a second one `NAME (2).ext.blocked.txt`)
//!   with the reason, threats and report id; a single blocked file leaves nothing.
//! - The original of an item that is not clean is quarantined before its output is written.
//! - An input over `limits.max_input_bytes` is read only up to the limit (the core blocks it);
//!   its report still carries the real size and SHA-256; it is not quarantined (the original is
//!   still where the user has it).
//! - A quarantine failure is exit 1, the item's report then has `quarantine_id: null`; the
//!   message says whether it was transient (disk full) or permanent.
//! - With `--config` whose `[quarantine] key_file` is set, originals are encrypted at rest with
//!   that key (created, 0600, when missing), as `mugai serve` stores them.
//! - A symlink given as an argument is followed, as `cp` would (the user named it); symlinks
//!   found by a walk never are. An argument that is not a regular file (`/dev/zero`, a FIFO, a
//!   socket, a device) is refused (exit 1) without being opened for reading.
//! - An output never gets wider permissions than its input had: input mode & 0666 & !umask.
//! - Control characters (C0, DEL, C1) and bidi/zero-width characters in names, paths and
//!   reasons are shown escaped (`\u{1b}`) on the terminal and in `NAME.blocked.txt`.
//! - Ctrl-C (or SIGTERM) stops taking new inputs; the inputs in flight are finished,
//!   delivered and reported, the summary says the run was interrupted, and the exit code is
//!   1. A second Ctrl-C exits at once.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use sanitizer_core::report::Verdict;

use super::args::{Common, MailArgs, SanitizeArgs};
use super::{Fatal, policy_for, say};
use crate::app::App;
use crate::batch::run_ordered;
use crate::config::Config;
use crate::i18n::Lang;
use crate::sanitize::{Job, JobOutcome, Mode};
use crate::shutdown::Shutdown;
use crate::sinks::atomic::Access;
use crate::sinks::outbox::{Dest, Outbox, block_reason, escape_for_display};
use crate::sinks::quarantine::{DirStore, QuarantineId, QuarantineStore, load_or_create_key};
use crate::sinks::report::{Context, ReportLog};
use crate::sinks::{Delivered, Delivery};
use crate::sources::files::{
    Follow, Item, Planned, WalkNote, is_dash, output_inside_input, plan_batch, read_file, read_item,
};

/// An item after the transform, before delivery.
struct Sanitized {
    job: Job,
    outcome: JobOutcome,
    display: String,
    rel_path: Option<String>,
    truncated: bool,
    /// The input's permission bits: the output gets no wider ones.
    mode: Option<u32>,
}

/// Counts for the summary block.
#[derive(Debug, Default)]
struct Tally {
    clean: usize,
    sanitized: usize,
    blocked: Vec<String>,
    errors: usize,
}

/// The state of one command run.
struct Runner {
    lang: Lang,
    reports: Option<ReportLog>,
    quiet: bool,
    /// Print the summary block at the end (not for a single message).
    block: bool,
    progress: Option<ProgressBar>,
    tally: Tally,
    started: Instant,
    /// Standard output went away: stop quietly.
    closed: bool,
    interrupted: bool,
}

fn setup(
    sub: &'static str,
    common: &Common,
    output_is_stdout: bool,
) -> Result<(App, Runner), Fatal> {
    let report_to_stdout = common.report.as_deref().is_some_and(is_dash);
    if report_to_stdout && output_is_stdout {
        return Err(Fatal::Usage(
            sub,
            "--report - and -o - both want standard output; send one of them to a file".into(),
        ));
    }
    let config = match &common.config {
        Some(p) => Config::load(p).map_err(|e| Fatal::Config(format!("{e:#}")))?,
        None => Config::default(),
    };
    // --policy wins over the configuration's [policy].
    let policy = match &common.policy {
        Some(p) => policy_for(Some(p))?,
        None => config.policy.clone(),
    };
    let quarantine = common.quarantine.clone().or_else(|| {
        (!config.quarantine.dir.as_os_str().is_empty()).then(|| config.quarantine.dir.clone())
    });
    // Only promise the original when something keeps it.
    let mut policy = policy;
    if quarantine.is_none() {
        policy.notice.release.clear();
    }
    let reports = match &common.report {
        None => None,
        Some(p) if is_dash(p) => Some(ReportLog::Stdout),
        Some(p) => Some(
            ReportLog::append(p)
                .map_err(|e| Fatal::Io(format!("report file {}: {e}", p.display())))?,
        ),
    };
    let mut app = App::build(policy, &config, quarantine.as_deref(), common.no_isolation)
        .map_err(|e| Fatal::Io(format!("{e:#}")))?;
    // Originals are encrypted at rest with the configuration's key, as the relay does.
    if let Some(dir) = &quarantine
        && !config.quarantine.key_file.as_os_str().is_empty()
    {
        let loaded = load_or_create_key(&config.quarantine.key_file)
            .map_err(|e| Fatal::Config(format!("[quarantine] key_file: {e:#}")))?;
        if loaded.created {
            say(&format!(
                "mugai: created the quarantine key {} (back it up: encrypted originals cannot \
                 be read without it)",
                config.quarantine.key_file.display()
            ));
        }
        let store = DirStore::open_with_key(dir, Some(loaded.key))
            .map_err(|e| Fatal::Config(format!("quarantine {}: {e}", dir.display())))?;
        app.quarantine = Some(store);
    }
    let runner = Runner {
        lang: Lang::detect(common.lang),
        reports,
        quiet: common.quiet,
        block: true,
        progress: None,
        tally: Tally::default(),
        started: Instant::now(),
        closed: false,
        interrupted: false,
    };
    Ok((app, runner))
}

/// Runs the transform on one item (any thread). `Err` is a message for the user: the
/// transform could not run (not a verdict on the content).
fn sanitize_item(app: &App, item: Item, mode: Mode) -> Result<Sanitized, String> {
    let job = Job {
        input: item.bytes,
        name: item.name,
        mode,
        password: None,
    };
    let mut outcome = app.transform.run(&job).map_err(|e| {
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
    Ok(Sanitized {
        job,
        outcome,
        display: item.display,
        rel_path: item.rel_path,
        truncated: item.truncated,
        mode: item.mode,
    })
}

impl Runner {
    /// The exit code: 1 over 3 over 0.
    fn exit_code(&self) -> ExitCode {
        if self.tally.errors > 0 || self.interrupted || self.closed {
            ExitCode::from(1)
        } else if !self.tally.blocked.is_empty() {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        }
    }

    /// Prints a line on stderr without tearing the progress bar.
    fn note(&self, line: &str) {
        match &self.progress {
            Some(pb) => pb.suspend(|| say(line)),
            None => say(line),
        }
    }

    fn error(&mut self, msg: &str) {
        tracing::debug!(error = %msg, "Item failed.");
        self.note(&format!("mugai: {}", escape_for_display(msg)));
        self.tally.errors += 1;
    }

    /// Quarantines the original when the verdict is not clean (before anything is delivered),
    /// writes the output or the blocked note, appends the report, and shows the result. Runs on
    /// the main thread, in input order, so naming and report order do not depend on which
    /// worker finished first.
    fn deliver(&mut self, app: &App, done: Sanitized, dest: Dest) {
        let Sanitized {
            job,
            mut outcome,
            display,
            rel_path,
            truncated,
            mode,
        } = done;
        if outcome.report.verdict != Verdict::Clean
            && let Some(store) = &app.quarantine
        {
            if truncated {
                self.note(&format!(
                    "mugai: {}: {}",
                    escape_for_display(&display),
                    self.lang.pick(
                        "入力の上限を超えるため原本は隔離していません",
                        "larger than the input limit; original not quarantined"
                    )
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
                    self.error(&format!("{display}: not quarantined ({kind}): {e}"));
                }
            }
        }
        let mut outbox = Outbox {
            dest,
            quarantine: app.quarantine.is_some(),
            access: mode.map_or(Access::Umask, Access::AtMost),
        };
        let delivered = match outbox.deliver(&job, &mut outcome) {
            Ok(d) => Some(d),
            Err(e) if e.io == Some(io::ErrorKind::BrokenPipe) => {
                self.closed = true;
                None
            }
            Err(e) => {
                self.error(&format!(
                    "{display}: {}: {e}",
                    self.lang
                        .pick("出力を書き込めません", "cannot write output")
                ));
                None
            }
        };
        let shown = display.clone();
        let r = &outcome.report;
        match r.verdict {
            Verdict::Clean => self.tally.clean += 1,
            Verdict::Sanitized => self.tally.sanitized += 1,
            Verdict::Blocked => self.tally.blocked.push(format!(
                "{}: {} ({})",
                escape_for_display(&display),
                r.threats().join(", "),
                escape_for_display(block_reason(r))
            )),
        }
        tracing::info!(
            input = %escape_for_display(&shown),
            report = %r.id,
            verdict = ?r.verdict,
            kind = %r.input.kind,
            ms = r.duration_ms,
            "Item {}.",
            r.verdict.as_str()
        );
        let written = delivered.as_ref().and_then(Delivered::display);
        match &mut self.reports {
            Some(log) => {
                let cx = Context {
                    input_path: rel_path,
                    output_path: match &delivered {
                        Some(Delivered::File(p)) => Some(p.display().to_string()),
                        _ => None,
                    },
                };
                if let Err(e) = log.write(&outcome.report, &cx) {
                    if e.io == Some(io::ErrorKind::BrokenPipe) {
                        self.closed = true;
                    } else {
                        self.error(&e.to_string());
                    }
                }
            }
            None if !self.quiet => {
                self.note(&item_line(
                    self.lang,
                    &display,
                    &outcome,
                    written.as_deref(),
                ));
            }
            None => {}
        }
    }

    /// Ends the run: clears the progress bar, syncs the report log, prints the summary.
    fn finish(&mut self, inputs: usize) -> ExitCode {
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        if let Some(log) = &mut self.reports
            && let Err(e) = log.sync()
        {
            let msg = e.to_string();
            self.error(&msg);
        }
        if self.block && !self.quiet && !self.closed {
            say(&self.summary(inputs));
        }
        self.exit_code()
    }

    /// The summary block, like clamscan's: counts, time, blocked inputs by name.
    fn summary(&self, inputs: usize) -> String {
        let t = &self.tally;
        let secs = self.started.elapsed().as_secs_f64();
        let done = t.clean + t.sanitized + t.blocked.len();
        let mut s = match self.lang {
            Lang::Ja => format!(
                "----------- 無害化の結果 -----------\n\
                 入力：{inputs} 件\n\
                 無害（変更なし）：{}\n\
                 無害化済み：{}\n\
                 遮断（出力なし）：{}\n\
                 エラー：{}\n\
                 処理時間：{secs:.1} 秒",
                t.clean,
                t.sanitized,
                t.blocked.len(),
                t.errors
            ),
            Lang::En => format!(
                "----------- SUMMARY -----------\n\
                 Inputs: {inputs}\n\
                 Clean: {}\n\
                 Sanitized: {}\n\
                 Blocked: {}\n\
                 Errors: {}\n\
                 Time: {secs:.1} s",
                t.clean,
                t.sanitized,
                t.blocked.len(),
                t.errors
            ),
        };
        if self.interrupted {
            s.push_str(&format!(
                "\n{}",
                self.lang.pick(
                    &format!("中断されました：{done} / {inputs} 件を処理"),
                    &format!("Interrupted: {done} of {inputs} inputs done"),
                )
            ));
        }
        if !t.blocked.is_empty() {
            s.push_str(self.lang.pick("\n遮断したファイル：", "\nBlocked:"));
            for b in &t.blocked {
                s.push_str(&format!("\n  {b}"));
            }
        }
        s
    }
}

/// One line per item for people: `a.html: sanitized [html.script] -> out/a.txt`, with
/// warnings, and the reason when blocked. Names are escaped (no control characters reach the
/// terminal).
fn item_line(lang: Lang, display: &str, outcome: &JobOutcome, written: Option<&str>) -> String {
    let r = &outcome.report;
    let verdict = match (lang, r.verdict) {
        (Lang::Ja, Verdict::Clean) => "無害（変更なし）",
        (Lang::Ja, Verdict::Sanitized) => "無害化済み",
        (Lang::Ja, Verdict::Blocked) => "遮断",
        (Lang::En, Verdict::Clean) => "clean",
        (Lang::En, Verdict::Sanitized) => "sanitized",
        (Lang::En, Verdict::Blocked) => "blocked",
    };
    let threats = r.threats();
    let mut line = format!("{}{}{verdict}", escape_for_display(display), lang.colon());
    if !threats.is_empty() {
        line.push_str(&format!(" [{}]", threats.join(", ")));
    }
    if !r.warnings.is_empty() {
        line.push_str(&format!(
            " ({}{}{})",
            lang.pick("警告", "warnings"),
            lang.colon(),
            r.warnings.join(", ")
        ));
    }
    if r.verdict == Verdict::Blocked {
        let threat = crate::sinks::outbox::block_threat(r).unwrap_or("");
        let reason = match lang {
            Lang::Ja => crate::i18n::threat_ja(threat).to_owned(),
            Lang::En => escape_for_display(block_reason(r)),
        };
        line.push_str(&format!("{}{reason}", lang.colon()));
    }
    match (written, r.verdict) {
        (Some(w), Verdict::Blocked) => line.push_str(&format!(
            " ({}{}{})",
            lang.pick("説明", "note"),
            lang.colon(),
            escape_for_display(w)
        )),
        (Some(w), _) => line.push_str(&format!(" -> {}", escape_for_display(w))),
        (None, _) => {}
    }
    line
}

/// `mugai mail`.
pub(super) fn mail(args: MailArgs) -> Result<ExitCode, Fatal> {
    let to_stdout = is_dash(&args.output);
    let (app, mut runner) = setup("mail", &args.common, to_stdout)?;
    let item = if is_dash(&args.input) {
        read_item(io::stdin().lock(), None, "<stdin>".into(), app.max_input)
    } else {
        read_file(&args.input, app.max_input, Follow::Named)
    };
    let item = item.map_err(|e| Fatal::Io(format!("cannot read {}: {e}", args.input.display())))?;
    let dest = if to_stdout {
        Dest::Stdout
    } else {
        Dest::File(args.output.clone())
    };
    match sanitize_item(&app, item, Mode::Mail) {
        Ok(done) => runner.deliver(&app, done, dest),
        Err(msg) => runner.error(&msg),
    }
    // One message: its own line is the summary, no block.
    runner.block = false;
    Ok(runner.finish(1))
}

/// Whether a path that does not exist yet reads as a file name (`out.docx`), not a folder.
fn looks_like_file_name(p: &Path) -> bool {
    !p.exists()
        && !p
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR)
        && p.extension().is_some_and(|e| !e.is_empty())
}

/// `mugai sanitize`.
pub(super) fn sanitize(args: SanitizeArgs) -> Result<ExitCode, Fatal> {
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
    if !single && looks_like_file_name(&args.output) {
        return Err(Fatal::Usage(
            "sanitize",
            format!(
                "{} looks like a file name, but several inputs or a directory input need an \
                 output directory; write {}/ to create a directory with that name",
                args.output.display(),
                args.output.display()
            ),
        ));
    }
    if !single && let Some(input) = output_inside_input(&args.inputs, &args.output) {
        return Err(Fatal::Usage(
            "sanitize",
            format!(
                "the output {} is inside the input directory {}: untrusted originals and safe \
                 copies must not share a folder; choose an output outside it",
                args.output.display(),
                input.display()
            ),
        ));
    }
    let (app, mut runner) = setup("sanitize", &args.common, to_stdout)?;

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
            read_item(io::stdin().lock(), None, "<stdin>".into(), app.max_input)
        } else {
            read_file(path, app.max_input, Follow::Named).map(|mut i| {
                i.rel_path = i.name.clone();
                i
            })
        };
        match item {
            Ok(item) => {
                let mode = Mode::detect(item.name.as_deref(), &item.bytes);
                match sanitize_item(&app, item, mode) {
                    Ok(done) => runner.deliver(&app, done, dest),
                    Err(msg) => runner.error(&msg),
                }
            }
            Err(e) => runner.error(&format!("cannot read {}: {e}", path.display())),
        }
        // One input: its own line (or the report) says it all; the block is for batches.
        runner.block = false;
        return Ok(runner.finish(1));
    }

    let (plan, notes) = plan_batch(&args.inputs, &args.output);
    for n in &notes {
        match n {
            WalkNote::Symlink(p) => runner.note(&format!(
                "mugai: {}{}",
                escape_for_display(&p.display().to_string()),
                runner.lang.pick(
                    "：シンボリックリンクは辿らずにスキップしました",
                    ": a symbolic link, skipped (symlinks are never followed)"
                )
            )),
            WalkNote::NotRegular(p, what) => runner.note(&format!(
                "mugai: {}{}",
                escape_for_display(&p.display().to_string()),
                match runner.lang {
                    Lang::Ja =>
                        "：通常のファイルではない（FIFO・ソケット・デバイス）ためスキップしました"
                            .to_owned(),
                    Lang::En => format!(": {what}, skipped (not a regular file)"),
                }
            )),
            WalkNote::Unlistable(p, e) => {
                let msg = format!("cannot list {}: {e}", p.display());
                runner.error(&msg);
            }
        }
    }
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
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.on_signals() {
        tracing::warn!(error = %e, "Cannot handle Ctrl-C gracefully.");
    }
    let n = plan.len();
    let max_input = app.max_input;
    let app = &app;
    let work = |p: &Planned| -> Result<Sanitized, String> {
        let mut item = read_file(&p.path, max_input, p.follow)
            .map_err(|e| format!("cannot read {}: {e}", p.path.display()))?;
        item.rel_path = Some(p.rel_path.clone());
        let mode = Mode::detect(item.name.as_deref(), &item.bytes);
        sanitize_item(app, item, mode)
    };
    let delivered = run_ordered(&plan, jobs, &shutdown, work, |p, result| {
        if runner.closed {
            // Nobody reads our output any more: stop taking work, quietly.
            shutdown.trigger();
            return;
        }
        if let Some(pb) = &runner.progress {
            pb.set_message(escape_for_display(&p.path.display().to_string()));
        }
        match result {
            Ok(done) => runner.deliver(app, done, Dest::Dir(p.out_dir.clone())),
            Err(msg) => runner.error(&msg),
        }
        if let Some(pb) = &runner.progress {
            pb.inc(1);
        }
    });
    if delivered < n {
        runner.interrupted = true;
    }
    Ok(runner.finish(n))
}
