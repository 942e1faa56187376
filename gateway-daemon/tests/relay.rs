//! End-to-end tests of `mugai serve` as an SMTP relay, with real peers on loopback: swaks and
//! Postfix's `smtp-source` as the upstream, `smtp-sink` (or a small scripted server where a
//! per-recipient answer is needed) as the downstream, Python's `email` package to re-parse
//! what arrived. `.ci/run` installs postfix (for smtp-source/smtp-sink), swaks with its TLS
//! modules, openssl and python3.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test may panic: that is its failure report"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, MUGAI, Proc, eml_files, free_port};

/// Fails loudly when a tool the test needs is missing (CI installs all of them).
fn need(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed (bash .ci/run installs the test tools)");
}

/// A running `mugai serve` with its own data folder.
struct Mugai {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    proc: Proc,
}

/// What goes in a test configuration besides the fixed parts.
#[derive(Default)]
struct Setup<'a> {
    /// Extra `[smtp]` keys.
    smtp: &'a str,
    /// The `[downstream]` table body; default: a directory.
    downstream: Option<String>,
    /// Extra `[policy.limits]` keys.
    limits: &'a str,
    /// Run the HTTP API on this loopback port (off otherwise).
    http: Option<u16>,
}

impl Setup<'_> {
    /// Relays to an SMTP server on the loopback `port`, without TLS; `extra` adds
    /// `[downstream]` keys (each line ending in a newline).
    fn to_smtp(port: u16, extra: &str) -> Self {
        Setup {
            downstream: Some(format!(
                "kind = \"smtp\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\n{extra}"
            )),
            ..Setup::default()
        }
    }
}

