//! End-to-end tests of `mugai serve`'s HTTP API: a real daemon on a loopback port (SMTP and
//! the drop directory off), users made with `mugai user`, requests made with curl, and
//! `/metrics` parsed by Python's `prometheus_client` (`.ci/run` installs curl, python3 and
//! python3-prometheus-client).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test may panic: that is its failure report"
)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Answer, Auth, MUGAI, Proc, free_port};

/// A running `mugai serve` with its own data folder.
struct Mugai {
    dir: tempfile::TempDir,
    port: u16,
    proc: Proc,
}

impl Mugai {
    /// Starts the daemon with `http_extra` keys in `[http]`; `users` is run first with
    /// `mugai user ...` against the same configuration.
    fn start(http_extra: &str, users: &[(&[&str], Option<&str>)]) -> (Mugai, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "{base}\
             [smtp]\nenabled = false\n\
             [dropdir]\nenabled = false\n\
             [http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nusers_file = {u:?}\n{http_extra}\n",
            base = common::config_logged(dir.path()),
            u = dir.path().join("users.sqlite"),
        );
        let path = common::write_config(dir.path(), &config);
        let outputs = users
            .iter()
            .map(|(args, stdin)| common::mugai_user(dir.path(), &path, args, *stdin))
            .collect();
        let proc = common::serve(dir.path(), &path, &[port]);
        (Mugai { dir, port, proc }, outputs)
    }

    /// Starts the daemon with `http_extra` keys in `[http]` and one user, the requester
    /// `scanner`, who has a token; the token.
    fn with_scanner(http_extra: &str) -> (Mugai, String) {
        let (m, out) = Mugai::start(
            http_extra,
            &[
                (&["add", "scanner", "--role", "requester"], None),
                (&["token", "scanner"], None),
            ],
        );
        (m, out[1].trim().to_owned())
    }

    /// A request with curl; `body` is sent as is (`--data-binary`).
    fn request(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<&[u8]>) -> Answer {
        common::request(
            self.port,
            method,
            path,
            auth,
            body,
            "application/octet-stream",
        )
    }

    /// `GET PATH`.
    fn get(&self, path: &str, auth: Auth<'_>) -> Answer {
        self.request("GET", path, auth, None)
    }

    /// `POST /v1/sanitize?QUERY` with `body`.
    fn sanitize(&self, query: &str, auth: Auth<'_>, body: &[u8]) -> Answer {
        self.request("POST", &format!("/v1/sanitize?{query}"), auth, Some(body))
    }

    /// A sanitize request's head, sent by hand to `target` with a body of `length` bytes
    /// announced, and only `sent` of them: the connection, held open.
    fn partial_upload(&self, target: &str, token: &str, length: usize, sent: &str) -> TcpStream {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            conn,
            "POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {length}\r\n\r\n{sent}"
        )
        .unwrap();
        conn
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }
}

const ALICE: &str = "alice@city.example.lg.jp";
const BOB: &str = "bob@city.example.lg.jp";

/// The password of the users made with `--password-stdin`, and as typed there.
const PASSWORD: &str = "a long enough password";
const PASSWORD_LINE: Option<&str> = Some("a long enough password\n");

/// A `mugai user` run for [`Mugai::start`]: its arguments and standard input.
type UserRun = (&'static [&'static str], Option<&'static str>);
/// `alice`, a requester for [`ALICE`], without a password.
const ADD_ALICE: UserRun = (
    &["add", "alice", "--role", "requester", "--address", ALICE],
    None,
);
/// A token for `alice` (the run's output).
const ALICE_TOKEN: UserRun = (&["token", "alice"], None);
/// `boss`, an approver with [`PASSWORD`].
const ADD_BOSS: UserRun = (
    &["add", "boss", "--role", "approver", "--password-stdin"],
    PASSWORD_LINE,
);
const HTML: &[u8] =
    b"<html><body><script>alert('x')</script><p>Hello \xe4\xb8\x96\xe7\x95\x8c</p></body></html>";
const EXE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00 this is not a PDF";

