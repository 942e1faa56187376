//! A pool of pre-spawned, sandboxed worker processes: one job per process.
//!
//! Invariants:
//! - A hostile input never runs in the process that holds other work: each job runs in a fresh
//!   worker that exits afterwards. Idle workers are spawned ahead of time (and replaced in the
//!   background as they are used), so process start-up is off the critical path.
//! - Hard limits are the kernel's, not the sanitizer's goodwill: a wall-clock timeout (the
//!   worker is killed), `RLIMIT_AS`, `RLIMIT_CPU`, seccomp and Landlock (see
//!   [`sandbox`](crate::isolate::sandbox)).
//! - The parent never trusts a worker's word: its output becomes [`SafeBytes`] only through
//!   `sanitizer_core::recheck`, run here in the parent.
//! - A killed, crashed or lying worker gives the same deterministic outcome as any failed item
//!   (CONTRACT.md): a notice-only mail or a blocked file, with the cause as the threat id. Only
//!   infrastructure trouble (no worker could be started) is a [`PoolError`], which callers treat
//!   as transient (SMTP 451, file left in the inbox).
//!
//! [`SafeBytes`]: sanitizer_core::SafeBytes

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sanitizer_core::pipeline::Ocr;
use sanitizer_core::preview::{PreviewLimits, Thumbnail};
use sanitizer_core::report::is_valid_report_id;
use sanitizer_core::unicode::extension;
use sanitizer_core::{
    Converter, FileInfo, FileOutcome, Kind, MailOutcome, Policy, Report, SafeFile, SanitizeError,
    Verdict, failed_file, failed_mail, naming, recheck, sniff, threats,
};

use crate::isolate::sandbox::SandboxConfig;
use crate::isolate::wire::{
    self, ConvertReply, ConvertRequest, Frame, JobHeader, Mode, PreviewHeader, ResultHeader, tag,
};
use crate::isolate::worker;
use crate::sanitize::{Job, JobOutcome, Transform, TransformError};

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Idle workers kept ready (default: number of cores).
    pub size: usize,
    /// The `mugai` executable to start workers from.
    pub exe: PathBuf,
    /// Per-worker confinement (memory cap, CPU seconds, readable paths).
    pub sandbox: SandboxConfig,
    /// Extra wall-clock time past the policy deadline before the worker is killed.
    pub grace: Duration,
    /// Largest frame body a worker may send back. [`Isolated::new`] lowers it to the policy's
    /// output cap (or input cap, for documents sent to the converter), whichever is larger.
    pub max_frame_bytes: u64,
    /// Host paths: the fonts workers read (their directories are added to the sandbox).
    pub host: crate::config::Host,
}

impl PoolConfig {
    /// Defaults: one idle worker per core, this executable, the default sandbox.
    pub fn new(exe: PathBuf) -> PoolConfig {
        PoolConfig {
            size: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            exe,
            sandbox: SandboxConfig::default(),
            grace: Duration::from_secs(2),
            max_frame_bytes: 1024 * 1024 * 1024,
            host: crate::config::Host::default(),
        }
    }
}

/// No worker could be had: infrastructure trouble, transient for the caller.
#[derive(Debug, thiserror::Error)]
#[error("worker pool unavailable: {0}")]
pub struct PoolError(String);

enum Event {
    Frame(Frame),
    Closed,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Event>,
    stderr: JoinHandle<Vec<u8>>,
    /// Its ready frame was already read and checked (the first worker, in [`Pool::new`]).
    ready: Option<Frame>,
}

const STDERR_CAP: u64 = 64 * 1024;

/// The pool.
pub struct Pool {
    cfg: PoolConfig,
    idle: Arc<Mutex<VecDeque<Worker>>>,
    converter: Option<Arc<dyn Converter + Send + Sync>>,
    warned_landlock: AtomicBool,
    ocr: Option<Arc<dyn Ocr + Send + Sync>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("cfg", &self.cfg).finish()
    }
}