impl Mugai {
    fn start(setup: Setup<'_>) -> Mugai {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let downstream = setup
            .downstream
            .unwrap_or_else(|| format!("kind = \"dir\"\ndir = {:?}\n", dir.path().join("out")));
        let config = format!(
            "{base}\
             [smtp]\nlisten = [\"127.0.0.1:{port}\"]\nhostname = \"mugai.test\"\n\
             accepted_domains = [\"city.example.lg.jp\"]\nshutdown_grace_secs = 10\n{smtp}\n\
             {http}\
             [dropdir]\nenabled = false\n\
             [downstream]\n{downstream}\n\
             [policy.limits]\n{limits}\n",
            base = common::config_logged(dir.path()),
            http = match setup.http {
                Some(p) => format!(
                    "[http]\nlisten = \"127.0.0.1:{p}\"\nusers_file = {:?}\n",
                    dir.path().join("users.sqlite")
                ),
                None => "[http]\nenabled = false\n".to_owned(),
            },
            smtp = setup.smtp,
            limits = setup.limits,
        );
        let path = common::write_config(dir.path(), &config);
        let proc = common::serve(dir.path(), &path, &[port]);
        Mugai {
            dir,
            port,
            config: path,
            proc,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn log(&self) -> String {
        common::log(self.dir.path())
    }

    /// The delivered messages (directory downstream), sorted by name.
    fn delivered(&self) -> Vec<PathBuf> {
        eml_files(&self.out())
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        common::signal(&self.proc.0, sig);
    }

    /// A session that has said EHLO, MAIL FROM a@example.com and RCPT TO the staff address,
    /// each answered 250.
    fn staff_session(&self) -> Client {
        let (mut c, _) = Client::connect(self.port);
        assert_eq!(c.cmd("EHLO client.example").0, 250);
        assert_eq!(c.cmd("MAIL FROM:<a@example.com>").0, 250);
        assert_eq!(c.cmd("RCPT TO:<staff@city.example.lg.jp>").0, 250);
        c
    }

    /// [`HTML_MAIL`] sent with swaks from sender@example.com to the staff address.
    fn swaks_html_mail(&self) -> std::process::Output {
        let mail = self.dir.path().join("in.eml");
        std::fs::write(&mail, HTML_MAIL).unwrap();
        swaks(
            self.port,
            &[
                "--from",
                "sender@example.com",
                "--to",
                "staff@city.example.lg.jp",
                "--data",
                &format!("@{}", mail.display()),
            ],
        )
    }
}

/// Files smtp-sink dumped in `dir` (each one message, with its envelope as `X-` lines first).
fn dumped(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// `smtp-sink` on a free port, dumping each message into `dir`.
fn smtp_sink(dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    smtp_sink_on(dir, port, extra)
}

fn smtp_sink_on(dir: &Path, port: u16, extra: &[&str]) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(need("smtp-sink"));
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-u", "root"]);
    }
    let child = cmd
        .args(extra)
        .arg("-d")
        .arg(format!("{}/%Y%m%d%H%M%S.", dir.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("64")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sink = Proc(child);
    common::wait_listening(
        &[port],
        "smtp-sink",
        Duration::from_secs(60),
        Some(&mut sink.0),
        String::new,
    );
    (sink, port)
}

/// What Python's `email` package reads from a message file.
fn parse(path: &Path) -> serde_json::Value {
    let script = r#"
import email, email.policy, json, sys
raw = open(sys.argv[1], 'rb').read()
# smtp-sink dumps start with X-... envelope lines; they are header lines too.
m = email.message_from_bytes(raw, policy=email.policy.default)
parts = [p.get_content_type() for p in m.walk()]
body = m.get_body(preferencelist=('plain',))
text = body.get_content() if body is not None else ''
print(json.dumps({'types': parts, 'text': text,
  'received': m.get_all('Received') or [],
  'report_id': m.get('X-Mugai-Report-Id'), 'subject': m.get('Subject'),
  'defects': [str(d) for p in m.walk() for d in p.defects]}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 could not parse {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn swaks(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(need("swaks"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "60"])
        .args(args)
        .output()
        .unwrap()
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

const HTML_MAIL: &str = "From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\n\
Subject: =?ISO-2022-JP?B?GyRCOCtAUT1xJE4kNDBGRmIbKEI=?=\r\nMessage-ID: <html-1@example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>\u{898b}\u{7a4d}\u{66f8}</p><a href=\"http://evil.example/x\">click</a>\
<script>alert(1)</script></body></html>\r\n";

#[test]
fn html_mail_from_swaks_arrives_as_text_with_the_notice() {
    let m = Mugai::start(Setup::default());
    let out = m.swaks_html_mail();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains("250 2.0.0 Ok: queued as"),
        "{transcript}"
    );
    let files = m.delivered();
    assert_eq!(files.len(), 1, "{files:?}");
    let parsed = parse(&files[0]);
    let types = parsed["types"].as_array().unwrap();
    assert!(
        types.iter().all(|t| t != "text/html"),
        "an HTML part crossed: {types:?}"
    );
    let text = parsed["text"].as_str().unwrap();
    assert!(text.contains("無害化"), "no Japanese notice: {text}");
    assert!(text.contains("見積書"), "body text lost: {text}");
    assert!(!text.contains("alert(1)"), "{text}");
    assert!(parsed["report_id"].is_string(), "{parsed}");
    assert_eq!(parsed["subject"], "見積書のご案内", "{parsed}");
    let received = parsed["received"].as_array().unwrap();
    let ours = received[0].as_str().unwrap();
    assert!(
        ours.contains("by mugai.test (Mugai) with ESMTP id") && ours.contains("[127.0.0.1]"),
        "{ours}"
    );
    // The envelope rides beside it.
    let sidecar = std::fs::read_dir(m.out())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".envelope.json"))
        .expect("envelope sidecar");
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert!(
        env.to_string().contains("staff@city.example.lg.jp"),
        "{env}"
    );
    // The original is in the quarantine, encrypted, and findable by its report id.
    let report_id = parsed["report_id"].as_str().unwrap();
    let show = Command::new(MUGAI)
        .args(["quarantine", "show", "--config"])
        .arg(&m.config)
        .arg(m.dir.path().join("quarantine"))
        .arg(report_id)
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let q = m.dir.path().join("quarantine");
    let stored = common::files(&q)
        .into_iter()
        .map(|f| q.join(f))
        .find(|p| p.file_name().is_some_and(|n| n == "original"))
        .expect("original stored");
    let bytes = std::fs::read(stored).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"<html>"),
        "the original is stored in clear"
    );
    // One audit line, and its chain verifies.
    let audit = std::fs::read_to_string(m.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(audit.contains(report_id), "{audit}");
    let verify = common::audit_verify(&m.dir.path().join("audit.jsonl"));
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn never_an_open_relay_and_only_configured_clients() {
    let m = Mugai::start(Setup::default());
    let (mut c, greeting) = Client::connect(m.port);
    assert_eq!(greeting.0, 220, "{greeting:?}");
    assert_eq!(c.cmd("EHLO client.example").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").0, 250);
    let r = c.cmd("RCPT TO:<someone@elsewhere.example>");
    assert_eq!(r.0, 550, "{r:?}");
    assert!(r.1.contains("5.7.1"), "{r:?}");
    let r = c.cmd("RCPT TO:<staff@sub.city.example.lg.jp>");
    assert_eq!(r.0, 550, "a subdomain is not accepted unless listed: {r:?}");
    assert_eq!(c.cmd("RCPT TO:<staff@CITY.example.lg.jp>").0, 250);
    assert_eq!(c.cmd("VRFY staff").0, 252);
    assert_eq!(c.cmd("QUIT").0, 221);

    let closed = Mugai::start(Setup {
        smtp: "client_networks = [\"192.0.2.0/24\"]",
        ..Setup::default()
    });
    let (mut c, greeting) = Client::connect(closed.port);
    assert_eq!(greeting.0, 554, "{greeting:?}");
    assert!(greeting.1.contains("5.7.1"), "{greeting:?}");
    assert_eq!(c.reply().0, 0, "the connection is closed after 554");
    assert!(closed.delivered().is_empty());
}

#[test]
fn limits_answer_with_their_codes() {
    let m = Mugai::start(Setup {
        smtp: "max_message_bytes = 4096\nmax_recipients = 2",
        ..Setup::default()
    });
    let (mut c, _) = Client::connect(m.port);
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.1.contains("SIZE 4096"), "{ehlo:?}");
    assert!(ehlo.1.contains("PIPELINING") && ehlo.1.contains("8BITMIME"));
    let r = c.cmd("MAIL FROM:<a@example.com> SIZE=5000");
    assert_eq!(r.0, 552, "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@example.com> SIZE=100").0, 250);
    assert_eq!(c.cmd("RCPT TO:<a@city.example.lg.jp>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@city.example.lg.jp>").0, 250);
    let r = c.cmd("RCPT TO:<c@city.example.lg.jp>");
    assert_eq!(r.0, 452, "{r:?}");
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(b"Subject: big\r\n\r\n");
    for _ in 0..100 {
        c.send(&[b'x'; 98]);
        c.send(b"\r\n");
    }
    let r = c.cmd(".");
    assert_eq!(r.0, 552, "{r:?}");
    // The session carries on after a refused message.
    assert_eq!(c.cmd("NOOP").0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);
    assert!(m.delivered().is_empty());
}

#[test]
fn smuggled_end_markers_never_end_the_message() {
    let m = Mugai::start(Setup::default());
    let mut c = m.staff_session();
    assert_eq!(c.cmd("DATA").0, 354);
    let mut data = b"From: a@example.com\r\nSubject: smuggle\r\n\r\nbefore\r\n".to_vec();
    for marker in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r\n"] {
        data.extend_from_slice(marker);
        data.extend_from_slice(
            b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@city.example.lg.jp>\r\nDATA\r\n\
              From: ceo@city.example.lg.jp\r\n\r\nsmuggled\r\n",
        );
    }
    data.extend_from_slice(b"after\r\n.\r\n");
    c.send(&data);
    let r = c.reply();
    assert_eq!(r.0, 250, "{r:?}");
    // Nothing after the fake markers was read as a command: the next reply is for QUIT.
    assert_eq!(c.cmd("QUIT").0, 221);
    let files = m.delivered();
    assert_eq!(files.len(), 1, "exactly one message: {files:?}");
    let text = parse(&files[0])["text"].as_str().unwrap().to_owned();
    assert!(text.contains("before") && text.contains("after"), "{text}");
    assert!(
        text.contains("smuggled"),
        "the smuggled lines stay body text: {text}"
    );
}

#[test]
fn starttls_and_pipelining_with_swaks() {
    let d = tempfile::tempdir().unwrap();
    let cert = d.path().join("cert.pem");
    let key = d.path().join("key.pem");
    let ok = Command::new(need("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=mugai.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let m = Mugai::start(Setup {
        smtp: &format!("tls_cert = {cert:?}\ntls_key = {key:?}"),
        ..Setup::default()
    });
    let common = [
        "--from",
        "a@example.com",
        "--to",
        "staff@city.example.lg.jp",
        "--header",
        "Subject: tls",
    ];
    let out = swaks(m.port, &[&common[..], &["-tls"]].concat());
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{t}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.contains("TLS started"), "{t}");
    let out = swaks(m.port, &[&common[..], &["--pipeline"]].concat());
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{t}");
    let files = m.delivered();
    assert_eq!(files.len(), 2, "{files:?}");
    let withs: Vec<String> = files
        .iter()
        .map(|f| parse(f)["received"][0].as_str().unwrap().to_owned())
        .collect();
    assert!(withs.iter().any(|r| r.contains("with ESMTPS")), "{withs:?}");
    assert!(
        withs.iter().any(|r| r.contains("with ESMTP id")),
        "{withs:?}"
    );
    // Plaintext sent after STARTTLS is discarded, not executed inside TLS.
    let (mut c, _) = Client::connect(m.port);
    assert_eq!(c.cmd("EHLO client.example").0, 250);
    let r = c.cmd("STARTTLS\r\nMAIL FROM:<injected@example.com>");
    assert_eq!(r.0, 220, "{r:?}");
}

#[test]
fn smtp_source_to_smtp_sink_through_mugai() {
    let sink_dir = tempfile::tempdir().unwrap();
    let (_sink, sink_port) = smtp_sink(sink_dir.path(), &[]);
    let m = Mugai::start(Setup::to_smtp(sink_port, ""));
    let out = Command::new(need("smtp-source"))
        .args(["-s", "4", "-m", "12", "-l", "2048", "-f", "a@example.com"])
        .args(["-t", "staff@city.example.lg.jp"])
        .arg(format!("127.0.0.1:{}", m.port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("12 messages at the sink", 30, || {
        dumped(sink_dir.path()).len() >= 12
    });
    let files = dumped(sink_dir.path());
    assert_eq!(files.len(), 12);
    for f in &files {
        let p = parse(f);
        assert!(p["report_id"].is_string(), "{}: {p}", f.display());
    }
}

#[test]
fn downstream_rejects_and_outages_reach_the_sender() {
    // Nothing listens downstream: 451 at MAIL, nothing delivered, nothing held.
    let sink_dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let m = Mugai::start(Setup::to_smtp(sink_port, "connect_timeout_secs = 2\n"));
    let args = [
        "--from",
        "a@example.com",
        "--to",
        "staff@city.example.lg.jp",
        "--header",
        "Subject: outage",
    ];
    let out = swaks(m.port, &args);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("451"), "{t}");
    // The sink comes back: the retry is delivered, once.
    let (sink, _) = smtp_sink_on(sink_dir.path(), sink_port, &[]);
    let out = swaks(m.port, &args);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{t}");
    wait_for("the retried message", 10, || {
        !dumped(sink_dir.path()).is_empty()
    });
    assert_eq!(dumped(sink_dir.path()).len(), 1);
    drop(sink);

    // A downstream that refuses every recipient: 5xx at RCPT, in lockstep.
    let reject_dir = tempfile::tempdir().unwrap();
    let (_rejecting, port) = smtp_sink(reject_dir.path(), &["-f", "RCPT"]);
    let m2 = Mugai::start(Setup::to_smtp(port, ""));
    let (mut c, _) = Client::connect(m2.port);
    assert_eq!(c.cmd("EHLO client.example").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").0, 250);
    let r = c.cmd("RCPT TO:<staff@city.example.lg.jp>");
    assert_eq!(r.0 / 100, 5, "{r:?}");
    // A downstream that defers the message: 451 after DATA, nothing delivered.
    let defer_dir = tempfile::tempdir().unwrap();
    let (_deferring, port) = smtp_sink(defer_dir.path(), &["-r", "."]);
    let m3 = Mugai::start(Setup::to_smtp(port, ""));
    let out = swaks(m3.port, &args);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("<** 451"), "{t}");
}

/// A scripted downstream: rejects recipients containing "unknown", counts connections, and
/// drops a client idle for longer than `idle`.
struct Fake {
    port: u16,
    connections: Arc<Mutex<u32>>,
    transcript: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Fake {
    fn start(idle: Duration) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let fake = Fake {
            port,
            connections: Arc::default(),
            transcript: Arc::default(),
            messages: Arc::default(),
        };
        let (conns, log, msgs) = (
            Arc::clone(&fake.connections),
            Arc::clone(&fake.transcript),
            Arc::clone(&fake.messages),
        );
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                *conns.lock().unwrap() += 1;
                let (log, msgs) = (Arc::clone(&log), Arc::clone(&msgs));
                std::thread::spawn(move || fake_session(s, idle, &log, &msgs));
            }
        });
        fake
    }
}