/// The samples of `/metrics` as Python's prometheus_client parses them:
/// `name{label="v",...}` (labels sorted) → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, s.value))
"#;
    // The Debian interpreter, which python3-prometheus-client is installed for (a python3
    // earlier in PATH, e.g. pyenv's, would not see it).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (install python3-prometheus-client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn sanitize_reports_quarantine_roles_and_metrics() {
    let (m, out) = Mugai::start(
        "max_body_bytes = 1048576\n",
        &[
            ADD_ALICE,
            ALICE_TOKEN,
            (
                &[
                    "add",
                    "bob",
                    "--role",
                    "requester",
                    "--address",
                    BOB,
                    "--password-stdin",
                ],
                PASSWORD_LINE,
            ),
            ADD_BOSS,
            (&["list"], None),
        ],
    );
    let alice = out[1].trim().to_owned();
    assert!(alice.starts_with("mugai_"), "{alice}");
    assert!(out[4].contains("alice\trequester\tpassword=no\ttoken=yes\talice@city.example.lg.jp"));

    assert_eq!(m.get("/healthz", Auth::None).status, 200);
    let ready = m.get("/readyz", Auth::None);
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );

    // No credentials, or a wrong token: 401 with a challenge.
    let a = m.sanitize("filename=a.html", Auth::None, HTML);
    assert_eq!(a.status, 401);
    assert!(
        a.headers["www-authenticate"]
            .iter()
            .any(|v| v.starts_with("Bearer"))
    );
    let a = m.get("/v1/quarantine", Auth::Token("mugai_00"));
    assert_eq!(a.status, 401);

    // HTML → text, with the headers the contract names.
    let a = m.sanitize(
        "filename=%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B.html",
        Auth::Token(&alice),
        HTML,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let text = String::from_utf8(a.body.clone()).unwrap();
    assert!(
        text.contains("Hello 世界") && !text.contains("alert"),
        "{text}"
    );
    assert!(
        a.header("content-type").starts_with("text/plain"),
        "{:?}",
        a.headers
    );
    assert_eq!(
        a.header("content-disposition"),
        "attachment; filename=\"____.txt\"; filename*=UTF-8''%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B.txt"
    );
    assert_eq!(a.header("x-mugai-verdict"), "sanitized");
    let html_id = a.header("x-mugai-report-id").to_owned();
    assert!(!html_id.is_empty());

    // The report, for its maker only (and approvers).
    let r = m.get(&format!("/v1/reports/{html_id}"), Auth::Token(&alice));
    assert_eq!(r.status, 200);
    let report = r.json();
    assert_eq!(report["id"], html_id.as_str());
    assert_eq!(report["verdict"], "sanitized");
    assert!(report["quarantine_id"].is_string(), "held: {report}");
    assert_eq!(
        m.get(&format!("/v1/reports/{html_id}"), bob_auth()).status,
        404
    );
    assert_eq!(m.get(&format!("/v1/reports/{html_id}"), boss()).status, 200);
    assert_eq!(m.get("/v1/reports/nope", Auth::Token(&alice)).status, 404);

    // An executable is blocked: 422 with the report.
    let a = m.sanitize("filename=invoice.pdf", Auth::Token(&alice), EXE);
    assert_eq!(a.status, 422);
    let blocked = a.json();
    assert_eq!(blocked["verdict"], "blocked");
    assert!(blocked["output"].is_null());
    assert!(blocked["quarantine_id"].is_string());
    let exe_id = blocked["id"].as_str().unwrap().to_owned();
    assert_eq!(a.header("x-mugai-report-id"), exe_id);

    // format=json carries the report and the output.
    let a = m.sanitize("filename=b.html&format=json", bob_auth(), HTML);
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(j["report"]["verdict"], "sanitized");
    let b64 = j["output_base64"].as_str().unwrap();
    assert!(!b64.is_empty());
    let bob_id = j["report"]["id"].as_str().unwrap().to_owned();

    // A message: never 422, the safe message back.
    let mail = format!(
        "From: x@example.com\r\nTo: {ALICE}\r\nSubject: test\r\nMessage-ID: <1@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>hi</p><script>alert(1)</script>\r\n"
    );
    let a = m.request(
        "POST",
        "/v1/sanitize/mail",
        Auth::Token(&alice),
        Some(mail.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), "message/rfc822");
    assert!(!String::from_utf8_lossy(&a.body).contains("<script"));
    let mail_id = a.header("x-mugai-report-id").to_owned();

    // Over the body limit: 413, whatever the content.
    let big = vec![b'a'; 2 << 20];
    let a = m.sanitize("filename=big.txt", Auth::Token(&alice), &big);
    assert_eq!(a.status, 413);

    // A requester sees only items addressed to them, and never originals.
    let a = m.get("/v1/quarantine", Auth::Token(&alice));
    assert_eq!(a.status, 200);
    let list = a.json();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["report_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{list}");
    for id in [&html_id, &exe_id, &mail_id] {
        assert!(ids.contains(&id.as_str()), "{id} missing from {ids:?}");
    }
    assert!(!ids.contains(&bob_id.as_str()));
    assert_eq!(list["total"], 3);
    let a = m.get("/v1/quarantine?verdict=blocked", Auth::Token(&alice));
    assert_eq!(a.json()["items"][0]["report_id"], exe_id.as_str());
    let a = m.get(&format!("/v1/quarantine/{bob_id}"), Auth::Token(&alice));
    assert_eq!(a.status, 404, "another requester's item is invisible");
    let a = m.get(&format!("/v1/quarantine/{exe_id}"), Auth::Token(&alice));
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["report"]["verdict"], "blocked");
    assert_eq!(a.json()["file_name"], "invoice.pdf");
    let a = m.get(
        &format!("/v1/quarantine/{exe_id}/original"),
        Auth::Token(&alice),
    );
    assert_eq!(a.status, 403);

    // An approver sees everything and may download originals, which is audited.
    let a = m.get("/v1/quarantine?limit=10", boss());
    assert_eq!(a.json()["total"], 4, "{}", a.json());
    let a = m.get(&format!("/v1/quarantine/{exe_id}/original"), boss());
    assert_eq!(a.status, 200);
    assert_eq!(a.body, EXE);
    assert_eq!(a.header("content-type"), "application/octet-stream");
    assert!(a.header("content-disposition").starts_with("attachment;"));
    let audit = m.audit();
    let event = audit
        .lines()
        .find(|l| l.contains("\"original_downloaded\""))
        .expect("audited");
    assert!(
        event.contains("\"user\":\"boss\"") && event.contains(&exe_id),
        "{event}"
    );
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"kind\":\"message\""))
            .count(),
        4,
        "one audit line per sanitize request"
    );
    assert_eq!(m.get("/v1/quarantine?since=yesterday", boss()).status, 400);

    // Metrics: loopback needs no credentials; the counts match what was done.
    let a = m.get("/metrics", Auth::None);
    assert_eq!(a.status, 200);
    let metrics = parse_metrics(&String::from_utf8(a.body).unwrap());
    let get = |k: &str| {
        *metrics
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing: {metrics:?}"))
    };
    assert_eq!(
        get("mugai_files_total{result=\"sanitized\",source=\"http\"}"),
        2.0
    );
    assert_eq!(
        get("mugai_files_total{result=\"blocked\",source=\"http\"}"),
        1.0
    );
    assert_eq!(
        get("mugai_messages_total{result=\"sanitized\",source=\"http\"}"),
        1.0
    );
    assert!(get("mugai_threats_total{threat=\"html.script\"}") >= 2.0);
    assert_eq!(
        get("mugai_sanitize_duration_seconds_count{source=\"http\"}"),
        4.0
    );
    assert_eq!(get("mugai_quarantine_items{}"), 4.0);
    assert_eq!(get("mugai_pool_workers{}"), 2.0);
    assert_eq!(
        get("mugai_http_requests_total{code=\"401\",route=\"sanitize\"}"),
        1.0
    );
    assert_eq!(
        get("mugai_http_requests_total{code=\"413\",route=\"sanitize\"}"),
        1.0
    );
    assert_eq!(
        get("mugai_http_requests_total{code=\"422\",route=\"sanitize\"}"),
        1.0
    );
    assert_eq!(get("mugai_auth_failures_total{}"), 1.0);
    assert!(metrics.contains_key("mugai_smtp_sessions_total{}"));
    assert!(
        metrics
            .keys()
            .any(|k| k.starts_with("mugai_items_total{action=\"converted_to_text\",kind=\"html\""))
    );
}

