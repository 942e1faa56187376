//! The worker side: `mugai __worker ...`, started by the [`pool`](crate::isolate::pool).
//!
//! Life of a worker, in order:
//! 0. leave the caller's session (no controlling terminal) and shed every descriptor above 2
//!    the caller left open (by re-executing itself with them marked close-on-exec; its pipes are
//!    0, 1 and 2); a worker that still holds one refuses to start;
//! 1. confine itself ([`sandbox::apply`]) before touching any input; on failure exit 70 without
//!    reading anything (the pool then reports the worker pool as unavailable: a transient
//!    condition, never a verdict on an input);
//! 2. say it is ready (`W` frame with what the sandbox enforced);
//! 3. read exactly one job, sanitize it with `sanitizer-core`, asking the parent over the pipe
//!    when a document needs LibreOffice (the worker itself cannot start processes);
//! 4. write the result and exit. A worker never sees a second input, so an input that
//!    compromised it cannot tamper with later outputs.
//!
//! Exit codes: 0 done; 70 sandbox setup failed; 71 the sandbox refused an operation (only the
//! test hooks report this); 72 protocol error.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use sanitizer_core::{Converter, Services};

use crate::isolate::sandbox::{self, SandboxConfig};
use crate::isolate::wire::{
    self, ConvertReply, ConvertRequest, JobHeader, PictureHeader, PreviewHeader, ResultHeader, tag,
};

/// The hidden subcommand that starts a worker.
pub const WORKER_ARG: &str = "__worker";

/// Exit code: sandbox setup failed.
pub const EXIT_SANDBOX_SETUP: i32 = 70;
/// Exit code: the sandbox refused an operation.
pub const EXIT_SANDBOX_DENIED: i32 = 71;
/// Exit code: protocol error.
pub const EXIT_PROTOCOL: i32 = 72;

/// The arguments that carry a [`SandboxConfig`] to a worker.
pub fn sandbox_args(cfg: &SandboxConfig) -> Vec<String> {
    let mut args = vec![
        WORKER_ARG.to_owned(),
        "--memory".into(),
        cfg.memory_bytes.to_string(),
        "--cpu".into(),
        cfg.cpu_seconds.to_string(),
    ];
    for p in &cfg.read_paths {
        args.push("--read".into());
        args.push(p.display().to_string());
    }
    if !cfg.confine {
        args.push("--no-confine".into());
    }
    if cfg.allow_without_landlock {
        args.push("--allow-without-landlock".into());
    }
    #[cfg(feature = "test-hooks")]
    if cfg.simulate_no_landlock {
        args.push("--simulate-no-landlock".into());
    }
    args
}

fn parse_args(args: &[String]) -> Option<SandboxConfig> {
    let mut cfg = SandboxConfig {
        read_paths: Vec::new(),
        ..SandboxConfig::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--memory" => cfg.memory_bytes = it.next()?.parse().ok()?,
            "--cpu" => cfg.cpu_seconds = it.next()?.parse().ok()?,
            "--read" => cfg.read_paths.push(PathBuf::from(it.next()?)),
            "--no-confine" => cfg.confine = false,
            "--allow-without-landlock" => cfg.allow_without_landlock = true,
            #[cfg(feature = "test-hooks")]
            "--simulate-no-landlock" => cfg.simulate_no_landlock = true,
            _ => return None,
        }
    }
    Some(cfg)
}

/// Asks the parent to convert a document, over the worker's own stdin/stdout.
struct PipeConverter {
    io: Mutex<(io::Stdin, io::Stdout)>,
}

impl Converter for PipeConverter {
    fn convert(
        &self,
        input: &[u8],
        from_ext: &str,
        to: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        let mut guard = self
            .io
            .lock()
            .map_err(|_| "converter lock poisoned".to_owned())?;
        let (stdin, stdout) = &mut *guard;
        let req = ConvertRequest {
            from_ext: from_ext.to_owned(),
            to: to.to_owned(),
            timeout_ms: u64::try_from(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        wire::write_frame(&mut stdout.lock(), tag::CONVERT, &req, input)
            .map_err(|e| e.to_string())?;
        let frame = wire::read_frame(&mut stdin.lock(), u64::MAX)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "parent closed the pipe".to_owned())?;
        if frame.tag != tag::CONVERT_REPLY {
            return Err("unexpected frame from parent".into());
        }
        let reply: ConvertReply = frame.header().map_err(|e| e.to_string())?;
        match reply.error {
            None => Ok(frame.body),
            Some(e) => Err(e),
        }
    }
}

/// Asks the parent to recognise the text of a page, over the same pipe as [`PipeConverter`]
/// (sharing its lock, so a request and its answer are never interleaved with another).
struct PipeOcr<'a> {
    io: &'a Mutex<(io::Stdin, io::Stdout)>,
}

