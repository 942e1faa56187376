//! Worker isolation: hostile workers are stopped by the right limit, reported with their cause,
//! and the pool carries on. The hostile-worker tests need the `test-hooks` feature
//! (`cargo test --all-features`, as `.ci/run` does); the hooks make a worker act like an
//! exploited sanitizer. The confinement of helper programs (LibreOffice) is tested too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gateway_daemon::isolate::pool::{Pool, PoolConfig};
use gateway_daemon::isolate::sandbox::SandboxConfig;
#[cfg(feature = "test-hooks")]
use sanitizer_core::Verdict;
use sanitizer_core::{Policy, sanitize_file};

fn pool() -> Pool {
    let mut cfg = PoolConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_mugai")));
    cfg.size = 2;
    cfg.grace = Duration::from_millis(500);
    cfg.sandbox = SandboxConfig {
        memory_bytes: 768 * 1024 * 1024,
        cpu_seconds: 30,
        ..SandboxConfig::default()
    };
    Pool::new(cfg, None).unwrap()
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.limits.deadline_ms = 3_000;
    p
}

#[cfg(feature = "test-hooks")]
fn hook(name: &str) -> Vec<u8> {
    format!("MUGAI-TEST-HOOK:{name}").into_bytes()
}

#[cfg(feature = "test-hooks")]
/// Runs a hostile file job and returns the threat ids of its blocked report, after checking
/// that the pool still sanitizes a normal file next.
fn hostile(pool: &Pool, name: &str) -> Vec<String> {
    let out = pool
        .sanitize_file(&hook(name), Some("x.txt"), &policy())
        .unwrap();
    assert!(
        out.output.is_none(),
        "{name}: hostile worker produced output"
    );
    assert_eq!(out.report.verdict, Verdict::Blocked, "{name}");
    let next = pool
        .sanitize_file(b"<p>hello</p>", Some("a.html"), &policy())
        .unwrap();
    assert!(next.output.is_some(), "{name}: the next job failed");
    out.report
        .items
        .iter()
        .flat_map(|i| i.threats.clone())
        .collect()
}

#[cfg(feature = "test-hooks")]
/// Like [`hostile`], also returning the report's reasons (where fact hooks put their answer).
fn hostile_with_reasons(pool: &Pool, name: &str) -> (Vec<String>, Vec<String>) {
    let out = pool
        .sanitize_file(&hook(name), Some("x.txt"), &policy())
        .unwrap();
    assert!(
        out.output.is_none(),
        "{name}: hostile worker produced output"
    );
    assert_eq!(out.report.verdict, Verdict::Blocked, "{name}");
    let reasons = out.report.items.iter().map(|i| i.reason.clone()).collect();
    let threats = out
        .report
        .items
        .iter()
        .flat_map(|i| i.threats.clone())
        .collect();
    (threats, reasons)
}

#[cfg(feature = "test-hooks")]
/// What a fact hook (`worker.rs`) answered: the text after `hook NAME: `.
fn fact(pool: &Pool, name: &str) -> String {
    let (threats, reasons) = hostile_with_reasons(pool, name);
    assert_eq!(threats, vec!["sandbox.violation"], "{reasons:?}");
    let hook = name.split(':').next().unwrap();
    let marker = format!("hook {hook}: ");
    let said = reasons
        .iter()
        .find_map(|r| r.split_once(&marker).map(|(_, said)| said.to_owned()));
    assert!(said.is_some(), "{name}: no answer in {reasons:?}");
    said.unwrap()
}

/// An OCR engine that finds one word anywhere.
#[cfg(feature = "test-hooks")]
struct OneWord;

#[cfg(feature = "test-hooks")]
impl sanitizer_core::pipeline::Ocr for OneWord {
    fn recognize(
        &self,
        _grey: &[u8],
        _width: u32,
        _height: u32,
        _dpi: u32,
        _languages: &str,
        _deadline: std::time::Instant,
    ) -> Result<Vec<sanitizer_core::pipeline::OcrWord>, String> {
        Ok(vec![sanitizer_core::pipeline::OcrWord {
            text: "word".into(),
            left: 0,
            top: 0,
            width: 1,
            height: 1,
        }])
    }
}

