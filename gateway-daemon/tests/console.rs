//! The 無害化コンソール in a real browser: `mugai serve` with the relay, a `dir` downstream and
//! the HTTP listener; mail sent through the relay so items are held; then `tests/console.py`
//! drives Debian's chromium through chromedriver (Python selenium, driver path given, nothing
//! downloaded) as a requester, an approver and an admin. This side checks what the browser
//! cannot see: the released original in the downstream, and the audit log.
//!
//! Needs chromium, chromium-driver and python3-selenium (`.ci/run` installs them). Without
//! them the test says so and passes, except under CI (`CI` set), where it fails.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test may panic: that is its failure report"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MUGAI: &str = env!("CARGO_BIN_EXE_mugai");
const STAFF: &str = "staff@city.example.lg.jp";
const OTHER: &str = "other@city.example.lg.jp";
const PASSWORD: &str = "correct horse battery staple";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mugai_user(dir: &Path, config: &Path, args: &[&str]) {
    let mut child = Command::new(MUGAI)
        .arg("user")
        .args(args)
        .arg("--password-stdin")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mugai user {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads one SMTP reply (all its lines) and returns its code.
fn reply(r: &mut impl BufRead) -> u16 {
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "SMTP connection closed"
        );
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).unwrap().parse().unwrap();
        }
    }
}

/// Sends `message` to `rcpt` through the relay on `port`; panics unless it is accepted.
fn send(port: u16, rcpt: &str, message: &str) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    assert_eq!(reply(&mut r), 220);
    let mut say = |line: &str, want: u16, r: &mut BufReader<TcpStream>| {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\r\n").unwrap();
        assert_eq!(reply(r), want, "{line}");
    };
    say("EHLO sender.example.jp", 250, &mut r);
    say("MAIL FROM:<sender@example.jp>", 250, &mut r);
    say(&format!("RCPT TO:<{rcpt}>"), 250, &mut r);
    say("DATA", 354, &mut r);
    let body = message.replace("\r\n", "\n").replace('\n', "\r\n");
    let mut data = String::new();
    for line in body.split("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push('.');
    say(&data, 250, &mut r);
    say("QUIT", 221, &mut r);
}

/// A one-page PDF with a black bar and the word "INVOICE", base64: the part the detail page
/// previews as a picture of its sanitized (rasterized) form.
fn pdf_b64() -> String {
    let content = "0 0 0 rg 40 700 300 40 re f BT /F1 36 Tf 40 600 Td (INVOICE) Tj ET";
    let pdf = format!(
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R\
/Resources<</Font<</F1 5 0 R>>>>>>endobj\n\
4 0 obj<</Length {}>>stream\n{content}\nendstream endobj\n\
5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\n\
trailer<</Root 1 0 R>>\n%%EOF\n",
        content.len()
    );
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pdf)
}

/// A message with an HTML body, an attachment `name` (RFC 2231, UTF-8) of `bytes_b64`, and a
/// PDF.
fn mail(to: &str, subject: &str, name: &str, bytes_b64: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "From: Sender <sender@example.jp>\n\
To: {to}\n\
Subject: {subject}\n\
Message-ID: <{n}@example.jp>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b\"\n\
\n\
--b\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<html><body><p>ご確認ください。</p><script>alert(1)</script></body></html>\n\
--b\n\
Content-Type: application/octet-stream\n\
Content-Disposition: attachment; filename*=UTF-8''{encoded}\n\
Content-Transfer-Encoding: base64\n\
\n\
{bytes_b64}\n\
--b\n\
Content-Type: application/pdf\n\
Content-Disposition: attachment; filename=\"mitsumori.pdf\"\n\
Content-Transfer-Encoding: base64\n\
\n\
{pdf}\n\
--b--\n",
        n = subject.len() + to.len() + name.len(),
        pdf = pdf_b64(),
    )
}

/// The messages the `dir` downstream wrote.
fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect()
}

/// Whether the browser test can run here.
fn browser_available() -> Result<(), String> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(p).exists() {
            return Err(format!(
                "{p} is missing (apt-get install chromium chromium-driver)"
            ));
        }
    }
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import selenium"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err("python3 selenium is missing (apt-get install python3-selenium)".into());
    }
    Ok(())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