fn bob_auth() -> Auth<'static> {
    Auth::Basic("bob", PASSWORD)
}

fn boss() -> Auth<'static> {
    Auth::Basic("boss", PASSWORD)
}

#[test]
fn failed_logins_are_throttled_per_user_and_address() {
    let pw = Some("the right password\n");
    let (m, _) = Mugai::start(
        "",
        &[
            (
                &["add", "kacho", "--role", "approver", "--password-stdin"],
                pw,
            ),
            (
                &["add", "other", "--role", "requester", "--password-stdin"],
                pw,
            ),
        ],
    );
    let right = || Auth::Basic("kacho", "the right password");
    assert_eq!(m.get("/v1/quarantine", right()).status, 200);
    for i in 0..5 {
        let a = m.get("/v1/quarantine", Auth::Basic("kacho", "guess"));
        assert_eq!(a.status, 401, "attempt {i}");
    }
    let a = m.get("/v1/quarantine", Auth::Basic("kacho", "guess"));
    assert_eq!(a.status, 429);
    let wait: u64 = a.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Locked out even with the right password, and so is this address for everyone.
    assert_eq!(m.get("/v1/quarantine", right()).status, 429);
    let other = Auth::Basic("other", "the right password");
    assert_eq!(m.get("/v1/quarantine", other).status, 429);
    let log = common::log(m.dir.path());
    assert!(
        log.contains("Login failed") && log.contains("kacho"),
        "{log}"
    );
    assert!(!log.contains("guess"), "no passwords in logs");
}