/// A [`Fake`] that drops a client idle for `idle`; a relay to it with `downstream` keys added
/// to its `[downstream]` and `limits` in `[policy.limits]`; and a session through the relay
/// that has reached RCPT TO the staff address ([`Mugai::staff_session`]).
fn through_fake(idle: Duration, downstream: &str, limits: &str) -> (Fake, Mugai, Client) {
    let fake = Fake::start(idle);
    let m = Mugai::start(Setup {
        limits,
        ..Setup::to_smtp(fake.port, downstream)
    });
    let c = m.staff_session();
    (fake, m, c)
}

/// DATA (354), then a message whose text makes the worker spin (the `test-hooks` feature),
/// which must be answered 250; the time from the end of DATA's reply to that 250.
#[cfg(feature = "test-hooks")]
fn spin(c: &mut Client) -> Duration {
    assert_eq!(c.cmd("DATA").0, 354);
    let started = Instant::now();
    let r = c.cmd("Subject: spin\r\n\r\nMUGAI-TEST-HOOK:spin\r\n.");
    assert_eq!(r.0, 250, "{r:?}");
    started.elapsed()
}

fn fake_session(
    s: TcpStream,
    idle: Duration,
    log: &Mutex<Vec<String>>,
    msgs: &Mutex<Vec<Vec<u8>>>,
) {
    s.set_read_timeout(Some(idle)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 fake ESMTP\r\n");
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => {
                // Idle too long (or closed): drop the client like a loaded MTA does.
                log.lock().unwrap().push("DROPPED".into());
                return;
            }
            Ok(_) => {}
        }
        let cmd = line.trim_end().to_owned();
        log.lock().unwrap().push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-fake\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("RCPT") && upper.contains("UNKNOWN") {
            b"550 5.1.1 No such user here\r\n"
        } else if upper.starts_with("DATA") {
            let _ = w.write_all(b"354 go\r\n");
            let mut msg = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                msg.extend_from_slice(&l);
            }
            msgs.lock().unwrap().push(msg);
            b"250 2.0.0 accepted\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 2.0.0 ok\r\n"
        };
        if w.write_all(reply).is_err() {
            return;
        }
    }
}