impl sanitizer_core::pipeline::Ocr for PipeOcr<'_> {
    fn recognize(
        &self,
        grey: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        languages: &str,
        deadline: Instant,
    ) -> Result<Vec<sanitizer_core::pipeline::OcrWord>, String> {
        let mut guard = self.io.lock().map_err(|_| "OCR lock poisoned".to_owned())?;
        let (stdin, stdout) = &mut *guard;
        let req = wire::OcrRequest {
            width,
            height,
            dpi,
            languages: languages.to_owned(),
            timeout_ms: u64::try_from(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        wire::write_frame(&mut stdout.lock(), tag::OCR, &req, grey).map_err(|e| e.to_string())?;
        let frame = wire::read_frame(&mut stdin.lock(), 0)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "parent closed the pipe".to_owned())?;
        if frame.tag != tag::OCR_REPLY {
            return Err("unexpected frame from parent".into());
        }
        let reply: wire::OcrReply = frame.header().map_err(|e| e.to_string())?;
        match reply.error {
            None => Ok(reply.words.into_iter().map(Into::into).collect()),
            Some(e) => Err(e),
        }
    }
}

/// Set in the environment of a worker that re-executed itself to drop inherited descriptors.
const REEXEC_MARK: &str = "MUGAI_WORKER_FDS_SHED";

/// Makes sure no descriptor above 2 is open: if the caller left some, marks them close-on-exec
/// and replaces this process with a fresh copy of itself (so they close); if some are still
/// open after that, refuses to start. `Err` carries the exit code.
fn shed_inherited_fds(args: &[String]) -> Result<(), i32> {
    use std::os::unix::process::CommandExt;
    let open = sandbox::inherited_fds();
    if open.is_empty() {
        return Ok(());
    }
    if std::env::var_os(REEXEC_MARK).is_some() {
        eprintln!("mugai worker: descriptors {open:?} are still open; refusing to start");
        return Err(EXIT_SANDBOX_SETUP);
    }
    sandbox::mark_fds_cloexec();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("mugai worker: cannot find my executable to drop descriptors: {e}");
            return Err(EXIT_SANDBOX_SETUP);
        }
    };
    let e = std::process::Command::new(exe)
        .arg(WORKER_ARG)
        .args(args)
        .env(REEXEC_MARK, "1")
        .exec();
    eprintln!("mugai worker: cannot re-execute to drop descriptors: {e}");
    Err(EXIT_SANDBOX_SETUP)
}