#[test]
fn a_public_address_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(
        dir.path(),
        &format!(
            "[quarantine]\ndir = {q:?}\n[smtp]\nenabled = false\n[dropdir]\nenabled = false\n\
             [http]\nlisten = \"0.0.0.0:{p}\"\nusers_file = {u:?}\n",
            q = dir.path().join("q"),
            u = dir.path().join("users.sqlite"),
            p = free_port(),
        ),
    );
    let out = Command::new(MUGAI)
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.tls_cert"), "{err}");
    let _: PathBuf = path;
}

#[test]
fn concurrency_cap_and_request_timeout_answer_503() {
    let (m, token) = Mugai::with_scanner("max_concurrent = 1\ntimeout_secs = 2\n");
    // A client that sends its headers and then stalls holds the only slot...
    let mut slow = m.partial_upload("/v1/sanitize?filename=a.txt", &token, 100_000, "hello");
    std::thread::sleep(Duration::from_millis(500));
    // ...so the next request is told to come back later.
    let a = m.sanitize("filename=b.txt", Auth::Token(&token), b"hi");
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), "30");
    // Health probes are never refused.
    assert_eq!(m.get("/healthz", Auth::None).status, 200);
    // The stalled request runs out of time: 503, and the slot is free again.
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = slow.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let a = m.sanitize("filename=b.txt", Auth::Token(&token), b"hi");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-mugai-verdict"), "clean");
    assert_eq!(a.body, b"hi");
    // A client that goes away mid-upload frees its slot and leaves the gauge at 0.
    let gone = m.partial_upload("/v1/sanitize", &token, 100, "ab");
    std::thread::sleep(Duration::from_millis(300));
    drop(gone);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = m.get("/metrics", Auth::None);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("\nmugai_http_in_flight 0\n"), "{text}");
    let a = m.sanitize("filename=c.txt", Auth::Token(&token), b"ok");
    assert_eq!(a.status, 200);
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_stops_accepting() {
    let (mut m, token) = Mugai::with_scanner("");
    let mut conn = m.partial_upload("/v1/sanitize?filename=a.txt", &token, 5, "hel");
    std::thread::sleep(Duration::from_millis(300));
    common::signal(&m.proc.0, nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(("127.0.0.1", m.port)).is_err(),
        "still accepting after SIGTERM"
    );
    conn.write_all(b"lo").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    common::wait_exit_ok(&mut m.proc.0, "mugai serve", Duration::from_secs(10));
}