#[test]
fn per_recipient_answers_in_lockstep() {
    let (fake, _m, mut c) = through_fake(Duration::from_secs(30), "", "");
    let r = c.cmd("RCPT TO:<unknown@city.example.lg.jp>");
    assert_eq!(r.0, 550, "{r:?}");
    assert!(
        r.1.contains("5.1.1"),
        "the downstream's reason reaches the sender: {r:?}"
    );
    assert_eq!(c.cmd("DATA").0, 354);
    let r = c.cmd("Subject: hi\r\n\r\nhello\r\n.");
    assert_eq!(r.0, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").0, 221);
    let log = fake.transcript.lock().unwrap().clone();
    let rcpts: Vec<&String> = log.iter().filter(|l| l.starts_with("RCPT")).collect();
    assert_eq!(rcpts.len(), 2, "{log:?}");
    assert_eq!(fake.messages.lock().unwrap().len(), 1);
}

/// A sanitizer that spins until the worker is killed: the message is delivered as a
/// notice-only message (never 451), and the downstream session, whose idle timeout is shorter
/// than the sanitizing time, is kept alive with NOOPs.
#[cfg(feature = "test-hooks")]
#[test]
fn a_killed_sanitizer_delivers_a_notice_and_keepalive_holds_the_downstream() {
    let (fake, _m, mut c) = through_fake(
        Duration::from_secs(2),
        "keepalive_secs = 1\n",
        "deadline_ms = 4000",
    );
    assert!(
        spin(&mut c) >= Duration::from_secs(3),
        "the hook did not run"
    );
    let log = fake.transcript.lock().unwrap().clone();
    assert_eq!(*fake.connections.lock().unwrap(), 1, "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("NOOP")), "{log:?}");
    let msgs = fake.messages.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1);
    let parsed = mail_parser::MessageParser::default()
        .parse(&msgs[0][..])
        .unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    assert!(
        text.contains("worker") || text.contains("deadline"),
        "{text}"
    );
    assert!(!text.contains("MUGAI-TEST-HOOK"), "{text}");
}

/// Without keepalive, the dropped downstream session is re-opened and MAIL/RCPT replayed.
#[cfg(feature = "test-hooks")]
#[test]
fn a_dropped_downstream_session_is_replayed() {
    let (fake, _m, mut c) = through_fake(
        Duration::from_secs(1),
        "keepalive_secs = 0\n",
        "deadline_ms = 3000",
    );
    assert_eq!(c.cmd("RCPT TO:<unknown@city.example.lg.jp>").0, 550);
    spin(&mut c);
    let log = fake.transcript.lock().unwrap().clone();
    assert_eq!(*fake.connections.lock().unwrap(), 2, "{log:?}");
    assert!(log.contains(&"DROPPED".to_owned()), "{log:?}");
    let rcpts = log.iter().filter(|l| l.starts_with("RCPT")).count();
    assert_eq!(rcpts, 3, "the refused recipient is not replayed: {log:?}");
    assert_eq!(fake.messages.lock().unwrap().len(), 1);
}

#[test]
fn sigterm_finishes_the_transaction_in_flight_and_sighup_keeps_a_good_policy() {
    let m = Mugai::start(Setup::default());
    // SIGHUP with a broken policy: refused, the relay keeps working.
    let good = std::fs::read_to_string(&m.config).unwrap();
    std::fs::write(&m.config, format!("{good}\n[policy.pdf]\ndpi = 5\n")).unwrap();
    m.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the refusal in the log", 20, || {
        m.log().contains("new policy refused")
    });
    std::fs::write(&m.config, &good).unwrap();
    m.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload in the log", 20, || {
        m.log().contains("policy reloaded")
    });

    let mut busy = m.staff_session();
    let (mut idle, _) = Client::connect(m.port);
    assert_eq!(idle.cmd("EHLO idle.example").0, 250);
    m.signal(nix::sys::signal::Signal::SIGTERM);
    // The idle session is told to come back later.
    let r = idle.reply();
    assert_eq!(r.0, 421, "{r:?}");
    // The one in flight finishes.
    assert_eq!(busy.cmd("DATA").0, 354);
    assert_eq!(busy.cmd("Subject: last\r\n\r\nlast one\r\n.").0, 250);
    let r = busy.reply();
    assert_eq!(r.0, 421, "then it is closed: {r:?}");
    assert_eq!(m.delivered().len(), 1);
    wait_for("the relay to exit", 20, || {
        TcpStream::connect(("127.0.0.1", m.port)).is_err()
    });
}