/// The parent checks a worker's OCR requests before running anything, and answers a plain one.
#[cfg(feature = "test-hooks")]
#[test]
fn forged_ocr_requests_are_refused_by_the_parent() {
    let pool = pool().with_ocr(std::sync::Arc::new(OneWord));
    let mut p = policy();
    p.pdf.ocr = true;
    let out = pool.sanitize_file(&hook("ocr"), Some("x.txt"), &p).unwrap();
    let said: Vec<&str> = out
        .report
        .items
        .iter()
        .find_map(|i| i.reason.split_once("hook ocr: "))
        .map(|(_, s)| s.split(" | ").collect())
        .unwrap_or_default();
    assert_eq!(said.len(), 4, "{:?}", out.report);
    assert!(said[0].contains("comes with 5 bytes"), "{said:?}");
    assert!(said[1].contains("over the OCR cap"), "{said:?}");
    assert!(said[2].contains("languages differ"), "{said:?}");
    assert_eq!(said[3], "1 words", "{said:?}");
    // Under a policy without OCR, nothing is recognised for the worker.
    let out = pool
        .sanitize_file(&hook("ocr"), Some("x.txt"), &policy())
        .unwrap();
    let reason = out
        .report
        .items
        .iter()
        .map(|i| i.reason.clone())
        .collect::<String>();
    assert!(!reason.contains("1 words"), "{reason}");
}

#[cfg(feature = "test-hooks")]
#[test]
fn spinning_worker_is_killed_at_the_deadline() {
    let p = pool();
    assert_eq!(hostile(&p, "spin"), vec!["limit.deadline"]);
}

#[cfg(feature = "test-hooks")]
#[test]
fn allocating_worker_hits_the_memory_cap() {
    let p = pool();
    assert_eq!(hostile(&p, "alloc"), vec!["limit.memory"]);
}

#[cfg(feature = "test-hooks")]
#[test]
fn stack_overflow_is_a_crash_not_a_hang() {
    let p = pool();
    assert_eq!(hostile(&p, "stack"), vec!["worker.crashed"]);
}

#[cfg(feature = "test-hooks")]
#[test]
fn opening_files_is_refused() {
    let p = pool();
    assert_eq!(hostile(&p, "open"), vec!["sandbox.violation"]);
}

#[cfg(feature = "test-hooks")]
#[test]
fn sockets_are_refused() {
    let p = pool();
    assert_eq!(hostile(&p, "socket"), vec!["sandbox.violation"]);
}

#[cfg(feature = "test-hooks")]
#[test]
fn exec_is_refused() {
    // The hook replaces itself with /bin/true in place (no clone): only the execve rule can
    // stop it, and the kill by seccomp (SIGSYS) is what the reason names. (Landlock, which
    // grants no execute right, would answer EACCES instead: a different reason.)
    let p = pool();
    let (threats, reasons) = hostile_with_reasons(&p, "exec");
    assert_eq!(threats, vec!["sandbox.violation"]);
    assert!(
        reasons.iter().any(|r| r.contains("forbidden system call")),
        "{reasons:?}"
    );
}

#[cfg(feature = "test-hooks")]
#[test]
fn forged_output_is_caught_by_the_parent() {
    let p = pool();
    // As a mail: the forged HTML message fails the re-check; the recipient gets a notice.
    let out = p.sanitize_mail(&hook("forge"), &policy()).unwrap();
    let text = String::from_utf8_lossy(out.message.as_slice()).to_string();
    assert!(!text.contains("<script"), "{text}");
    assert!(
        out.report
            .items
            .iter()
            .any(|i| i.threats.iter().any(|t| t == "recheck.failed")),
        "{:?}",
        out.report
    );
    // As a file: blocked.
    let out = p
        .sanitize_file(&hook("forge"), Some("x.txt"), &policy())
        .unwrap();
    assert!(out.output.is_none());
}

#[test]
fn pool_output_equals_in_process_output() {
    let p = pool();
    let html = "<html><body><h1>見積書</h1><script>alert(1)</script><p>①㈱髙</p></body></html>";
    let pooled = p
        .sanitize_file(html.as_bytes(), Some("a.html"), &policy())
        .unwrap();
    let local = sanitize_file(html.as_bytes(), Some("a.html"), &policy());
    let (a, b) = (pooled.output.unwrap(), local.output.unwrap());
    assert_eq!(a.bytes.as_slice(), b.bytes.as_slice());
    assert_eq!(a.name, b.name);
    assert_eq!(pooled.report.verdict, local.report.verdict);
    assert_eq!(pooled.report.items, local.report.items);
}