#[test]
fn console_review_and_release_in_a_browser() {
    if let Err(why) = browser_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser test cannot run under CI: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let http_port = free_port();
    let out = dir.path().join("out");
    let audit = dir.path().join("audit.jsonl");
    let config = format!(
        "[pool]\nworkers = 2\n\
         [quarantine]\ndir = {q:?}\nkey_file = {k:?}\n\
         [smtp]\nlisten = [\"127.0.0.1:{smtp_port}\"]\nhostname = \"mugai.test\"\n\
         accepted_domains = [\"city.example.lg.jp\"]\n\
         [downstream]\nkind = \"dir\"\ndir = {out:?}\n\
         [dropdir]\nenabled = false\n\
         [http]\nenabled = true\nlisten = \"127.0.0.1:{http_port}\"\nusers_file = {u:?}\n\
         released_dir = {r:?}\nconsole_idle_secs = 600\n\
         [audit]\nfile = {audit:?}\n\
         [log]\nfile = {l:?}\nlevel = \"info\"\n",
        q = dir.path().join("quarantine"),
        k = dir.path().join("quarantine.key"),
        u = dir.path().join("users.sqlite"),
        r = dir.path().join("released"),
        l = dir.path().join("mugai.log"),
    );
    let path = dir.path().join("mugai.toml");
    std::fs::write(&path, config).unwrap();
    mugai_user(
        dir.path(),
        &path,
        &["add", "staff", "--role", "requester", "--address", STAFF],
    );
    mugai_user(
        dir.path(),
        &path,
        &["add", "other", "--role", "requester", "--address", OTHER],
    );
    mugai_user(dir.path(), &path, &["add", "kacho", "--role", "approver"]);
    mugai_user(dir.path(), &path, &["add", "admin", "--role", "admin"]);
    let mut child = Command::new(MUGAI)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", http_port)).is_err()
        || TcpStream::connect(("127.0.0.1", smtp_port)).is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("mugai serve exited ({status}): {err}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no listener");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _serve = Proc(child);

    // "MZ" and a PE-looking header: an executable by content and by name.
    let exe = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=";
    send(
        smtp_port,
        STAFF,
        &mail(STAFF, "=?UTF-8?B?6KuL5rGC5pu4?=", "seikyu.exe", exe),
    );
    send(
        smtp_port,
        STAFF,
        &mail(
            STAFF,
            // "<script>alert(1)</script> 請求書\u{202E}fdp.exe"
            "=?UTF-8?B?PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0PiDoq4vmsYLmm7jigK5mZHAuZXhl?=",
            "invoice\u{202E}fdp.exe",
            exe,
        ),
    );
    send(
        smtp_port,
        OTHER,
        &mail(OTHER, "for someone else", "other.exe", exe),
    );
    assert_eq!(
        eml_files(&out).len(),
        3,
        "three sanitized messages delivered"
    );

    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console.py");
    let started = Instant::now();
    let run = Command::new("/usr/bin/python3")
        .arg(&script)
        .env("MUGAI_BASE", format!("http://127.0.0.1:{http_port}"))
        .env("MUGAI_PASSWORD", PASSWORD)
        .env("MUGAI_SHOTS", &shots)
        .output()
        .unwrap();
    eprintln!(
        "console.py ({:.1} s):\n{}\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the browser script failed");

    // The approval delivered the original, marked, to the dir downstream.
    let released: Vec<String> = eml_files(&out)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .filter(|m| m.contains("X-Mugai-Released: by kacho"))
        .collect();
    assert_eq!(released.len(), 1, "one released original");
    assert!(
        released[0].contains("seikyu.exe") && released[0].contains("TVqQAAMAAAAEAAAA"),
        "the original, attachment and all"
    );

    // Both steps are in the audit log, and its chain holds.
    let log = std::fs::read_to_string(&audit).unwrap();
    for event in ["release_requested", "release_approved"] {
        assert!(log.contains(event), "{event} missing from the audit log");
    }
    assert!(
        !log.contains("release_refused"),
        "the forged approve must leave no decision"
    );
    let verified = Command::new(MUGAI)
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    for page in [
        "login", "list", "detail", "inert", "approver", "audit", "config",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
}
