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
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sanitizer_core::{
    Converter, FileOutcome, MailOutcome, Policy, SafeFile, SanitizeError, failed_file, failed_mail,
    recheck, threats,
};

use crate::isolate::sandbox::SandboxConfig;
use crate::isolate::wire::{
    self, ConvertReply, ConvertRequest, Frame, JobHeader, Mode, ResultHeader, tag,
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
    /// Largest frame a worker may send back.
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
    let (tx, events) = channel();
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

/// The raw, untrusted result of one job.
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
        })
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
        let raw = match self.run(Mode::Mail, input, None, policy)? {
            Ok(raw) => raw,
            Err(e) => return Ok(failed_mail(input, &e, policy)),
        };
        match recheck::verify_mail(raw.body, policy) {
            Ok(message) => {
                let mut report = raw.head.report;
                report.output = Some(sanitizer_core::FileInfo::describe(
                    None,
                    message.as_slice(),
                    sanitizer_core::Kind::Mail,
                ));
                Ok(MailOutcome { message, report })
            }
            Err(e) => Ok(failed_mail(input, &e, policy)),
        }
    }

    /// Sanitizes a file in a worker. `Err` only when no worker could be started.
    pub fn sanitize_file(
        &self,
        input: &[u8],
        name: Option<&str>,
        policy: &Policy,
    ) -> Result<FileOutcome, PoolError> {
        let raw = match self.run(Mode::File, input, name, policy)? {
            Ok(raw) => raw,
            Err(e) => return Ok(failed_file(input, name, &e, policy)),
        };
        let mut report = raw.head.report;
        if !raw.head.has_output {
            report.verdict = sanitizer_core::Verdict::Blocked;
            report.output = None;
            return Ok(FileOutcome {
                output: None,
                report,
            });
        }
        let kind = raw.head.kind.unwrap_or(sanitizer_core::Kind::Unknown);
        match recheck::verify_file(raw.body, kind, policy) {
            Ok(bytes) => {
                let name = raw.head.name.unwrap_or_else(|| "output".into());
                report.output = Some(sanitizer_core::FileInfo::describe(
                    Some(&name),
                    bytes.as_slice(),
                    kind,
                ));
                Ok(FileOutcome {
                    output: Some(SafeFile {
                        name,
                        bytes,
                        mime: raw.head.mime.unwrap_or_default(),
                        kind,
                    }),
                    report,
                })
            }
            Err(e) => Ok(failed_file(input, name, &e, policy)),
        }
    }

    /// Runs one job: the outer `Result` is infrastructure, the inner one the job's fate.
    fn run(
        &self,
        mode: Mode,
        input: &[u8],
        name: Option<&str>,
        policy: &Policy,
    ) -> Result<Result<Raw, SanitizeError>, PoolError> {
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
            host: self.cfg.host.clone(),
        };
        let mut timed_out = false;
        let mut result = None;
        if wire::write_frame(&mut w.stdin, tag::JOB, &header, input).is_ok() {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match w.events.recv_timeout(left) {
                    Ok(Event::Frame(f)) if f.tag == tag::RESULT => {
                        result = Some(f);
                        break;
                    }
                    Ok(Event::Frame(f)) if f.tag == tag::CONVERT => {
                        if self.answer_convert(&mut w.stdin, &f, deadline).is_err() {
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

    fn answer_convert(
        &self,
        stdin: &mut ChildStdin,
        frame: &Frame,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let reply = match (&self.converter, frame.header::<ConvertRequest>()) {
            (Some(conv), Ok(req)) => {
                let by = deadline.min(Instant::now() + Duration::from_millis(req.timeout_ms));
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
}

impl Transform for Isolated {
    fn run(&self, job: &Job) -> Result<JobOutcome, TransformError> {
        let outcome = match job.mode {
            Mode::File => self
                .pool
                .sanitize_file(&job.input, job.name.as_deref(), &self.policy)
                .map(JobOutcome::from_file),
            Mode::Mail => self
                .pool
                .sanitize_mail(&job.input, &self.policy)
                .map(|o| JobOutcome::from_mail(o, job.name.as_deref())),
        };
        outcome.map_err(|e| TransformError {
            message: e.to_string(),
            transient: true,
        })
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