fn spawn_worker(cfg: &PoolConfig) -> std::io::Result<Worker> {
    let mut child = Command::new(&cfg.exe)
        .args(worker::sandbox_args(&cfg.sandbox))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("no stderr"))?;
    // Bounded: a worker that floods frames blocks in its own pipe instead of filling the
    // parent's memory; each frame is at most `max_frame_bytes`.
    let (tx, events) = sync_channel(1);
    let cap = cfg.max_frame_bytes;
    std::thread::spawn(move || {
        loop {
            match wire::read_frame(&mut stdout, cap) {
                Ok(Some(f)) => {
                    if tx.send(Event::Frame(f)).is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    let _ = tx.send(Event::Closed);
                    return;
                }
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = stderr.take(STDERR_CAP);
        let _ = limited.read_to_end(&mut buf);
        // Drain the rest so the worker never blocks on a full pipe.
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
        buf
    });
    Ok(Worker {
        child,
        stdin,
        events,
        stderr,
        ready: None,
    })
}

/// Waits for a worker's ready frame: it says the worker confined itself. A worker that refused
/// to start (sandbox setup failed, e.g. no Landlock where it is required) is killed and its
/// last words become the error.
fn await_ready(w: &mut Worker) -> Result<Frame, PoolError> {
    if let Some(f) = w.ready.take() {
        return Ok(f);
    }
    match w.events.recv_timeout(Duration::from_secs(10)) {
        Ok(Event::Frame(f)) if f.tag == tag::READY => Ok(f),
        _ => {
            let _ = w.child.kill();
            let status = w.child.wait().ok();
            let err = std::mem::replace(&mut w.stderr, std::thread::spawn(Vec::new));
            let err = err.join().unwrap_or_default();
            Err(PoolError(format!(
                "worker did not start ({}): {}",
                status.map_or_else(|| "no status".to_owned(), |s| s.to_string()),
                String::from_utf8_lossy(&err).trim()
            )))
        }
    }
}

/// Why a worker did not deliver.
fn classify(status: Option<ExitStatus>, stderr: &[u8], timed_out: bool) -> SanitizeError {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().last().unwrap_or_default().to_owned();
    let (threat, detail) = if timed_out {
        (
            threats::LIMIT_DEADLINE,
            "worker killed at the wall-clock deadline".to_owned(),
        )
    } else {
        match status.and_then(|s| s.signal()) {
            Some(libc::SIGSYS) => (
                threats::SANDBOX_VIOLATION,
                "worker killed by the sandbox for a forbidden system call".to_owned(),
            ),
            Some(libc::SIGXCPU) => (
                threats::LIMIT_CPU,
                "worker hit its CPU-time limit".to_owned(),
            ),
            Some(sig) if text.contains("memory allocation") => (
                threats::LIMIT_MEMORY,
                format!("worker ran out of its memory limit (signal {sig})"),
            ),
            Some(sig) if text.contains("overflowed its stack") => (
                threats::WORKER_CRASHED,
                format!("worker overflowed its stack (signal {sig})"),
            ),
            Some(libc::SIGKILL) => (threats::WORKER_KILLED, "worker was killed".to_owned()),
            Some(sig) => (
                threats::WORKER_CRASHED,
                format!("worker crashed (signal {sig})"),
            ),
            None => match status.and_then(|s| s.code()) {
                Some(worker::EXIT_SANDBOX_DENIED) => (
                    threats::SANDBOX_VIOLATION,
                    format!("the sandbox refused an operation: {last}"),
                ),
                Some(code) => (
                    threats::WORKER_CRASHED,
                    format!("worker exited with {code}"),
                ),
                None => (threats::WORKER_KILLED, "worker vanished".to_owned()),
            },
        }
    };
    SanitizeError::Worker { threat, detail }
}

/// The raw, untrusted result of one job (see [`accept_file`] and [`accept_mail`]).
struct Raw {
    head: ResultHeader,
    body: Vec<u8>,
}

impl Pool {
    /// Starts the pool and its idle workers. `converter` (LibreOffice) runs in the parent on the
    /// workers' behalf, since workers cannot start processes.
    pub fn new(
        cfg: PoolConfig,
        converter: Option<Arc<dyn Converter + Send + Sync>>,
    ) -> Result<Pool, PoolError> {
        // Descriptors this process was given by its caller (or opened without close-on-exec)
        // must not reach any worker or helper.
        crate::isolate::sandbox::mark_fds_cloexec();
        let mut idle = VecDeque::new();
        for _ in 0..cfg.size.max(1) {
            idle.push_back(spawn_worker(&cfg).map_err(|e| PoolError(e.to_string()))?);
        }
        // Fail at start, with the worker's own words, when workers cannot confine themselves
        // here (rather than on every job).
        if let Some(first) = idle.front_mut() {
            let ready = await_ready(first)?;
            first.ready = Some(ready);
        }
        Ok(Pool {
            cfg,
            idle: Arc::new(Mutex::new(idle)),
            converter,
            warned_landlock: AtomicBool::new(false),
            ocr: None,
        })
    }

    /// Lends the workers a text recogniser (Tesseract), run here in the parent on their
    /// behalf for jobs whose policy has `pdf.ocr` on.
    pub fn with_ocr(mut self, ocr: Arc<dyn Ocr + Send + Sync>) -> Pool {
        self.ocr = Some(ocr);
        self
    }

    /// Takes an idle worker and starts its replacement in the background.
    fn take(&self) -> Result<Worker, PoolError> {
        let popped = self
            .idle
            .lock()
            .map_err(|_| PoolError("pool lock poisoned".into()))?
            .pop_front();
        let worker = match popped {
            Some(w) => w,
            None => spawn_worker(&self.cfg).map_err(|e| PoolError(e.to_string()))?,
        };
        let idle = Arc::clone(&self.idle);
        let cfg = self.cfg.clone();
        std::thread::spawn(move || {
            if let Ok(w) = spawn_worker(&cfg)
                && let Ok(mut q) = idle.lock()
            {
                if q.len() < cfg.size.max(1) {
                    q.push_back(w);
                } else {
                    drop(q);
                    let mut w = w;
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
            }
        });
        Ok(worker)
    }

    /// Sanitizes a mail in a worker. `Err` only when no worker could be started.
    pub fn sanitize_mail(&self, input: &[u8], policy: &Policy) -> Result<MailOutcome, PoolError> {
        self.sanitize_mail_unlocking(input, None, policy)
    }

    /// [`Pool::sanitize_mail`] with a PPAP password lent to the worker's ZIP sanitizer for
    /// the archives attached to the message.
    pub fn sanitize_mail_unlocking(
        &self,
        input: &[u8],
        password: Option<&crate::sanitize::Password>,
        policy: &Policy,
    ) -> Result<MailOutcome, PoolError> {
        Ok(match self.run(Mode::Mail, input, None, password, policy)? {
            Ok(raw) => accept_mail(input, policy, raw.head, raw.body),
            Err(e) => failed_mail(input, &e, policy),
        })
    }

    /// Sanitizes a file in a worker. `Err` only when no worker could be started.
    pub fn sanitize_file(
        &self,
        input: &[u8],
        name: Option<&str>,
        policy: &Policy,
    ) -> Result<FileOutcome, PoolError> {
        Ok(match self.run(Mode::File, input, name, None, policy)? {
            Ok(raw) => accept_file(input, name, policy, raw.head, raw.body),
            Err(e) => failed_file(input, name, &e, policy),
        })
    }

    /// [`Pool::sanitize_file`] for an encrypted ZIP with its password: the worker opens it
    /// and sanitizes its members; the parent re-checks the output as for any file.
    pub fn sanitize_file_unlocking(
        &self,
        input: &[u8],
        name: Option<&str>,
        password: &crate::sanitize::Password,
        policy: &Policy,
    ) -> Result<FileOutcome, PoolError> {
        Ok(
            match self.run(Mode::File, input, name, Some(password), policy)? {
                Ok(raw) => accept_file(input, name, policy, raw.head, raw.body),
                Err(e) => failed_file(input, name, &e, policy),
            },
        )
    }

    /// Runs one job: the outer `Result` is infrastructure, the inner one the job's fate.
    fn run(
        &self,
        mode: Mode,
        input: &[u8],
        name: Option<&str>,
        password: Option<&crate::sanitize::Password>,
        policy: &Policy,
    ) -> Result<Result<Raw, SanitizeError>, PoolError> {
        let frame = match self.run_frame(mode, input, name, password, policy, None)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        match frame.header::<ResultHeader>() {
            Ok(head) => Ok(Ok(Raw {
                head,
                body: frame.body,
            })),
            Err(e) => Ok(Err(SanitizeError::Worker {
                threat: threats::WORKER_CRASHED,
                detail: format!("unreadable result from worker: {e}"),
            })),
        }
    }

    /// Sanitizes an item in a worker and returns the pictures of its output (see
    /// [`sanitizer_core::preview`]). The worker's answer is raw pixels; every size is checked
    /// against `limits` and the body length here, so nothing in it is parsed. A failed or
    /// forged answer is an `Err`: a preview is a convenience, never a verdict.
    pub fn preview(
        &self,
        mode: Mode,
        input: &[u8],
        name: Option<&str>,
        policy: &Policy,
        limits: &PreviewLimits,
    ) -> Result<Vec<Thumbnail>, PoolError> {
        let frame = self
            .run_frame(mode, input, name, None, policy, Some(*limits))?
            .map_err(|e| PoolError(format!("no preview: {e}")))?;
        accept_preview(&frame, limits)
    }

    /// Runs one job and returns the worker's final frame (a result, or the pictures of a
    /// preview job).
    fn run_frame(
        &self,
        mode: Mode,
        input: &[u8],
        name: Option<&str>,
        password: Option<&crate::sanitize::Password>,
        policy: &Policy,
        preview: Option<PreviewLimits>,
    ) -> Result<Result<Frame, SanitizeError>, PoolError> {
        let mut w = self.take()?;
        // The worker confirms it is confined before it is given anything.
        let ready = await_ready(&mut w)?;
        if let Ok(status) = ready.header::<serde_json::Value>()
            && status.get("landlock") == Some(&serde_json::Value::Bool(false))
            && self.cfg.sandbox.confine
            && !self.warned_landlock.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "Landlock is not available on this kernel; workers run without it, as the \
                 configuration allows (pool.allow_without_landlock)."
            );
        }

        let deadline =
            Instant::now() + Duration::from_millis(policy.limits.deadline_ms) + self.cfg.grace;
        let header = JobHeader {
            mode,
            name: name.map(str::to_owned),
            policy: policy.clone(),
            converter: self.converter.is_some(),
            // A preview draws pixels only: no OCR for it.
            ocr: self.ocr.is_some() && policy.pdf.ocr && preview.is_none(),
            host: self.cfg.host.clone(),
            password: password.cloned(),
            preview,
        };
        let last = if preview.is_some() {
            tag::PREVIEW
        } else {
            tag::RESULT
        };
        let mut timed_out = false;
        let mut result = None;
        if wire::write_frame(&mut w.stdin, tag::JOB, &header, input).is_ok() {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match w.events.recv_timeout(left) {
                    Ok(Event::Frame(f)) if f.tag == last => {
                        result = Some(f);
                        break;
                    }
                    Ok(Event::Frame(f)) if f.tag == tag::CONVERT => {
                        if self.answer_convert(&mut w.stdin, &f, deadline).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Frame(f)) if f.tag == tag::OCR => {
                        if self.answer_ocr(&mut w.stdin, &f, policy, deadline).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Frame(_)) | Ok(Event::Closed) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        timed_out = true;
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        if result.is_none() || timed_out {
            let _ = w.child.kill();
        }
        let status = wait_briefly(&mut w.child);
        let stderr = w.stderr.join().unwrap_or_default();
        let Some(frame) = result else {
            return Ok(Err(classify(status, &stderr, timed_out)));
        };
        Ok(Ok(frame))
    }

    fn answer_convert(
        &self,
        stdin: &mut ChildStdin,
        frame: &Frame,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let reply = match (&self.converter, frame.header::<ConvertRequest>()) {
            (Some(conv), Ok(req)) => {
                let by = within(deadline, req.timeout_ms);
                conv.convert(&frame.body, &req.from_ext, &req.to, by)
            }
            (None, _) => Err("no converter available".to_owned()),
            (_, Err(e)) => Err(e.to_string()),
        };
        match reply {
            Ok(bytes) => wire::write_frame(
                stdin,
                tag::CONVERT_REPLY,
                &ConvertReply { error: None },
                &bytes,
            ),
            Err(e) => wire::write_frame(
                stdin,
                tag::CONVERT_REPLY,
                &ConvertReply { error: Some(e) },
                b"",
            ),
        }?;
        stdin.flush()
    }
}

impl Pool {
    /// Answers a worker's OCR request. The worker is not trusted: the request must come under a
    /// policy with `pdf.ocr` on, name that policy's languages, and carry exactly
    /// `width` x `height` bytes of at most [`ocr::MAX_PIXELS`](crate::ocr::MAX_PIXELS).
    fn answer_ocr(
        &self,
        stdin: &mut ChildStdin,
        frame: &Frame,
        policy: &Policy,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let words = match (&self.ocr, frame.header::<wire::OcrRequest>()) {
            (Some(ocr), Ok(req)) => {
                check_ocr_request(&req, frame.body.len(), policy).and_then(|()| {
                    let by = within(deadline, req.timeout_ms);
                    ocr.recognize(
                        &frame.body,
                        req.width,
                        req.height,
                        req.dpi,
                        &req.languages,
                        by,
                    )
                })
            }
            (None, _) => Err("no OCR engine available".to_owned()),
            (_, Err(e)) => Err(e.to_string()),
        };
        let reply = match words {
            Ok(words) => wire::OcrReply {
                error: None,
                words: words.into_iter().map(Into::into).collect(),
            },
            Err(e) => wire::OcrReply {
                error: Some(e),
                words: Vec::new(),
            },
        };
        wire::write_frame(stdin, tag::OCR_REPLY, &reply, b"")?;
        stdin.flush()
    }
}

/// The earlier of `deadline` and `timeout_ms` from now. The worker names the timeout, so it
/// may be absurd: past the end of time it is simply `deadline` (never an overflow panic).
fn within(deadline: Instant, timeout_ms: u64) -> Instant {
    Instant::now()
        .checked_add(Duration::from_millis(timeout_ms))
        .map_or(deadline, |t| deadline.min(t))
}

/// Whether the parent may run OCR for a worker's `req` with a body of `body_len` bytes under
/// `policy`.
fn check_ocr_request(
    req: &wire::OcrRequest,
    body_len: usize,
    policy: &Policy,
) -> Result<(), String> {
    if !policy.pdf.ocr {
        return Err("OCR is off in this policy".into());
    }
    if req.languages != policy.pdf.ocr_languages {
        return Err("OCR languages differ from the policy's".into());
    }
    crate::ocr::check_languages(&req.languages)?;
    crate::ocr::check_image(body_len, req.width, req.height)
}

/// The [`Transform`] that runs every job in a sandboxed worker process.
#[derive(Debug)]
pub struct Isolated {
    pool: Pool,
    policy: Policy,
}

impl Isolated {
    /// A pool for `policy`: the workers may read the font directories of `cfg.host`, besides
    /// the system font directories.
    pub fn new(
        policy: Policy,
        mut cfg: PoolConfig,
        converter: Option<Arc<dyn Converter + Send + Sync>>,
    ) -> Result<Isolated, PoolError> {
        cfg.max_frame_bytes = frame_cap(cfg.max_frame_bytes, &policy);
        for dir in cfg.host.font_dirs() {
            if !cfg.sandbox.read_paths.iter().any(|p| dir.starts_with(p)) {
                cfg.sandbox.read_paths.push(dir);
            }
        }
        Ok(Isolated {
            pool: Pool::new(cfg, converter)?,
            policy,
        })
    }

    /// Lends the workers a text recogniser (see [`Pool::with_ocr`]).
    pub fn with_ocr(mut self, ocr: Arc<dyn Ocr + Send + Sync>) -> Isolated {
        self.pool = self.pool.with_ocr(ocr);
        self
    }
}

impl Transform for Isolated {
    fn run(&self, job: &Job) -> Result<JobOutcome, TransformError> {
        let outcome = match job.mode {
            Mode::File => match &job.password {
                None => self
                    .pool
                    .sanitize_file(&job.input, job.name.as_deref(), &self.policy),
                Some(pw) => self.pool.sanitize_file_unlocking(
                    &job.input,
                    job.name.as_deref(),
                    pw,
                    &self.policy,
                ),
            }
            .map(JobOutcome::from_file),
            Mode::Mail => self
                .pool
                .sanitize_mail_unlocking(&job.input, job.password.as_ref(), &self.policy)
                .map(|o| JobOutcome::from_mail(o, job.name.as_deref())),
        };
        outcome.map_err(|e| TransformError {
            message: e.to_string(),
            transient: true,
        })
    }

    fn preview(&self, job: &Job, limits: &PreviewLimits) -> Result<Vec<Thumbnail>, TransformError> {
        self.pool
            .preview(
                job.mode,
                &job.input,
                job.name.as_deref(),
                &self.policy,
                limits,
            )
            .map_err(|e| TransformError {
                message: e.to_string(),
                transient: false,
            })
    }
}

/// Checks a worker's preview answer against `limits`: at most `max_images` pictures, each
/// 1..=`max_side` pixels a side, their pixels exactly filling the body. Labels are cut to 120
/// characters without control or bidi characters.
fn accept_preview(frame: &Frame, limits: &PreviewLimits) -> Result<Vec<Thumbnail>, PoolError> {
    let forged = |why: &str| PoolError(format!("preview refused: {why}"));
    let head: PreviewHeader = frame
        .header()
        .map_err(|e| forged(&format!("unreadable header: {e}")))?;
    if head.pictures.len() > limits.max_images {
        return Err(forged("too many pictures"));
    }
    let mut rest: &[u8] = &frame.body;
    let mut out = Vec::with_capacity(head.pictures.len());
    for p in head.pictures {
        let side_ok = |v: u32| (1..=limits.max_side).contains(&v);
        if !side_ok(p.width) || !side_ok(p.height) {
            return Err(forged("picture size out of bounds"));
        }
        let len = (p.width as usize)
            .checked_mul(p.height as usize)
            .and_then(|n| n.checked_mul(3))
            .ok_or_else(|| forged("picture size overflows"))?;
        let (pixels, tail) = rest
            .split_at_checked(len)
            .ok_or_else(|| forged("body shorter than the pictures"))?;
        rest = tail;
        out.push(Thumbnail {
            label: p
                .label
                .chars()
                .filter(|c| !c.is_control() && !sanitizer_core::unicode::is_invisible_control(*c))
                .take(120)
                .collect(),
            width: p.width,
            height: p.height,
            rgb: pixels.to_vec(),
        });
    }
    if !rest.is_empty() {
        return Err(forged("body longer than the pictures"));
    }
    Ok(out)
}

/// The largest frame body the parent accepts from a worker under `policy`: its output cap, or
/// its input cap (documents the worker sends to the converter), whichever is larger, and never
/// more than `configured`.
fn frame_cap(configured: u64, policy: &Policy) -> u64 {
    let limits = &policy.limits;
    configured.min(limits.max_output_bytes.max(limits.max_input_bytes))
}

/// Warning added when a worker's `clean` could not be confirmed by the parent.
pub const CLEAN_UNCONFIRMED: &str = "worker.clean_unconfirmed";

fn forged(detail: String) -> SanitizeError {
    SanitizeError::Worker {
        threat: threats::WORKER_CRASHED,
        detail,
    }
}

/// The parent's verdict on a delivered output: the worker's claim may only be made worse.
/// `clean` stands only when the worker's own items agree (no threat, nothing that changes
/// meaning) and `confirm` (the parent's re-check of the *input*) finds nothing that would have
/// had to change; otherwise it becomes `sanitized` with [`CLEAN_UNCONFIRMED`] in the warnings.
fn settle_verdict(report: &mut Report, confirm: impl FnOnce() -> bool) {
    let items_clean = Report::verdict_from_items(&report.items) == Verdict::Clean;
    report.verdict = match report.verdict {
        Verdict::Clean if items_clean && confirm() => Verdict::Clean,
        Verdict::Clean => {
            report.warnings.push(CLEAN_UNCONFIRMED.to_owned());
            Verdict::Sanitized
        }
        // There is an output, so a claimed `blocked` cannot stand; the caller decides.
        Verdict::Sanitized | Verdict::Blocked => Verdict::Sanitized,
    };
}

/// Turns a worker's untrusted result for a file into the outcome the parent vouches for.
///
/// Nothing of the worker's header reaches the file system or the report's facts unchecked:
/// - the input's name, size, SHA-256 and kind are computed here from the bytes sent;
/// - the output is re-checked by its own structure ([`recheck::verify_file_kind`]), and its
///   kind is the one the re-check found, not the claim;
/// - the output name is derived from the job's own name and that kind
///   ([`naming::output_name`]); the worker's name can at most pick one of the extensions that
///   kind allows, so `../../x`, absolute paths or `invoice.html` for a PNG never get through;
/// - content type, size and SHA-256 of the output are computed here;
/// - a claimed `blocked` (or no output) blocks; a claimed `clean` must be confirmed (README,
///   "What a compromised worker can and cannot do"); threat lists are kept as its claims;
/// - a malformed report id (it becomes a file name in the quarantine) fails the item.
pub fn accept_file(
    input: &[u8],
    name: Option<&str>,
    policy: &Policy,
    head: ResultHeader,
    body: Vec<u8>,
) -> FileOutcome {
    let mut report = head.report;
    if !is_valid_report_id(&report.id) {
        return failed_file(
            input,
            name,
            &forged("worker sent a malformed report id".into()),
            policy,
        );
    }
    let in_kind = sniff::sniff(input);
    report.input = FileInfo::describe(name, input, in_kind);
    report.quarantine_id = None;
    if !head.has_output || report.verdict == Verdict::Blocked {
        report.verdict = Verdict::Blocked;
        report.output = None;
        return FileOutcome {
            output: None,
            report,
        };
    }
    let claimed = head.kind.unwrap_or(Kind::Unknown);
    let (bytes, kind) = match recheck::verify_file_kind(body, claimed, policy) {
        Ok(checked) => checked,
        Err(e) => return failed_file(input, name, &e, policy),
    };
    let out_name = naming::output_name(name, kind, bytes.as_slice(), head.name.as_deref());
    // A delivered `.csv`/`.tsv` opens in a spreadsheet: no formula cells, whatever was claimed.
    let csv_delim = match extension(&out_name).as_deref() {
        Some("csv") if policy.csv.neutralise_formulas => Some(b','),
        Some("tsv") if policy.csv.neutralise_formulas => Some(b'\t'),
        _ => None,
    };
    if let Some(delim) = csv_delim
        && let Err(e) = recheck::check_csv(bytes.as_slice(), delim)
    {
        return failed_file(input, name, &e, policy);
    }
    report.output = Some(FileInfo::describe(Some(&out_name), bytes.as_slice(), kind));
    settle_verdict(&mut report, || {
        recheck::confirms_clean_file(input, bytes.as_slice(), kind, policy)
            && csv_delim.is_none_or(|d| recheck::check_csv(input, d).is_ok())
    });
    let mime = naming::content_type(kind, &out_name, bytes.as_slice()).to_owned();
    FileOutcome {
        output: Some(SafeFile {
            name: out_name,
            bytes,
            mime,
            kind,
        }),
        report,
    }
}

/// Turns a worker's untrusted result for a mail into the outcome the parent vouches for: the
/// message is re-checked ([`recheck::verify_mail`]), the input and output facts are computed
/// here, and a claimed `clean` must be confirmed by re-checking the original (README, "What a
/// compromised worker can and cannot do"). A mail is never blocked: whatever fails becomes a
/// notice-only message.
pub fn accept_mail(
    input: &[u8],
    policy: &Policy,
    head: ResultHeader,
    body: Vec<u8>,
) -> MailOutcome {
    let mut report = head.report;
    if !is_valid_report_id(&report.id) {
        return failed_mail(
            input,
            &forged("worker sent a malformed report id".into()),
            policy,
        );
    }
    match recheck::verify_mail(body, policy) {
        Ok(message)
            if recheck::mail_report_id(message.as_slice()).as_deref() != Some(&report.id) =>
        {
            failed_mail(
                input,
                &forged("the message names another report id than the report".into()),
                policy,
            )
        }
        Ok(message) => {
            report.input = FileInfo::describe(None, input, Kind::Mail);
            report.output = Some(FileInfo::describe(None, message.as_slice(), Kind::Mail));
            report.quarantine_id = None;
            settle_verdict(&mut report, || recheck::confirms_clean_mail(input, policy));
            MailOutcome { message, report }
        }
        Err(e) => failed_mail(input, &e, policy),
    }
}

/// Waits for a worker that should be exiting; kills it after a second.
fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                return child.wait().ok();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut q) = self.idle.lock() {
            for mut w in q.drain(..) {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The parent fed forged worker results in-process: each forged field must be caught or
    //! replaced by what the parent computed itself.
    use super::*;
    use sanitizer_core::report::sha256_hex;

    const HTML: &[u8] = b"<html><script>alert(1)</script><p>Hello</p></html>";

    /// What an honest worker would send for `input`, after `forge` has tampered with it, read
    /// back through the wire format the parent really reads.
    fn through_wire(
        input: &[u8],
        name: &str,
        forge: impl FnOnce(&mut ResultHeader, &mut Vec<u8>),
    ) -> FileOutcome {
        let policy = Policy::default();
        let out = sanitizer_core::sanitize_file(input, Some(name), &policy);
        let (mut head, mut body) = match out.output {
            Some(f) => (
                ResultHeader {
                    report: out.report,
                    name: Some(f.name),
                    mime: Some(f.mime),
                    kind: Some(f.kind),
                    has_output: true,
                },
                f.bytes.into_vec(),
            ),
            None => (
                ResultHeader {
                    report: out.report,
                    name: None,
                    mime: None,
                    kind: None,
                    has_output: false,
                },
                Vec::new(),
            ),
        };
        forge(&mut head, &mut body);
        let mut pipe = Vec::new();
        wire::write_frame(&mut pipe, tag::RESULT, &head, &body).unwrap();
        let frame = wire::read_frame(&mut &pipe[..], 1 << 24).unwrap().unwrap();
        accept_file(
            input,
            Some(name),
            &policy,
            frame.header().unwrap(),
            frame.body,
        )
    }

    #[test]
    fn frames_are_capped_by_the_policy() {
        let mut policy = Policy::default();
        policy.limits.max_output_bytes = 1000;
        policy.limits.max_input_bytes = 500;
        assert_eq!(frame_cap(1 << 30, &policy), 1000);
        assert_eq!(frame_cap(10, &policy), 10);
        // A worker announcing a bigger body is refused before anything is allocated.
        let mut pipe = Vec::new();
        wire::write_frame(&mut pipe, tag::RESULT, &"h", &[0u8; 1001]).unwrap();
        assert!(wire::read_frame(&mut &pipe[..], frame_cap(1 << 30, &policy)).is_err());
    }

    #[test]
    fn a_worker_cannot_stretch_or_overflow_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(within(deadline, u64::MAX), deadline);
        assert!(within(deadline, 10) < deadline);
    }

    #[test]
    fn ocr_requests_from_a_worker_are_checked() {
        let mut policy = Policy::default();
        let req = |w: u32, h: u32, langs: &str| wire::OcrRequest {
            width: w,
            height: h,
            dpi: 150,
            languages: langs.into(),
            timeout_ms: 1000,
        };
        // Off in the policy: refused whatever the worker says.
        assert!(check_ocr_request(&req(3, 2, "jpn+eng"), 6, &policy).is_err());
        policy.pdf.ocr = true;
        assert!(check_ocr_request(&req(3, 2, "jpn+eng"), 6, &policy).is_ok());
        // Languages other than the policy's, a body that is not width x height, too many
        // pixels, an empty image.
        assert!(check_ocr_request(&req(3, 2, "eng"), 6, &policy).is_err());
        assert!(check_ocr_request(&req(3, 2, "jpn+eng"), 7, &policy).is_err());
        assert!(check_ocr_request(&req(u32::MAX, u32::MAX, "jpn+eng"), 6, &policy).is_err());
        assert!(check_ocr_request(&req(0, 2, "jpn+eng"), 0, &policy).is_err());
        // A policy language list that is not of the expected form never reaches tesseract.
        policy.pdf.ocr_languages = "eng --tessdata-dir /".into();
        let r = req(3, 2, "eng --tessdata-dir /");
        assert!(check_ocr_request(&r, 6, &policy).is_err());
    }

    #[test]
    fn honest_results_pass_unchanged() {
        let out = through_wire("見積書\n".as_bytes(), "notes.txt", |_, _| {});
        assert_eq!(out.report.verdict, Verdict::Clean);
        let f = out.output.unwrap();
        assert_eq!(f.name, "notes.txt");
        assert_eq!(f.mime, "text/plain; charset=utf-8");
        let out = through_wire(HTML, "page.html", |_, _| {});
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        assert_eq!(out.output.unwrap().name, "page.txt");
        assert!(out.report.threats().contains(&"html.script"));
    }

    #[test]
    fn forged_output_names_never_leave_the_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let abs = dir.path().join("cron").display().to_string();
        for forged in [
            "../../x",
            "../x.txt",
            abs.as_str(),
            "/etc/cron.d/mugai.txt",
            "sub/notes.txt",
            "..",
            "notes\nReason: forged.txt",
            "notes.exe",
        ] {
            let out = through_wire(b"plain text\n", "notes.txt", |h, _| {
                h.name = Some(forged.to_owned());
            });
            let f = out.output.unwrap();
            assert_eq!(f.name, "notes.txt", "{forged:?}");
            assert_eq!(
                out.report.output.as_ref().unwrap().name.as_deref(),
                Some("notes.txt")
            );
            let written =
                crate::sinks::outbox::write_new(&out_dir, &f.name, f.bytes.as_slice()).unwrap();
            assert_eq!(written.parent(), Some(out_dir.as_path()), "{forged:?}");
        }
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["out"], "nothing written beside the output directory");
    }

    #[test]
    fn forged_kind_is_rechecked_and_names_follow_the_checked_kind() {
        // "PNG" magic followed by HTML, claimed as an image and named invoice.html.
        let out = through_wire(HTML, "invoice.html", |h, body| {
            *body = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>".to_vec();
            h.kind = Some(Kind::Image);
            h.mime = Some("text/html".into());
            h.name = Some("invoice.html".into());
        });
        assert!(out.output.is_none(), "forged PNG delivered");
        assert_eq!(out.report.verdict, Verdict::Blocked);

        // A real PNG claimed as text and named .html: delivered as what it is, an image.
        // A 1x1 RGBA PNG.
        let png = hex::decode(
            "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489\
             0000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082",
        )
        .unwrap();
        let out = through_wire(HTML, "invoice.html", |h, body| {
            body.clone_from(&png);
            h.kind = Some(Kind::Text);
        });
        assert!(
            out.output.is_none(),
            "a claim that disagrees with the bytes blocks"
        );
        // A real PNG, honestly claimed, but named .html with an HTML content type: delivered
        // as what the parent found, an image.
        let out = through_wire(HTML, "invoice.html", |h, body| {
            body.clone_from(&png);
            h.kind = Some(Kind::Image);
            h.mime = Some("text/html".into());
            h.name = Some("invoice.html".into());
        });
        let f = out.output.unwrap();
        assert_eq!(
            (f.name.as_str(), f.kind, f.mime.as_str()),
            ("invoice.png", Kind::Image, "image/png")
        );
    }

    #[test]
    fn forged_clean_verdict_does_not_stand() {
        // The worker drops every threat and says clean: the parent's own re-check of the input
        // (HTML with a script) disagrees.
        let out = through_wire(HTML, "page.html", |h, _| {
            h.report.verdict = Verdict::Clean;
            h.report.items.clear();
        });
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        assert!(out.report.warnings.iter().any(|w| w == CLEAN_UNCONFIRMED));
        // A clean claim whose items say otherwise does not stand either.
        let out = through_wire(HTML, "page.html", |h, _| {
            h.report.verdict = Verdict::Clean;
        });
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        // A worker cannot turn a block into an output.
        let out = through_wire(b"MZ\x90\0", "tool.exe", |h, body| {
            *body = b"harmless\n".to_vec();
            h.has_output = false;
            h.kind = Some(Kind::Text);
        });
        assert!(out.output.is_none());
        let out = through_wire(b"hello\n", "a.txt", |h, _| {
            h.report.verdict = Verdict::Blocked;
        });
        assert!(out.output.is_none());
        assert_eq!(out.report.verdict, Verdict::Blocked);
    }

    #[test]
    fn sizes_and_hashes_are_the_parents() {
        let input = b"plain text\n";
        let out = through_wire(input, "a.txt", |h, _| {
            h.report.input.sha256 = "0".repeat(64);
            h.report.input.size = 1;
            h.report.input.name = Some("../../other".into());
            if let Some(o) = h.report.output.as_mut() {
                o.sha256 = "0".repeat(64);
                o.size = 7;
            }
            h.report.quarantine_id = Some("../../q".into());
        });
        assert_eq!(out.report.input.sha256, sha256_hex(input));
        assert_eq!(out.report.input.size, input.len() as u64);
        assert_eq!(out.report.input.name.as_deref(), Some("a.txt"));
        let o = out.report.output.as_ref().unwrap();
        let f = out.output.as_ref().unwrap();
        assert_eq!(o.sha256, sha256_hex(f.bytes.as_slice()));
        assert_eq!(o.size, f.bytes.as_slice().len() as u64);
        assert_eq!(out.report.quarantine_id, None);
    }

    #[test]
    fn forged_report_id_and_csv_formulas_fail_the_item() {
        let out = through_wire(b"hello\n", "a.txt", |h, _| {
            h.report.id = "../../../etc/x".into();
        });
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::WORKER_CRASHED));
        let out = through_wire(b"a,=1+1\r\n", "sheet.csv", |_, body| {
            *body = b"a,=cmd|' /C calc'!A0\r\n".to_vec();
        });
        assert!(out.output.is_none(), "formula cell delivered in a .csv");
    }

    #[test]
    fn forged_clean_mail_does_not_stand() {
        let policy = Policy::default();
        let input = b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script><p>hi</p>\r\n";
        let honest = sanitizer_core::sanitize_mail(input, &policy);
        let mut report = honest.report;
        report.verdict = Verdict::Clean;
        report.items.clear();
        report.input.sha256 = "0".repeat(64);
        let head = ResultHeader {
            report,
            name: None,
            mime: None,
            kind: Some(Kind::Mail),
            has_output: true,
        };
        let message = honest.message.into_vec();
        let out = accept_mail(input, &policy, head.clone(), message.clone());
        assert_eq!(out.report.verdict, Verdict::Sanitized);
        assert_eq!(out.report.input.sha256, sha256_hex(input));
        assert!(!out.report.threats().contains(&threats::WORKER_CRASHED));
        // A report whose id is not the one in the delivered message is not believed.
        let mut other = head;
        other.report.id = "0123456789abcdef".into();
        let out = accept_mail(input, &policy, other, message);
        assert!(out.report.threats().contains(&threats::WORKER_CRASHED));
        assert_eq!(
            recheck::mail_report_id(out.message.as_slice()).as_deref(),
            Some(out.report.id.as_str())
        );
    }

    fn preview_frame(pictures: &[(u32, u32)], body: Vec<u8>) -> Frame {
        let head = PreviewHeader {
            pictures: pictures
                .iter()
                .map(|(w, h)| wire::PictureHeader {
                    label: "p.1\u{202e}\n".into(),
                    width: *w,
                    height: *h,
                })
                .collect(),
        };
        Frame {
            tag: tag::PREVIEW,
            header: serde_json::to_vec(&head).unwrap(),
            body,
        }
    }

    /// A preview answer is raw pixels whose every size the parent checks: a worker cannot make
    /// it read past the body, keep extra bytes, or hand the browser a giant picture.
    #[test]
    fn forged_previews_are_refused() {
        let limits = PreviewLimits {
            max_images: 2,
            max_side: 10,
        };
        let ok = accept_preview(&preview_frame(&[(2, 3), (1, 1)], vec![7; 21]), &limits).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].rgb.len(), 18);
        assert_eq!(ok[1].rgb, vec![7; 3]);
        assert_eq!(
            ok[0].label, "p.1",
            "control and bidi characters are dropped"
        );
        for (pics, len) in [
            (vec![(2, 3)], 17),                // short body
            (vec![(2, 3)], 19),                // trailing bytes
            (vec![(11, 1)], 33),               // wider than allowed
            (vec![(0, 1)], 0),                 // empty picture
            (vec![(1, 1), (1, 1), (1, 1)], 9), // too many
            (vec![(u32::MAX, u32::MAX)], 3),   // overflow
        ] {
            assert!(
                accept_preview(&preview_frame(&pics, vec![0; len]), &limits).is_err(),
                "{pics:?} with {len} bytes"
            );
        }
        let garbage = Frame {
            tag: tag::PREVIEW,
            header: b"{".to_vec(),
            body: Vec::new(),
        };
        assert!(accept_preview(&garbage, &limits).is_err());
    }
}