/// Runs a worker. `args` are the arguments after [`WORKER_ARG`]. Returns the exit code.
pub fn run(args: &[String]) -> i32 {
    if let Err(e) = sandbox::new_session() {
        eprintln!("mugai worker: {e}");
        return EXIT_SANDBOX_SETUP;
    }
    if let Err(code) = shed_inherited_fds(args) {
        return code;
    }
    let Some(cfg) = parse_args(args) else {
        eprintln!("mugai worker: bad arguments");
        return EXIT_PROTOCOL;
    };
    let status = match sandbox::apply(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mugai worker: {e}");
            return EXIT_SANDBOX_SETUP;
        }
    };
    let stdout = io::stdout();
    let ready = serde_json::json!({
        "landlock": status.landlock,
        "seccomp": status.seccomp,
        "dropped_root": status.dropped_root,
    });
    if wire::write_frame(&mut stdout.lock(), tag::READY, &ready, b"").is_err() {
        return EXIT_PROTOCOL;
    }
    let stdin = io::stdin();
    let job = match wire::read_frame(&mut stdin.lock(), u64::MAX) {
        Ok(Some(f)) if f.tag == tag::JOB => f,
        _ => return EXIT_PROTOCOL,
    };
    let Ok(header) = job.header::<JobHeader>() else {
        return EXIT_PROTOCOL;
    };

    #[cfg(feature = "test-hooks")]
    if let Some(code) = hooks::run(&job.body, &header) {
        return code;
    }

    let converter = PipeConverter {
        io: Mutex::new((stdin, io::stdout())),
    };
    let ocr = PipeOcr { io: &converter.io };
    let fonts: std::sync::Arc<dyn sanitizer_core::FontSource> =
        std::sync::Arc::new(crate::fonts::FileFonts::new(&header.host));
    let services = Services {
        converter: header.converter.then_some(&converter as &dyn Converter),
        fonts: Some(&fonts),
        archive_password: None,
        ocr: header
            .ocr
            .then_some(&ocr as &dyn sanitizer_core::pipeline::Ocr),
    };
    // The same dispatch as the in-process path: one function decides file or mail.
    let job = crate::sanitize::Job {
        input: job.body,
        name: header.name.clone(),
        mode: header.mode,
        password: header.password.clone(),
    };
    if let Some(limits) = header.preview {
        let pictures = crate::sanitize::preview(&job, &header.policy, services, &limits);
        let head = PreviewHeader {
            pictures: pictures
                .iter()
                .map(|p| PictureHeader {
                    label: p.label.clone(),
                    width: p.width,
                    height: p.height,
                })
                .collect(),
        };
        let body: Vec<u8> = pictures.into_iter().flat_map(|p| p.rgb).collect();
        let mut out = io::stdout().lock();
        if wire::write_frame(&mut out, tag::PREVIEW, &head, &body).is_err() {
            return EXIT_PROTOCOL;
        }
        let _ = out.flush();
        return 0;
    }
    let outcome = crate::sanitize::sanitize(&job, &header.policy, services);
    let result = match outcome.output {
        Some(o) => (
            ResultHeader {
                report: outcome.report,
                name: Some(o.name.clone()),
                mime: Some(o.mime.clone()),
                kind: Some(o.kind),
                has_output: true,
            },
            o.into_bytes(),
        ),
        None => (
            ResultHeader {
                report: outcome.report,
                name: None,
                mime: None,
                kind: None,
                has_output: false,
            },
            Vec::new(),
        ),
    };
    let mut out = io::stdout().lock();
    if wire::write_frame(&mut out, tag::RESULT, &result.0, &result.1).is_err() {
        return EXIT_PROTOCOL;
    }
    let _ = out.flush();
    0
}

/// Test-only hostile behaviour, compiled only with the `test-hooks` feature (never in release
/// builds): an input starting with `MUGAI-TEST-HOOK:<name>` makes the worker act like an
/// exploited sanitizer, so the tests can prove each limit stops it.
#[cfg(feature = "test-hooks")]
mod hooks {
    use super::*;

    const PREFIX: &[u8] = b"MUGAI-TEST-HOOK:";

    fn forged(header: &JobHeader, bytes: &[u8]) -> i32 {
        let head = ResultHeader {
            report: sanitizer_core::sanitize_file(b"", None, &header.policy).report,
            name: header.name.clone(),
            mime: Some("message/rfc822".into()),
            kind: Some(sanitizer_core::Kind::Mail),
            has_output: true,
        };
        match wire::write_frame(&mut io::stdout().lock(), tag::RESULT, &head, bytes) {
            Ok(()) => 0,
            Err(_) => EXIT_PROTOCOL,
        }
    }

    /// Recurses until the stack overflows (`n` never reaches `u64::MAX` in practice).
    fn recurse(n: u64) -> u64 {
        if n == u64::MAX {
            return 0;
        }
        let buf = std::hint::black_box([n; 512]);
        recurse(n.wrapping_add(buf.iter().sum::<u64>())).wrapping_add(1)
    }

    /// Runs the hook named by `body` (at its start, or at the start of a mail's body, so a
    /// relay that prepends `Received:` still reaches it), if any; returns the exit code when
    /// it returns at all.
    pub fn run(body: &[u8], header: &JobHeader) -> Option<i32> {
        let mail_body = || {
            let end = body.windows(4).position(|w| w == b"\r\n\r\n")?;
            body.get(end + 4..)?.strip_prefix(PREFIX)
        };
        let name = body.strip_prefix(PREFIX).or_else(mail_body)?;
        let name = std::str::from_utf8(name).ok()?.trim();
        Some(match name {
            "spin" => loop {
                std::hint::black_box(0u64);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0u8; 64 * 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack" => {
                std::hint::black_box(recurse(1));
                0
            }
            "open" => match std::fs::read("/etc/passwd") {
                Ok(data) => forged(header, &data),
                Err(e) => {
                    eprintln!("sandbox: open denied: {e}");
                    EXIT_SANDBOX_DENIED
                }
            },
            "socket" => match std::net::UdpSocket::bind("127.0.0.1:0") {
                Ok(_) => forged(header, b"socket created"),
                Err(e) => {
                    eprintln!("sandbox: socket denied: {e}");
                    EXIT_SANDBOX_DENIED
                }
            },
            // In place, without cloning: only the execve rule can stop it.
            "exec" => {
                use std::os::unix::process::CommandExt;
                let e = std::process::Command::new("/bin/true").exec();
                eprintln!("sandbox: exec denied: {e}");
                EXIT_SANDBOX_DENIED
            }
            "forge" => forged(
                header,
                b"From: a@example.jp\r\nX-Mugai-Report-Id: 1\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>\r\n",
            ),
            _ => match name.split_once(':') {
                Some((hook, arg)) => fact(hook, arg),
                None => fact(name, ""),
            },
        })
    }