fn confined(dir: &Path, program: &[&str]) -> std::process::Output {
    let mut c = gateway_daemon::isolate::confine::command(
        Path::new(env!("CARGO_BIN_EXE_mugai")),
        dir,
        60,
        8 * 1024 * 1024 * 1024,
        false,
    );
    c.args(program).output().unwrap()
}

fn job_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    gateway_daemon::isolate::confine::prepare_dir(d.path()).unwrap();
    d
}

#[test]
fn confined_helper_writes_only_its_own_directory() {
    let d = job_dir();
    let inside = d.path().join("ok.txt");
    let out = confined(d.path(), &["/usr/bin/touch", inside.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(inside.exists());
    let outside = std::env::temp_dir().join(format!("mugai-escape-{}", std::process::id()));
    let out = confined(d.path(), &["/usr/bin/touch", outside.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!outside.exists(), "wrote outside its directory");
}

/// A Python client that tries the test's listeners: a TCP one on loopback and an abstract
/// Unix one (abstract sockets belong to the network namespace, and seccomp lets `AF_UNIX`
/// through, so only the namespace keeps the helper from it).
fn network_probe(tcp_port: u16, abstract_name: &str) -> String {
    format!(
        r#"
import socket
def attempt(family, addr):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(addr)
            return "connected"
    except OSError:
        return "refused"
print("tcp=" + attempt(socket.AF_INET, ("127.0.0.1", {tcp_port})),
      "unix=" + attempt(socket.AF_UNIX, "\0{abstract_name}"))
"#
    )
}

#[test]
fn confined_helper_has_no_network() {
    use std::os::linux::net::SocketAddrExt;
    let d = job_dir();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let name = format!("mugai-isolation-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let script = network_probe(tcp.local_addr().unwrap().port(), &name);
    // The listeners are reachable from outside the sandbox...
    let free = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&free.stdout).trim(),
        "tcp=connected unix=connected",
        "{free:?}"
    );
    // ... and not from inside.
    let out = confined(d.path(), &["/usr/bin/python3", "-c", &script]);
    let said = String::from_utf8_lossy(&out.stdout);
    if is_root() {
        assert_eq!(said.trim(), "tcp=refused unix=refused", "{out:?}");
    } else {
        eprintln!("NOTICE: not root: no network namespace; only inet sockets are refused");
        assert!(said.contains("tcp=refused"), "{out:?}");
    }
    drop((tcp, unix));
}

#[test]
fn libreoffice_converts_inside_the_sandbox() {
    if Command::new("soffice").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have LibreOffice installed"
        );
        eprintln!("soffice not installed here; skipping the confined conversion check");
        return;
    }
    let d = job_dir();
    let input = d.path().join("in.txt");
    std::fs::write(&input, "見積書 ①㈱\n").unwrap();
    gateway_daemon::isolate::confine::prepare_dir(&input).unwrap();
    let profile = format!(
        "-env:UserInstallation=file://{}/profile",
        d.path().display()
    );
    let outdir = d.path().join("out");
    let out = confined(
        d.path(),
        &[
            "/usr/bin/soffice",
            "--headless",
            "--norestore",
            "--nologo",
            "--nodefault",
            "--nolockcheck",
            &profile,
            "--convert-to",
            "docx",
            "--outdir",
            outdir.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let docx = std::fs::read(outdir.join("in.docx")).unwrap();
    assert!(docx.starts_with(b"PK"));
}

/// Tesseract, confined by the trampoline as the daemon runs it, reads English and Japanese off
/// a 150 DPI grey page (typeset by LibreOffice, rendered by mutool).
#[test]
fn tesseract_recognises_a_page_inside_the_sandbox() {
    use sanitizer_core::pipeline::Ocr;
    let tools = ["soffice", "mutool", "tesseract"];
    if tools
        .iter()
        .any(|t| Command::new(t).arg("--version").output().is_err())
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {tools:?} installed"
        );
        eprintln!("NOTICE: {tools:?} not all installed; skipping the confined OCR check");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let txt = d.path().join("page.txt");
    std::fs::write(
        &txt,
        "Sanitized invoice number 4521 for the city office\n請求書の金額は五万円です\n",
    )
    .unwrap();
    let lo = Command::new("soffice")
        .arg(format!(
            "-env:UserInstallation=file://{}/profile",
            d.path().display()
        ))
        .args([
            "--headless",
            "--norestore",
            "--convert-to",
            "pdf",
            "--outdir",
        ])
        .arg(d.path())
        .arg(&txt)
        .output()
        .unwrap();
    assert!(lo.status.success(), "{lo:?}");
    let pgm = d.path().join("page.pgm");
    let draw = Command::new("mutool")
        .args(["draw", "-q", "-r", "150", "-c", "gray", "-o"])
        .arg(&pgm)
        .arg(d.path().join("page.pdf"))
        .output()
        .unwrap();
    assert!(draw.status.success(), "{draw:?}");
    // P5 header: magic, width, height, maxval, each followed by one whitespace byte.
    let bytes = std::fs::read(&pgm).unwrap();
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        let end = at
            + bytes[at..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap();
        fields.push(std::str::from_utf8(&bytes[at..end]).unwrap().to_owned());
        at = end + 1;
    }
    assert_eq!((fields[0].as_str(), fields[3].as_str()), ("P5", "255"));
    let (w, h): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let grey = &bytes[at..];
    let engine = gateway_daemon::ocr::Tesseract::find("tesseract", Duration::from_secs(60))
        .unwrap()
        .confined(env!("CARGO_BIN_EXE_mugai"));
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    let words = engine
        .recognize(grey, w, h, 150, "jpn+eng", deadline)
        .unwrap();
    eprintln!(
        "confined tesseract, jpn+eng, {w}x{h}: {:?}",
        started.elapsed()
    );
    let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    for word in ["Sanitized", "invoice", "4521", "office", "請求", "金額"] {
        assert!(text.contains(&word), "{word:?} not in {text:?}");
    }
    let invoice = words.iter().find(|x| x.text == "invoice").unwrap();
    // On the first line, about an inch from the left edge, inside the image.
    assert!(invoice.left > 150 && invoice.top < 300, "{invoice:?}");
    assert!(
        words
            .iter()
            .all(|x| x.left + x.width <= w && x.top + x.height <= h)
    );
}

/// Every corpus sample gives the same output and the same report items through the pool as in
/// this process (report ids differ by design; they are replaced before comparing).
#[test]
fn corpus_through_the_pool_equals_in_process() {
    use gateway_daemon::sanitize::{InProcess, Job, Mode, Transform};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|area| std::fs::read_dir(area.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() > 50, "corpus not found at {}", root.display());
    let policy = Policy::default();
    let pooled = gateway_daemon::isolate::pool::Isolated::new(
        policy.clone(),
        PoolConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_mugai"))),
        None,
    )
    .unwrap();
    // The same fonts as the workers read (the core reads none itself).
    let local = InProcess::new(policy).with_fonts(std::sync::Arc::new(
        gateway_daemon::fonts::FileFonts::new(&gateway_daemon::config::Host::default()),
    ));
    // Report ids differ by design; in mail they also sit inside base64 bodies, so mail is
    // compared part by part on decoded contents (nested messages recursively).
    let normalise = |bytes: &[u8], id: &str| normalise_output(bytes, id);
    for path in files {
        let input = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let job = Job {
            mode: Mode::detect(Some(&name), &input),
            password: None,
            input,
            name: Some(name.clone()),
        };
        let a = pooled.run(&job).unwrap();
        let b = local.run(&job).unwrap();
        assert_eq!(a.report.verdict, b.report.verdict, "{name}");
        let threats = |o: &gateway_daemon::sanitize::JobOutcome| -> Vec<String> {
            o.report.threats().into_iter().map(str::to_owned).collect()
        };
        assert_eq!(threats(&a), threats(&b), "{name}");
        match (&a.output, &b.output) {
            (Some(x), Some(y)) => {
                assert_eq!(x.name, y.name, "{name}");
                let (x, y) = (
                    normalise(x.bytes(), &a.report.id),
                    normalise(y.bytes(), &b.report.id),
                );
                assert!(
                    x == y,
                    "{name}: outputs differ ({} vs {} bytes)",
                    x.len(),
                    y.len()
                );
            }
            (None, None) => {}
            _ => panic!("{name}: blocked on one side only"),
        }
    }
}

fn normalise_output(bytes: &[u8], id: &str) -> Vec<u8> {
    let swap = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(id, "REPORT-ID")
            .into_bytes()
    };
    let is_mail = bytes.starts_with(b"MIME-Version") || bytes.starts_with(b"Received");
    match mail_parser::MessageParser::default().parse(bytes) {
        Some(m) if is_mail => {
            let mut out = Vec::new();
            for part in &m.parts {
                match &part.body {
                    mail_parser::PartType::Message(inner) => {
                        out.extend(normalise_output(inner.raw_message(), id))
                    }
                    _ => out.extend(swap(part.contents())),
                }
                out.extend_from_slice(b"\n--part--\n");
            }
            out
        }
        _ => swap(bytes),
    }
}