/// A ZipCrypto archive (PPAP) made now with the zip crate's writer.
fn ppap(password: &[u8]) -> Vec<u8> {
    use zip::unstable::write::FileOptionsExt as _;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .with_deprecated_encryption(password)
        .unwrap();
    w.start_file("agenda.html", o).unwrap();
    w.write_all(b"<p>agenda</p><script>evil()</script>")
        .unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn release_endpoints_keep_two_people_and_unlock_ppap() {
    let (m, out) = Mugai::start("", &[ADD_ALICE, ALICE_TOKEN, ADD_BOSS]);
    let alice = out[1].trim().to_owned();
    let a = m.sanitize("filename=page.html", Auth::Token(&alice), HTML);
    assert_eq!(a.status, 200);
    let id = a.header("x-mugai-report-id").to_owned();
    let path = |tail: &str| format!("/v1/quarantine/{id}/{tail}");

    // A reason is required; then the request is made, once.
    let r = m.request("POST", &path("requests"), Auth::Token(&alice), Some(b"{}"));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let ask = br#"{"reason": "the layout matters for the council"}"#;
    let r = m.request("POST", &path("requests"), Auth::Token(&alice), Some(ask));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["request"]["state"], "pending");
    let r = m.request("POST", &path("requests"), Auth::Token(&alice), Some(ask));
    assert_eq!(r.status, 409);
    let r = m.get(&path("requests"), Auth::Token(&alice));
    assert_eq!(r.json()["requests"].as_array().unwrap().len(), 1);

    // The requester cannot decide; the approver can.
    let approve = br#"{"decision": "approve", "reason": "checked with the sender"}"#;
    let r = m.request("POST", &path("release"), Auth::Token(&alice), Some(approve));
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = m.request(
        "POST",
        &path("release"),
        boss(),
        Some(b"{\"decision\": \"maybe\"}"),
    );
    assert_eq!(r.status, 400);
    let r = m.request("POST", &path("release"), boss(), Some(approve));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["request"]["state"], "approved");
    assert_eq!(v["request"]["decided_by"], "boss");
    let written = v["delivered_to"].as_str().unwrap().to_owned();
    let released = m.dir.path().join("mugai-data/outbox/released");
    let files: Vec<_> = std::fs::read_dir(&released)
        .unwrap_or_else(|e| panic!("{}: {e} (delivered to {written})", released.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?} ({written})");
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        HTML,
        "the original, as it came"
    );
    let r = m.request("POST", &path("release"), boss(), Some(approve));
    assert_eq!(
        r.status,
        409,
        "already released: {}",
        String::from_utf8_lossy(&r.body)
    );
    let r = m.get("/v1/requests?state=approved", boss());
    assert_eq!(r.json()["requests"].as_array().unwrap().len(), 1);

    // PPAP: blocked, then unlocked by the recipient's password (no approver: nothing
    // unsanitized crosses).
    let zip = ppap(b"kaigi-0601");
    let a = m.sanitize("filename=agenda.zip", Auth::Token(&alice), &zip);
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    let zid = a.json()["id"].as_str().unwrap().to_owned();
    let pw_path = format!("/v1/quarantine/{zid}/password");
    let r = m.request(
        "POST",
        &pw_path,
        Auth::Token(&alice),
        Some(br#"{"password": "nope"}"#),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let r = m.request(
        "POST",
        &pw_path,
        Auth::Token(&alice),
        Some(br#"{"password": "kaigi-0601"}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["report"]["verdict"], "sanitized");

    let audit = m.audit();
    for kind in [
        "\"release_requested\"",
        "\"release_approved\"",
        "\"release_delivered\"",
        "\"ppap_unlock_failed\"",
        "\"ppap_unlocked\"",
    ] {
        assert!(audit.contains(kind), "{kind} missing from the audit log");
    }
    assert!(
        !audit.contains("kaigi-0601"),
        "the password reached the audit log"
    );
    let verify = common::audit_verify(&m.dir.path().join("audit.jsonl"));
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
