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
    let p = pool();
    assert_eq!(hostile(&p, "exec"), vec!["sandbox.violation"]);
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

#[test]
fn confined_helper_has_no_network() {
    let d = job_dir();
    // bash's /dev/tcp opens an AF_INET socket: refused by the sandbox.
    let out = confined(
        d.path(),
        &[
            "/bin/bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9 && echo connected",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("connected"));
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