// ---------------------------------------------------------------------------------------
// What a compromised worker or helper cannot do (issue 7). Each test names one mechanism and
// fails when that mechanism is removed.

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(feature = "test-hooks")]
fn pool_with(
    adjust: impl FnOnce(&mut PoolConfig),
) -> Result<Pool, gateway_daemon::isolate::pool::PoolError> {
    let mut cfg = PoolConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_mugai")));
    cfg.size = 1;
    cfg.grace = Duration::from_millis(500);
    cfg.sandbox = SandboxConfig {
        memory_bytes: 768 * 1024 * 1024,
        cpu_seconds: 30,
        ..SandboxConfig::default()
    };
    adjust(&mut cfg);
    Pool::new(cfg, None)
}

#[cfg(feature = "test-hooks")]
#[test]
fn resource_limits_are_in_effect() {
    let p = pool();
    let said = fact(&p, "limits");
    // RLIMIT_CPU as configured, no file growth, no core dumps, 64 descriptors.
    for want in ["cpu=30/31", "fsize=0/0", "core=0/0", "nofile=64/64"] {
        assert!(said.contains(want), "{want} missing: {said}");
    }
    // RLIMIT_NOFILE in effect: the worker could not hold more than 64 descriptors.
    let opened: usize = said
        .rsplit("opened=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((50..64).contains(&opened), "{said}");

    // RLIMIT_CPU in effect: a spinning worker with a long deadline dies of SIGXCPU.
    let p = pool_with(|c| c.sandbox.cpu_seconds = 1).unwrap();
    let mut long = policy();
    long.limits.deadline_ms = 20_000;
    let started = std::time::Instant::now();
    let out = p
        .sanitize_file(&hook("spin"), Some("x.txt"), &long)
        .unwrap();
    assert!(out.output.is_none());
    assert_eq!(out.report.threats(), vec!["limit.cpu"], "{:?}", out.report);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_started_as_root_run_as_nobody() {
    let p = pool();
    let said = fact(&p, "ids");
    if is_root() {
        assert_eq!(said, "uid=65534 euid=65534 gid=65534 egid=65534 groups=0");
    } else {
        let me = nix::unistd::getuid();
        eprintln!("NOTICE: not root: the privilege drop is not exercised here ({said})");
        assert!(said.starts_with(&format!("uid={me} euid={me} ")), "{said}");
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_refuse_to_start_without_landlock_unless_allowed() {
    // The kernel "has no Landlock" (test switch): the pool does not start, and says why.
    let err = pool_with(|c| c.sandbox.simulate_no_landlock = true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("Landlock is not enforced"), "{err}");
    assert!(err.contains("allow_without_landlock"), "{err}");
    // Through the transform, as the CLI and daemon use it: no output, a transient error
    // (the item is retried or left in place), never a pass.
    let mut policy = Policy::default();
    policy.limits.deadline_ms = 3_000;
    let isolated = gateway_daemon::isolate::pool::Isolated::new(
        policy.clone(),
        {
            let mut c = PoolConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_mugai")));
            c.size = 1;
            c.sandbox.simulate_no_landlock = true;
            c
        },
        None,
    );
    assert!(isolated.is_err());

    // Allowed explicitly (configuration [pool] allow_without_landlock = true): it runs, and the
    // read-only open rule still holds without Landlock: no file is created.
    let p = pool_with(|c| {
        c.sandbox.simulate_no_landlock = true;
        c.sandbox.allow_without_landlock = true;
    })
    .unwrap();
    let target = std::env::temp_dir().join(format!("mugai-created-{}", std::process::id()));
    let said = fact(&p, &format!("create:{}", target.display()));
    assert!(said.starts_with("refused"), "{said}");
    assert!(!target.exists(), "a worker without Landlock created a file");
    let next = p
        .sanitize_file(b"<p>hello</p>", Some("a.html"), &policy)
        .unwrap();
    assert!(next.output.is_some());
}

#[cfg(feature = "test-hooks")]
/// A process of the workers' own user (`nobody` when we are root), standing in for an idle
/// sibling worker.
fn sibling() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("/bin/sleep");
    c.arg("30");
    if is_root() {
        c.uid(65534).gid(65534);
    }
    c.spawn().unwrap()
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_cannot_signal_their_siblings() {
    let p = pool();
    let mut victim = sibling();
    let said = fact(&p, &format!("kill:{}", victim.id()));
    assert!(said.starts_with("refused"), "{said}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the sibling was killed"
    );
    let _ = victim.kill();
    let _ = victim.wait();
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_cannot_change_the_limits_of_the_parent_or_a_sibling() {
    let p = pool();
    let mut victim = sibling();
    let fsize = |pid: u32| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max file size"))
            .unwrap()
            .to_owned()
    };
    let (victim_before, parent_before) = (fsize(victim.id()), fsize(std::process::id()));
    // The sibling runs as the worker's own user: only the prlimit rule stops this one.
    let said = fact(&p, &format!("prlimit:{}", victim.id()));
    assert!(said.starts_with("refused"), "{said}");
    let said = fact(&p, &format!("prlimit:{}", std::process::id()));
    assert!(said.starts_with("refused"), "{said}");
    assert_eq!(fsize(victim.id()), victim_before);
    assert_eq!(fsize(std::process::id()), parent_before);
    let _ = victim.kill();
    let _ = victim.wait();
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_do_not_inherit_descriptors() {
    // The pool starts each worker through a wrapper that opens fd 7 without close-on-exec,
    // as a careless caller would leave it: the worker must shed it before confining itself.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("leaky-mugai");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec 7</etc/hostname\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_mugai")
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let p = pool_with(|c| c.exe = wrapper.clone()).unwrap();
    assert_eq!(fact(&p, "fds"), "open above 2: []");

    // The same through the CLI started with fd 7 open: its workers see nothing above 2.
    let input = dir.path().join("hook.txt");
    std::fs::write(&input, hook("fds")).unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "exec 7</etc/hostname; exec {} sanitize --report - {} -o {}",
            env!("CARGO_BIN_EXE_mugai"),
            input.display(),
            dir.path().join("out.txt").display()
        ))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("hook fds: open above 2: []"), "{out:?}");
}

#[cfg(feature = "test-hooks")]
#[test]
fn workers_have_no_terminal() {
    // Started from a session whose controlling terminal is a pty, the CLI's worker cannot
    // open /dev/tty: it has left that session (and Landlock shows it no device).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hook.txt");
    std::fs::write(&input, hook("tty")).unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let out = Command::new("/usr/bin/setsid")
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_mugai"))
        .args(["sanitize", "--report", "-"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out.txt"))
        .stdin(std::process::Stdio::from(pty.slave))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("hook tty: refused"), "{out:?}");
}

/// Runs a Python snippet under `setsid --ctty` with a pty as its terminal, confined or not;
/// returns what it printed.
fn python_with_a_terminal(dir: &Path, confine: bool, script: &str) -> String {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut c = Command::new("/usr/bin/setsid");
    c.arg("--ctty");
    if confine {
        c.arg(env!("CARGO_BIN_EXE_mugai"))
            .args(["__confine", "--rw"])
            .arg(dir)
            .arg("--");
    }
    let out = c
        .args(["/usr/bin/python3", "-c", script])
        .stdin(std::process::Stdio::from(pty.slave))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn confined_helper_cannot_use_the_terminal() {
    const SCRIPT: &str = r#"
import errno, fcntl, os, termios
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
tty = attempt(lambda: os.close(os.open("/dev/tty", os.O_RDWR)))
sti = attempt(lambda: fcntl.ioctl(0, termios.TIOCSTI, b"x"))
print("tty=" + tty, "sti=" + sti)
"#;
    let d = job_dir();
    // The set-up gives a terminal: unconfined, the same script opens it and can push input.
    let free = python_with_a_terminal(d.path(), false, SCRIPT);
    assert!(free.starts_with("tty=ok sti=ok"), "{free}");
    let confined = python_with_a_terminal(d.path(), true, SCRIPT);
    // No controlling terminal (own session) and no /dev/tty in Landlock's view; and TIOCSTI is
    // refused by seccomp (EPERM) before the kernel even looks at the descriptor (stdin is
    // /dev/null, which would answer ENOTTY).
    assert!(confined.starts_with("tty=E"), "{confined}");
    assert!(confined.contains("sti=EPERM"), "{confined}");
}

#[test]
fn confined_helper_leaves_no_process_behind() {
    let d = job_dir();
    // A grandchild that leaves the session (as a daemonising helper would) and would
    // otherwise outlive the job.
    let marker = format!(
        "{}.{}",
        3000 + std::process::id() % 1000,
        std::process::id()
    );
    let out = confined(
        d.path(),
        &[
            "/bin/sh",
            "-c",
            &format!("/usr/bin/setsid /bin/sleep {marker} </dev/null >/dev/null 2>&1 & sleep 0.2"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    let survivors = processes_with(&marker);
    if is_root() {
        assert!(survivors.is_empty(), "outlived the job: {survivors:?}");
    } else {
        eprintln!("NOTICE: not root: no PID namespace for the helper; survivors not checked");
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn confined_helper_refuses_to_start_without_landlock() {
    let d = job_dir();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mugai"))
            .args(["__confine", "--rw"])
            .arg(d.path())
            .arg("--simulate-no-landlock")
            .args(extra)
            .args(["--", "/bin/true"])
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Landlock is not enforced"),
        "{out:?}"
    );
    let out = run(&["--allow-without-landlock"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn confined_helper_sees_only_harmless_devices() {
    let d = job_dir();
    let out = confined(
        d.path(),
        &[
            "/bin/sh",
            "-c",
            "head -c 1 /dev/urandom >/dev/null && echo urandom; \
             echo x >/dev/null && echo null; \
             for dev in /dev/tty /dev/console /dev/mem /dev/kmsg /dev/ptmx /dev/zero /dev/random \
                 /dev/vda /dev/sda /dev/fuse /dev/net/tun; do \
               [ -e $dev ] || continue; (: <$dev) 2>/dev/null && echo opened:$dev; \
             done; true",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("urandom") && said.contains("null"), "{out:?}");
    assert!(!said.contains("opened:"), "{said}");
}

#[test]
fn confined_helper_inherits_no_descriptors_and_few_processes() {
    let d = job_dir();
    // Started with fd 7 open and not close-on-exec, as a careless caller would leave it.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "exec 7</etc/hostname; exec {} __confine --rw {} -- /bin/bash -c \
             'if [ -e /proc/self/fd/7 ]; then echo fd7=open; else echo fd7=closed; fi; ulimit -u'",
            env!("CARGO_BIN_EXE_mugai"),
            d.path().display()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("fd7=closed"), "{said}");
    // RLIMIT_NPROC: a fork bomb in the helper stops at this many processes of its user.
    assert_eq!(
        said.lines().last().unwrap().trim(),
        gateway_daemon::isolate::confine::MAX_PROCESSES.to_string(),
        "{said}"
    );
}

#[test]
fn inner_stage_refuses_to_run_without_its_outer_stage() {
    // The inner stage dies with the outer one (parent-death signal); should the outer one die
    // before that signal is set up, the inner one sees its lifeline closed and stops.
    let d = job_dir();
    let marker = d.path().join("ran");
    let inner = |stdin: std::process::Stdio| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mugai"))
            .args(["__confine", "--inner", "--rw"])
            .arg(d.path())
            .args(["--", "/usr/bin/touch"])
            .arg(&marker)
            .stdin(stdin)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lifeline = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(lifeline);
        out
    };
    let out = inner(std::process::Stdio::null());
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("outer stage is gone"));
    assert!(!marker.exists());
    // With the lifeline held open (as the outer stage does), it runs.
    let out = inner(std::process::Stdio::piped());
    assert!(out.status.success(), "{out:?}");
    assert!(marker.exists());
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker))
        .collect()
}

#[test]
fn killing_the_helper_at_the_deadline_ends_everything_it_started() {
    use std::os::unix::process::CommandExt;
    let d = job_dir();
    let marker = format!(
        "{}.{}",
        4000 + std::process::id() % 1000,
        std::process::id()
    );
    // As the converter does: the trampoline in its own process group, killed as a group at
    // the deadline, while the helper still runs.
    let mut c = gateway_daemon::isolate::confine::command(
        Path::new(env!("CARGO_BIN_EXE_mugai")),
        d.path(),
        60,
        8 * 1024 * 1024 * 1024,
        false,
    );
    let mut child = c
        .args(["/bin/sleep", &marker])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while processes_with(&marker).len() < 3 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // outer stage, inner stage (PID 1 of its namespace), sleep: all running.
    assert_eq!(
        processes_with(&marker).len(),
        3,
        "{:?}",
        processes_with(&marker)
    );
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let gone_by = std::time::Instant::now() + Duration::from_secs(3);
    while !processes_with(&marker).is_empty() && std::time::Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        processes_with(&marker).is_empty(),
        "outlived the kill: {:?}",
        processes_with(&marker)
    );
}

#[test]
fn a_ppap_zip_is_unlocked_inside_the_worker() {
    use gateway_daemon::sanitize::{Password, WARN_UNLOCKED, WARN_WRONG_PASSWORD};
    use std::io::Write;
    use zip::unstable::write::FileOptionsExt;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .with_deprecated_encryption(b"pass-1234")
        .unwrap();
    w.start_file("memo.html", o).unwrap();
    w.write_all(b"<p>meeting at 10</p><script>steal()</script>")
        .unwrap();
    let ppap = w.finish().unwrap().into_inner();

    let pool = pool();
    let policy = policy();
    let wrong = pool
        .sanitize_file_unlocking(
            &ppap,
            Some("memo.zip"),
            &Password::new("nope".into()),
            &policy,
        )
        .unwrap();
    assert_eq!(wrong.report.verdict, sanitizer_core::Verdict::Blocked);
    assert!(
        wrong
            .report
            .warnings
            .iter()
            .any(|x| x == WARN_WRONG_PASSWORD)
    );
    let out = pool
        .sanitize_file_unlocking(
            &ppap,
            Some("memo.zip"),
            &Password::new("pass-1234".into()),
            &policy,
        )
        .unwrap();
    assert!(out.report.warnings.iter().any(|x| x == WARN_UNLOCKED));
    // The parent describes the encrypted input as given, and re-checked the output.
    assert_eq!(
        out.report.input.sha256,
        sanitizer_core::report::sha256_hex(&ppap)
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut m = a.by_index(0).unwrap();
    assert!(!m.encrypted());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut m, &mut text).unwrap();
    assert!(
        text.contains("meeting at 10") && !text.contains("steal"),
        "{text}"
    );
    drop(m);

    // Attached to a mail: the worker rebuilds it inside the sanitized message.
    let mail = [
        b"From: a@example.jp\r\nTo: b@city.example.lg.jp\r\nSubject: memo\r\n\
MIME-Version: 1.0\r\nContent-Type: application/zip; name=\"memo.zip\"\r\n\
Content-Disposition: attachment; filename=\"memo.zip\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n" as &[u8],
        &ppap,
    ]
    .concat();
    let pw = Password::new("pass-1234".into());
    let unlocked = pool
        .sanitize_mail_unlocking(&mail, Some(&pw), &policy)
        .unwrap();
    assert!(unlocked.report.warnings.iter().any(|x| x == WARN_UNLOCKED));
    assert!(!unlocked.report.threats().contains(&"archive.encrypted"));
    let locked = pool.sanitize_mail(&mail, &policy).unwrap();
    assert!(locked.report.threats().contains(&"archive.encrypted"));
}