/// `mugai user ...` against the daemon's configuration, password on standard input.
fn add_user(m: &Mugai, args: &[&str]) {
    let args = [args, &["--password-stdin"]].concat();
    common::mugai_user(m.dir.path(), &m.config, &args, Some(PASSWORD_LINE));
}

/// The password of the users `add_user` makes.
const PASSWORD: &str = "a long enough password";
/// [`PASSWORD`] as typed on standard input.
const PASSWORD_LINE: &str = "a long enough password\n";

/// POSTs JSON with curl as `user`; the status code and the body.
fn post(port: u16, user: &str, path: &str, body: &str) -> (u16, String) {
    let a = common::request(
        port,
        "POST",
        path,
        common::Auth::Basic(user, PASSWORD),
        Some(body.as_bytes()),
        "application/json",
    );
    (a.status, a.text())
}

#[test]
fn an_approved_release_reaches_the_downstream_mta() {
    let sink_dir = tempfile::tempdir().unwrap();
    let (_sink, sink_port) = smtp_sink(sink_dir.path(), &[]);
    let http = free_port();
    let m = Mugai::start(Setup {
        http: Some(http),
        ..Setup::to_smtp(sink_port, "")
    });
    add_user(
        &m,
        &[
            "add",
            "staff",
            "--role",
            "requester",
            "--address",
            "staff@city.example.lg.jp",
        ],
    );
    add_user(&m, &["add", "kacho", "--role", "approver"]);
    let out = m.swaks_html_mail();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("the sanitized message", 20, || {
        dumped(sink_dir.path()).len() == 1
    });
    let first = dumped(sink_dir.path());
    let report_id = parse(&first[0])["report_id"].as_str().unwrap().to_owned();
    let ask = format!("/v1/quarantine/{report_id}/requests");
    let decide = format!("/v1/quarantine/{report_id}/release");
    let (code, body) = post(
        http,
        "staff",
        &ask,
        r#"{"reason": "the table layout is needed"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let approve = r#"{"decision": "approve", "reason": "sender confirmed by phone"}"#;
    let (code, body) = post(http, "staff", &decide, approve);
    assert_eq!(code, 403, "the requester cannot approve: {body}");
    let (code, body) = post(http, "kacho", &decide, approve);
    assert_eq!(code, 200, "{body}");
    wait_for("the released original", 20, || {
        dumped(sink_dir.path()).len() == 2
    });
    let released = dumped(sink_dir.path())
        .into_iter()
        .find(|p| !first.contains(p))
        .unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(&released).unwrap()).into_owned();
    assert!(text.contains("X-Mugai-Released: by kacho"), "{text}");
    assert!(
        text.contains("<script>alert(1)</script>"),
        "the original, as received: {text}"
    );
    assert!(text.contains("staff@city.example.lg.jp"), "{text}");
    let audit = std::fs::read_to_string(m.dir.path().join("audit.jsonl")).unwrap();
    for kind in ["release_requested", "release_approved", "release_delivered"] {
        assert!(audit.contains(&format!("\"{kind}\"")), "{kind}: {audit}");
    }
}