    /// Hooks that report what they could do: the answer is the last line on standard error,
    /// with exit 71, so it reaches the report's reason (`the sandbox refused an operation: ...`).
    fn fact(hook: &str, arg: &str) -> i32 {
        let said = |what: String| {
            eprintln!("hook {hook}: {what}");
            EXIT_SANDBOX_DENIED
        };
        let outcome = |r: Result<(), String>| match r {
            Ok(()) => "done".to_owned(),
            Err(e) => format!("refused ({e})"),
        };
        let pid = arg.parse::<i32>().unwrap_or(0);
        match hook {
            "ids" => {
                use nix::unistd::{getegid, geteuid, getgid, getgroups, getuid};
                let groups = getgroups().map(|g| g.len()).unwrap_or(usize::MAX);
                said(format!(
                    "uid={} euid={} gid={} egid={} groups={groups}",
                    getuid(),
                    geteuid(),
                    getgid(),
                    getegid()
                ))
            }
            "limits" => {
                use rlimit::{Resource, getrlimit};
                let get = |r: Resource| {
                    getrlimit(r)
                        .map(|(s, h)| format!("{s}/{h}"))
                        .unwrap_or_else(|e| e.to_string())
                };
                // RLIMIT_NOFILE in effect: duplicate stdin until the kernel says no.
                let mut held = Vec::new();
                while held.len() < 10_000 {
                    use std::os::fd::AsFd;
                    match io::stdin().as_fd().try_clone_to_owned() {
                        Ok(fd) => held.push(fd),
                        Err(_) => break,
                    }
                }
                said(format!(
                    "cpu={} fsize={} nofile={} core={} opened={}",
                    get(Resource::CPU),
                    get(Resource::FSIZE),
                    get(Resource::NOFILE),
                    get(Resource::CORE),
                    held.len()
                ))
            }
            "kill" => said(outcome(
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .map_err(|e| e.to_string()),
            )),
            "prlimit" => said(outcome(
                rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some((0, 0)), None)
                    .map_err(|e| e.to_string()),
            )),
            "fds" => said(format!("open above 2: {:?}", sandbox::inherited_fds())),
            "tty" => said(outcome(
                std::fs::File::open("/dev/tty")
                    .map(drop)
                    .map_err(|e| e.to_string()),
            )),
            "create" => said(outcome(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(arg)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            )),
            "ocr" => said(ocr_probe()),
            _ => said("no such hook".to_owned()),
        }
    }

    /// Sends the parent OCR requests no honest worker would (a body that is not width x
    /// height, an image over the cap, languages other than the policy's, a timeout past the
    /// end of time) and one plain request; returns the parent's answers.
    fn ocr_probe() -> String {
        let ask = |width: u32, height: u32, body: &[u8], languages: &str, timeout_ms: u64| {
            let req = wire::OcrRequest {
                width,
                height,
                dpi: 150,
                languages: languages.to_owned(),
                timeout_ms,
            };
            if let Err(e) = wire::write_frame(&mut io::stdout().lock(), tag::OCR, &req, body) {
                return format!("write: {e}");
            }
            match wire::read_frame(&mut io::stdin().lock(), 0) {
                Ok(Some(f)) if f.tag == tag::OCR_REPLY => match f.header::<wire::OcrReply>() {
                    Ok(r) => r
                        .error
                        .unwrap_or_else(|| format!("{} words", r.words.len())),
                    Err(e) => format!("reply: {e}"),
                },
                _ => "no reply".to_owned(),
            }
        };
        let white = [255u8; 6];
        [
            ask(3, 2, &white[..5], "jpn+eng", 1000),
            ask(u32::MAX, u32::MAX, &white, "jpn+eng", 1000),
            ask(3, 2, &white, "eng", 1000),
            ask(3, 2, &white, "jpn+eng", u64::MAX),
        ]
        .join(" | ")
    }
}
