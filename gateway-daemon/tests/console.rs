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

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Client, eml_files, free_port};

const STAFF: &str = "staff@city.example.lg.jp";
const OTHER: &str = "other@city.example.lg.jp";
const PASSWORD: &str = "correct horse battery staple";

/// Sends `message` to `rcpt` through the relay on `port`; panics unless it is accepted.
fn send(port: u16, rcpt: &str, message: &str) {
    let (mut c, greeting) = Client::connect(port);
    assert_eq!(greeting.0, 220);
    let mut say = |line: &str, want: u16| {
        assert_eq!(c.cmd(line).0, want, "{line}");
    };
    say("EHLO sender.example.jp", 250);
    say("MAIL FROM:<sender@example.jp>", 250);
    say(&format!("RCPT TO:<{rcpt}>"), 250);
    say("DATA", 354);
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
    say(&data, 250);
    say("QUIT", 221);
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
        "{base}\
         [smtp]\nlisten = [\"127.0.0.1:{smtp_port}\"]\nhostname = \"mugai.test\"\n\
         accepted_domains = [\"city.example.lg.jp\"]\n\
         [downstream]\nkind = \"dir\"\ndir = {out:?}\n\
         [dropdir]\nenabled = false\n\
         [http]\nenabled = true\nlisten = \"127.0.0.1:{http_port}\"\nusers_file = {u:?}\n\
         released_dir = {r:?}\nconsole_idle_secs = 600\n",
        base = common::config_logged(dir.path()),
        u = dir.path().join("users.sqlite"),
        r = dir.path().join("released"),
    );
    let path = common::write_config(dir.path(), &config);
    // Each user with PASSWORD, given on standard input.
    let add_user = |args: &[&str]| {
        let args = [args, &["--password-stdin"]].concat();
        common::mugai_user(dir.path(), &path, &args, Some(PASSWORD));
    };
    add_user(&["add", "staff", "--role", "requester", "--address", STAFF]);
    add_user(&["add", "other", "--role", "requester", "--address", OTHER]);
    add_user(&["add", "kacho", "--role", "approver"]);
    add_user(&["add", "admin", "--role", "admin"]);
    let _serve = common::serve(dir.path(), &path, &[http_port, smtp_port]);

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
    let verified = common::audit_verify(&audit);
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
