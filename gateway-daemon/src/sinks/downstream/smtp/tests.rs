//! Tests of the SMTP downstream: sans-I/O pieces directly, the client against a scripted fake
//! server (tokio, on loopback) and against Postfix's `smtp-sink`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::config::DownstreamKind;
use crate::sinks::downstream::{Downstream, MailParams, Transaction};

// ---------------------------------------------------------------------------------------------
// A scripted fake SMTP server.

/// What the fake saw.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    /// (connection, inside TLS, command line)
    commands: Vec<(usize, bool, String)>,
    /// (connection, message after dot-unstuffing, CRLF kept)
    messages: Vec<(usize, Vec<u8>)>,
}

/// What the script tells the fake to do with a command ("." for the end of a message).
enum Act {
    /// Send these bytes as they are.
    Raw(String),
    /// Say nothing (the client should time out).
    Silent,
    /// Close the connection without a word.
    Close,
}

fn say(s: &str) -> Option<Act> {
    Some(Act::Raw(format!("{s}\r\n")))
}

type Script = Arc<dyn Fn(usize, &str) -> Option<Act> + Send + Sync>;

#[derive(Clone)]
enum FakeTls {
    Off,
    /// STARTTLS offered; after its 220 the fake sends plaintext garbage and hangs up.
    Broken,
    On(TlsAcceptor),
}

#[derive(Clone)]
struct Opts {
    /// Sent on connect; empty = nothing (a silent server).
    greeting: String,
    extensions: Vec<&'static str>,
    tls: FakeTls,
    /// Close a connection idle this long, with a 421 first when `idle_421`.
    idle: Option<Duration>,
    idle_421: bool,
    script: Script,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            greeting: "220 fake.test ESMTP".into(),
            extensions: vec![
                "PIPELINING",
                "8BITMIME",
                "SMTPUTF8",
                "SIZE 10000000",
                "ENHANCEDSTATUSCODES",
            ],
            tls: FakeTls::Off,
            idle: None,
            idle_421: true,
            script: Arc::new(|_, _| None),
        }
    }
}

struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Fake {
    async fn start(opts: Opts) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let opts = Arc::new(opts);
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let id = {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.connections
                };
                let (opts, seen) = (Arc::clone(&opts), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Some(mut tcp) = fake_session(tcp, id, false, &opts, &seen).await else {
                        return;
                    };
                    match &opts.tls {
                        FakeTls::On(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                fake_session(tls, id, true, &opts, &seen).await;
                            }
                        }
                        FakeTls::Broken => {
                            let _ = tcp.write_all(b"this is not TLS at all\r\n").await;
                        }
                        FakeTls::Off => {}
                    }
                });
            }
        });
        Fake { addr, seen }
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// Command lines of connection `id` (QUIT left out: it is sent in the background).
    fn commands(&self, id: usize) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|(c, _, line)| *c == id && line != "QUIT")
            .map(|(_, _, line)| line.clone())
            .collect()
    }

    fn tls_commands(&self, id: usize) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|(c, tls, line)| *c == id && *tls && line != "QUIT")
            .map(|(_, _, line)| line.clone())
            .collect()
    }

    fn messages(&self) -> Vec<(usize, Vec<u8>)> {
        self.seen.lock().unwrap().messages.clone()
    }

    fn settings(&self) -> DownstreamSettings {
        settings(self.addr)
    }
}

/// One SMTP session on `io`; returns the stream when the client asked for STARTTLS.
async fn fake_session<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    id: usize,
    tls: bool,
    opts: &Opts,
    seen: &Mutex<Seen>,
) -> Option<S> {
    let mut io = BufReader::new(io);
    if !tls && !opts.greeting.is_empty() {
        io.write_all(format!("{}\r\n", opts.greeting).as_bytes())
            .await
            .ok()?;
    }
    loop {
        let mut line = Vec::new();
        let read = io.read_until(b'\n', &mut line);
        let n = match opts.idle {
            Some(idle) => match timeout(idle, read).await {
                Ok(r) => r.ok()?,
                Err(_) => {
                    if opts.idle_421 {
                        let _ = io.write_all(b"421 4.4.2 fake.test idle timeout\r\n").await;
                    }
                    return None;
                }
            },
            None => read.await.ok()?,
        };
        if n == 0 {
            return None;
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_owned();
        seen.lock().unwrap().commands.push((id, tls, cmd.clone()));
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let act = (opts.script)(id, &cmd).unwrap_or_else(|| {
            let text = match verb.as_str() {
                "EHLO" => {
                    let mut ext = opts.extensions.clone();
                    if !tls && !matches!(opts.tls, FakeTls::Off) {
                        ext.push("STARTTLS");
                    }
                    let mut r = String::from("250-fake.test");
                    for (i, e) in ext.iter().enumerate() {
                        let sep = if i + 1 == ext.len() { ' ' } else { '-' };
                        r.push_str(&format!("\r\n250{sep}{e}"));
                    }
                    if ext.is_empty() {
                        r = "250 fake.test".into();
                    }
                    r
                }
                "MAIL" => "250 2.1.0 Ok".into(),
                "RCPT" => "250 2.1.5 Ok".into(),
                "DATA" => "354 End data with <CR><LF>.<CR><LF>".into(),
                "NOOP" | "RSET" => "250 2.0.0 Ok".into(),
                "QUIT" => "221 2.0.0 Bye".into(),
                "STARTTLS" if !tls && !matches!(opts.tls, FakeTls::Off) => {
                    "220 2.0.0 Ready to start TLS".into()
                }
                _ => "502 5.5.2 Error: command not recognized".into(),
            };
            Act::Raw(format!("{text}\r\n"))
        });
        match act {
            Act::Silent => continue,
            Act::Close => return None,
            Act::Raw(text) => {
                io.write_all(text.as_bytes()).await.ok()?;
                io.flush().await.ok()?;
                if verb == "QUIT" {
                    return None;
                }
                if verb == "STARTTLS" && text.starts_with("220") {
                    // What the client sent after STARTTLS in plaintext is dropped with the
                    // buffer, as a server must.
                    return Some(io.into_inner());
                }
                if verb == "DATA" && text.starts_with("354") {
                    let message = read_message(&mut io).await?;
                    seen.lock().unwrap().messages.push((id, message));
                    let end = (opts.script)(id, ".")
                        .unwrap_or_else(|| Act::Raw("250 2.0.0 Ok: queued as FAKE1\r\n".into()));
                    match end {
                        Act::Raw(text) => io.write_all(text.as_bytes()).await.ok()?,
                        Act::Silent => {}
                        Act::Close => return None,
                    }
                }
            }
        }
    }
}

/// Reads DATA content up to the final dot and undoes the dot-stuffing.
async fn read_message<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(message);
        }
        assert!(line.ends_with(b"\r\n"), "line without CRLF: {line:?}");
        let line = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(line);
    }
}

fn settings(addr: SocketAddr) -> DownstreamSettings {
    DownstreamSettings {
        kind: DownstreamKind::Smtp,
        address: addr.to_string(),
        helo: "mugai.test".into(),
        tls: TlsMode::None,
        connect_timeout_secs: 2,
        reply_timeout_secs: 2,
        keepalive_secs: 1,
        ..DownstreamSettings::default()
    }
}

fn downstream(settings: &DownstreamSettings) -> Downstream {
    Downstream::new(settings, "unused.test").unwrap()
}

async fn begin(ds: &Downstream, from: &str) -> Transaction {
    let (reply, tx) = ds.begin(from, &MailParams::default()).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    tx.unwrap()
}

/// MAIL, the recipients, the message; the replies to the recipients and to the message.
async fn send(ds: &Downstream, to: &[&str], message: &[u8]) -> (Vec<Reply>, Reply) {
    let mut tx = begin(ds, "sender@example.jp").await;
    let mut replies = Vec::new();
    for rcpt in to {
        replies.push(tx.rcpt(rcpt).await);
    }
    (replies, tx.data(message).await)
}

fn assert_451(reply: &Reply, status: &str) {
    assert_eq!(reply.code, 451, "{reply:?}");
    let line = &reply.lines[0];
    assert!(line.starts_with(status), "{reply:?}");
    assert!(line.contains("downstream"), "{reply:?}");
}

const MESSAGE: &[u8] = b"From: a@example.jp\r\nSubject: test\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast line without CRLF";

// ---------------------------------------------------------------------------------------------
// Sans-I/O pieces.

fn stuffed(input: &[u8], pieces: usize) -> (Vec<u8>, usize) {
    let mut s = Stuffer::default();
    let mut out = Vec::new();
    let size = input.len().div_ceil(pieces.max(1)).max(1);
    for chunk in input.chunks(size) {
        s.push(chunk, &mut out);
    }
    let bare = s.finish(&mut out);
    (out, bare)
}

#[test]
fn stuffing_doubles_leading_dots_and_ends_every_line() {
    for pieces in [1, 2, 3, 7, 1000] {
        let (out, bare) = stuffed(b".a\r\nb.\r\n..c\r\n.\r\n", pieces);
        assert_eq!(out, b"..a\r\nb.\r\n...c\r\n..\r\n.\r\n", "{pieces}");
        assert_eq!(bare, 0);
        // A missing final CRLF is added.
        assert_eq!(stuffed(b"x", pieces).0, b"x\r\n.\r\n");
        assert_eq!(stuffed(b"x\r", pieces).0, b"x\r\n.\r\n");
        assert_eq!(stuffed(b"", pieces).0, b".\r\n");
        // Bare LF and CR are line ends, so `LF . LF` cannot end the message downstream
        // (SMTP smuggling) and the line after them is stuffed too.
        let (out, bare) = stuffed(b"a\n.\nb\r.\rc\r\n", pieces);
        assert_eq!(out, b"a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n", "{pieces}");
        assert_eq!(bare, 4);
        // CRLF split across pieces stays one line end.
        assert_eq!(stuffed(b"a\r\n.b", pieces).0, b"a\r\n..b\r\n.\r\n");
    }
}

#[test]
fn addresses_are_checked_before_they_reach_a_command_line() {
    assert_eq!(
        split_address("127.0.0.1:25").unwrap(),
        ("127.0.0.1".to_owned(), 25)
    );
    assert_eq!(
        split_address("[::1]:2525").unwrap(),
        ("::1".to_owned(), 2525)
    );
    assert_eq!(
        split_address("mx.example.lg.jp:25").unwrap(),
        ("mx.example.lg.jp".to_owned(), 25)
    );
    for bad in [
        "",
        "host",
        ":25",
        "host:",
        "host:0",
        "host:99999",
        "::1:25",
        "[::1]25",
    ] {
        assert!(split_address(bad).is_err(), "{bad:?}");
    }

    assert!(check_address("", false, Stage::Mail).is_ok(), "null sender");
    assert!(check_address("a@example.jp", false, Stage::Rcpt).is_ok());
    assert!(check_address("\"a b\"@example.jp", false, Stage::Rcpt).is_ok());
    assert!(check_address("ユーザ@example.jp", true, Stage::Rcpt).is_ok());
    assert_eq!(
        check_address("ユーザ@example.jp", false, Stage::Rcpt)
            .unwrap_err()
            .code,
        553
    );
    for bad in [
        "a@example.jp>\r\nRCPT TO:<b@example.jp",
        "a@example.jp> SIZE=1",
        &"x".repeat(300),
    ] {
        assert_eq!(
            check_address(bad, false, Stage::Mail).unwrap_err().code,
            501,
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn bad_settings_fail_at_start() {
    let mut s = settings("127.0.0.1:25".parse().unwrap());
    s.address = "no port".into();
    assert!(Downstream::new(&s, "h").is_err());
    let mut s = settings("127.0.0.1:25".parse().unwrap());
    s.reply_timeout_secs = 0;
    assert!(Downstream::new(&s, "h").is_err());
    let mut s = settings("127.0.0.1:25".parse().unwrap());
    s.helo = String::new();
    assert!(Downstream::new(&s, "").is_err(), "no EHLO name at all");
    assert!(Downstream::new(&s, "mugai.example.lg.jp").is_ok());
    let mut s = settings("127.0.0.1:25".parse().unwrap());
    s.tls = TlsMode::Required;
    s.tls_ca = "/nonexistent/ca.pem".into();
    assert!(Downstream::new(&s, "h").is_err());
}

// ---------------------------------------------------------------------------------------------
// Against Postfix's smtp-sink.

struct Sink {
    child: std::process::Child,
    addr: SocketAddr,
    dumps: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    async fn start(extra: &[&str]) -> Sink {
        let dumps = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new("/usr/sbin/smtp-sink");
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", "root"]);
        }
        cmd.args(extra)
            .arg("-d")
            .arg(format!("{}/%M.", dumps.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("smtp-sink (Debian package postfix)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sink { child, addr, dumps }
    }

    /// The dumped transactions: (smtp-sink's header lines, the message), LF line ends.
    async fn dumps(&self, expected: usize) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let files: Vec<PathBuf> = std::fs::read_dir(self.dumps.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            if files.len() >= expected || Instant::now() > deadline {
                return files.iter().map(|p| split_dump(p)).collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// smtp-sink writes its own headers, ending with a three-line `Received:`, then the message
/// as received, dot-stuffing undone, with LF line ends, then an empty line.
fn split_dump(path: &Path) -> (String, Vec<u8>) {
    let dump = std::fs::read(path).unwrap();
    let at = dump
        .windows(10)
        .position(|w| w == b"Received: ")
        .expect("smtp-sink Received header");
    let mut rest = &dump[at..];
    for _ in 0..3 {
        let lf = rest.iter().position(|b| *b == b'\n').unwrap();
        rest = &rest[lf + 1..];
    }
    let header = String::from_utf8_lossy(&dump[..at]).into_owned();
    let message = rest.strip_suffix(b"\n").unwrap().to_vec();
    (header, message)
}

/// What a receiver should see: CRLF as LF, dot-stuffing undone, the final line ended.
fn as_dumped(message: &[u8]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.into_bytes()
}

#[tokio::test]
async fn smtp_sink_receives_the_message_unchanged() {
    let sink = Sink::start(&[]).await;
    let ds = downstream(&settings(sink.addr));
    let message = [MESSAGE, "\r\n日本語の本文\r\n".as_bytes()].concat();
    let params = MailParams {
        eight_bit: true,
        smtputf8: false,
        size: Some(message.len() as u64),
    };
    let (reply, tx) = ds.begin("sender@example.jp", &params).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let mut tx = tx.unwrap();
    assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
    assert_eq!(tx.rcpt("b@example.lg.jp").await.code, 250);
    let reply = tx.data(&message).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        reply.lines[0].starts_with("2.0.0 Ok: delivered downstream (250 2.0.0"),
        "{reply:?}"
    );

    let dumps = sink.dumps(1).await;
    assert_eq!(dumps.len(), 1);
    let (header, dumped) = &dumps[0];
    assert!(
        header.contains("X-Mail-Args: <sender@example.jp> BODY=8BITMIME"),
        "{header}"
    );
    assert!(
        header.contains("X-Rcpt-Args: <a@example.lg.jp>"),
        "{header}"
    );
    assert!(
        header.contains("X-Rcpt-Args: <b@example.lg.jp>"),
        "{header}"
    );
    assert!(header.contains("X-Helo-Args: mugai.test"), "{header}");
    assert_eq!(
        String::from_utf8_lossy(dumped),
        String::from_utf8_lossy(&as_dumped(&message))
    );
}

#[tokio::test]
async fn smtp_sink_idle_timeout_is_survived_by_replay() {
    // smtp-sink -t 1 drops a session idle for a second; the message still arrives, once.
    let sink = Sink::start(&["-t", "1"]).await;
    let ds = downstream(&settings(sink.addr));
    let mut tx = begin(&ds, "sender@example.jp").await;
    assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let reply = tx.data(MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let dumps = sink.dumps(1).await;
    assert_eq!(dumps.len(), 1);
    assert!(dumps[0].0.contains("X-Rcpt-Args: <a@example.lg.jp>"));
    assert_eq!(dumps[0].1, as_dumped(MESSAGE));
}

// ---------------------------------------------------------------------------------------------
// Replies: per recipient, transient, permanent, garbage.

#[tokio::test]
async fn each_recipient_gets_its_own_answer() {
    let fake = Fake::start(Opts {
        script: Arc::new(|_, cmd| match cmd {
            "RCPT TO:<nobody@example.lg.jp>" => {
                say("550 5.1.1 <nobody@example.lg.jp>: Recipient address rejected")
            }
            "RCPT TO:<full@example.lg.jp>" => say("452 4.2.2 Mailbox full"),
            _ => None,
        }),
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let (replies, reply) = send(
        &ds,
        &[
            "a@example.lg.jp",
            "nobody@example.lg.jp",
            "full@example.lg.jp",
            "b@example.lg.jp",
        ],
        MESSAGE,
    )
    .await;
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 550, 451, 250]);
    assert_eq!(
        replies[1].lines,
        ["5.1.1 downstream: <nobody@example.lg.jp>: Recipient address rejected"]
    );
    assert_451(&replies[2], "4.4.0");
    assert!(
        replies[2].lines[0].contains("452 4.2.2 Mailbox full"),
        "{:?}",
        replies[2]
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, [MESSAGE, b"\r\n"].concat());
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn transient_replies_become_451() {
    for (stage, at) in [("MAIL", 0), ("RCPT", 1), ("DATA", 2), (".", 2), ("421", 1)] {
        let fake = Fake::start(Opts {
            script: Arc::new(move |_, cmd| {
                if stage == "421" && cmd.starts_with("RCPT") {
                    return say("421 4.3.2 Shutting down");
                }
                (cmd == stage || cmd.starts_with(&format!("{stage} ")))
                    .then(|| Act::Raw("450-4.3.0 try\r\n450 4.3.0 later\r\n".into()))
            }),
            ..Opts::default()
        })
        .await;
        let ds = downstream(&fake.settings());
        let (reply, tx) = ds.begin("sender@example.jp", &MailParams::default()).await;
        let reply = match (at, tx) {
            (0, tx) => {
                assert!(tx.is_none());
                reply
            }
            (1, Some(mut tx)) => tx.rcpt("a@example.lg.jp").await,
            (_, Some(mut tx)) => {
                assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
                tx.data(MESSAGE).await
            }
            (_, None) => panic!("{stage}: MAIL refused: {reply:?}"),
        };
        assert_451(&reply, "4.4.0");
        assert_eq!(reply.lines.len(), 1, "{stage}: {reply:?}");
    }
}

#[tokio::test]
async fn permanent_replies_are_passed_through() {
    let fake = Fake::start(Opts {
        script: Arc::new(|_, cmd| match cmd {
            "MAIL FROM:<spammer@example.com>" => {
                say("553 5.7.1 <spammer@example.com>: Sender address rejected")
            }
            "MAIL FROM:<nostatus@example.com>" => say("550 Go away"),
            "RCPT TO:<datafail@example.lg.jp>" => None,
            "DATA" => None,
            "." => Some(Act::Raw(
                "554-5.6.0 Message content rejected\r\n554 5.6.0 second line\r\n".into(),
            )),
            _ => None,
        }),
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let (reply, tx) = ds
        .begin("spammer@example.com", &MailParams::default())
        .await;
    assert!(tx.is_none());
    assert_eq!(reply.code, 553);
    assert_eq!(
        reply.lines,
        ["5.7.1 downstream: <spammer@example.com>: Sender address rejected"]
    );
    let (reply, _) = ds
        .begin("nostatus@example.com", &MailParams::default())
        .await;
    assert_eq!(reply.code, 550);
    assert_eq!(reply.lines, ["5.0.0 downstream: Go away"]);

    let (_, reply) = send(&ds, &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 554);
    assert_eq!(
        reply.lines,
        [
            "5.6.0 downstream: Message content rejected",
            "5.6.0 second line"
        ]
    );

    let fake = Fake::start(Opts {
        script: Arc::new(|_, cmd| {
            (cmd == "DATA").then(|| Act::Raw("554 5.5.1 No valid recipients\r\n".into()))
        }),
        ..Opts::default()
    })
    .await;
    let (_, reply) = send(&downstream(&fake.settings()), &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 554);
    assert_eq!(reply.lines, ["5.5.1 downstream: No valid recipients"]);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn garbage_and_oversized_replies_are_451() {
    let long_line = format!("250 {}\r\n", "x".repeat(5000));
    let endless = "y".repeat(100_000);
    let many = "250-x\r\n".repeat(1000) + "250 x\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("greeting", "hello there\r\n".into()),
        ("MAIL", "hello there\r\n".into()),
        ("MAIL", long_line),
        ("MAIL", endless),
        ("MAIL", many),
        // A 250 line cannot turn a refusal into a success.
        ("RCPT", "250-fine\r\n550 5.1.1 not fine\r\n".into()),
        ("RCPT", "354 go ahead\r\n".into()),
        ("DATA", "250 2.0.0 Ok\r\n".into()),
        (".", "999 what\r\n".into()),
    ];
    for (stage, raw) in cases {
        let greeting = if stage == "greeting" {
            raw.trim_end().to_owned()
        } else {
            Opts::default().greeting
        };
        let fake = Fake::start(Opts {
            greeting,
            script: Arc::new(move |_, cmd| {
                let hit = cmd == stage || cmd.starts_with(&format!("{stage} "));
                hit.then(|| Act::Raw(raw.clone()))
            }),
            ..Opts::default()
        })
        .await;
        let ds = downstream(&fake.settings());
        let started = Instant::now();
        let (reply, tx) = ds.begin("sender@example.jp", &MailParams::default()).await;
        let reply = match tx {
            None => reply,
            Some(mut tx) => {
                let r = tx.rcpt("a@example.lg.jp").await;
                if r.code == 250 {
                    tx.data(MESSAGE).await
                } else {
                    r
                }
            }
        };
        assert_451(&reply, "4.4");
        assert!(reply.lines.iter().all(|l| l.len() < 400), "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{stage}: no waiting on garbage"
        );
        assert!(fake.messages().is_empty() || stage == ".", "{stage}");
    }
}

#[tokio::test]
async fn refused_or_lost_connection_is_451() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ds = downstream(&settings(format!("127.0.0.1:{port}").parse().unwrap()));
    let (reply, tx) = ds.begin("sender@example.jp", &MailParams::default()).await;
    assert!(tx.is_none());
    assert_451(&reply, "4.4.1");

    // Hung up mid-session: 451, and the next command gets a fresh session, replayed.
    let fake = Fake::start(Opts {
        script: Arc::new(|conn, cmd| {
            (conn == 1 && cmd.starts_with("RCPT TO:<b")).then_some(Act::Close)
        }),
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let mut tx = begin(&ds, "sender@example.jp").await;
    assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
    let reply = tx.rcpt("b@example.lg.jp").await;
    assert_451(&reply, "4.4.2");
    assert!(
        reply.lines[0].contains("connection lost at RCPT"),
        "{reply:?}"
    );
    assert_eq!(tx.rcpt("c@example.lg.jp").await.code, 250);
    assert_eq!(tx.data(MESSAGE).await.code, 250);
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.commands(2)[1..],
        [
            "MAIL FROM:<sender@example.jp>",
            "RCPT TO:<a@example.lg.jp>",
            "RCPT TO:<c@example.lg.jp>",
            "DATA"
        ]
    );
}

#[tokio::test]
async fn silence_times_out_as_451() {
    // No greeting: connect_timeout.
    let fake = Fake::start(Opts {
        greeting: String::new(),
        ..Opts::default()
    })
    .await;
    let mut s = fake.settings();
    s.connect_timeout_secs = 1;
    let started = Instant::now();
    let (reply, _) = downstream(&s)
        .begin("a@example.jp", &MailParams::default())
        .await;
    assert_451(&reply, "4.4.1");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // No reply to RCPT, then none to the final dot: reply_timeout and the data timeout.
    let fake = Fake::start(Opts {
        script: Arc::new(|_, cmd| {
            (cmd.starts_with("RCPT TO:<slow") || cmd == ".").then_some(Act::Silent)
        }),
        ..Opts::default()
    })
    .await;
    let mut s = fake.settings();
    s.reply_timeout_secs = 1;
    let ds = downstream(&s).with_data_timeout(Duration::from_millis(800));
    let mut tx = begin(&ds, "a@example.jp").await;
    let started = Instant::now();
    let reply = tx.rcpt("slow@example.lg.jp").await;
    assert_451(&reply, "4.4.2");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The session is out of step now: the next recipient gets a fresh session, replayed.
    assert_eq!(tx.rcpt("b@example.lg.jp").await.code, 250);
    let started = Instant::now();
    let reply = tx.data(MESSAGE).await;
    assert_451(&reply, "4.4.2");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.commands(2)[1..],
        [
            "MAIL FROM:<a@example.jp>",
            "RCPT TO:<b@example.lg.jp>",
            "DATA"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Keepalive and replay.

#[tokio::test]
async fn keepalives_keep_an_idle_session() {
    let fake = Fake::start(Opts {
        idle: Some(Duration::from_millis(1200)),
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let mut tx = begin(&ds, "sender@example.jp").await;
    assert_eq!(tx.keepalive_interval(), Duration::from_secs(1));
    assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
    // Sanitizing takes 2 s, longer than the downstream's idle timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.keepalive().await;
    }
    let reply = tx.data(MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(fake.connections(), 1, "no reconnect");
    let commands = fake.commands(1);
    assert_eq!(commands.iter().filter(|c| *c == "NOOP").count(), 4);
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn a_dropped_session_is_reopened_and_only_accepted_recipients_replayed() {
    for idle_421 in [true, false] {
        let fake = Fake::start(Opts {
            idle: Some(Duration::from_millis(800)),
            idle_421,
            script: Arc::new(|_, cmd| {
                (cmd == "RCPT TO:<nobody@example.lg.jp>")
                    .then(|| Act::Raw("550 5.1.1 Unknown\r\n".into()))
            }),
            ..Opts::default()
        })
        .await;
        let ds = downstream(&fake.settings());
        let params = MailParams {
            eight_bit: true,
            smtputf8: false,
            size: Some(123),
        };
        let (_, tx) = ds.begin("sender@example.jp", &params).await;
        let mut tx = tx.unwrap();
        assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
        assert_eq!(tx.rcpt("nobody@example.lg.jp").await.code, 550);
        assert_eq!(tx.rcpt("c@example.lg.jp").await.code, 250);
        // No keepalives: the downstream drops the session meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let reply = tx.data(MESSAGE).await;
        assert_eq!(reply.code, 250, "{reply:?}");
        assert_eq!(fake.connections(), 2, "421 {idle_421}");
        let mail = "MAIL FROM:<sender@example.jp> BODY=8BITMIME SIZE=123";
        assert_eq!(
            fake.commands(2),
            [
                "EHLO mugai.test",
                mail,
                "RCPT TO:<a@example.lg.jp>",
                "RCPT TO:<c@example.lg.jp>",
                "DATA"
            ]
        );
        let messages = fake.messages();
        assert_eq!(messages.len(), 1, "delivered once");
        assert_eq!(messages[0].0, 2);
    }
}

#[tokio::test]
async fn a_replay_that_is_refused_is_451() {
    let fake = Fake::start(Opts {
        idle: Some(Duration::from_millis(500)),
        script: Arc::new(|conn, cmd| {
            (conn == 2 && cmd == "RCPT TO:<a@example.lg.jp>")
                .then(|| Act::Raw("550 5.1.1 Gone now\r\n".into()))
        }),
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let mut tx = begin(&ds, "sender@example.jp").await;
    assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = tx.data(MESSAGE).await;
    assert_451(&reply, "4.4.2");
    assert!(reply.lines[0].contains("re-opened"), "{reply:?}");
    assert!(fake.messages().is_empty());
    assert!(!fake.commands(2).contains(&"DATA".to_owned()));
}

#[tokio::test]
async fn abort_ends_the_session() {
    let fake = Fake::start(Opts::default()).await;
    let ds = downstream(&fake.settings());
    let mut tx = begin(&ds, "sender@example.jp").await;
    tx.rcpt("a@example.lg.jp").await;
    tx.abort().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !fake
        .seen
        .lock()
        .unwrap()
        .commands
        .iter()
        .any(|c| c.2 == "QUIT")
    {
        assert!(Instant::now() < deadline, "QUIT never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fake.messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8BITMIME and SMTPUTF8.

#[tokio::test]
async fn eight_bit_and_utf8_are_never_downgraded() {
    // Both offered: passed on.
    let fake = Fake::start(Opts::default()).await;
    let ds = downstream(&fake.settings());
    let params = MailParams {
        eight_bit: true,
        smtputf8: true,
        size: Some(99),
    };
    let (reply, tx) = ds.begin("送信者@example.jp", &params).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let mut tx = tx.unwrap();
    assert_eq!(tx.rcpt("受信者@example.lg.jp").await.code, 250);
    let message = "Subject: 件名\r\n\r\n本文\r\n".as_bytes();
    assert_eq!(tx.data(message).await.code, 250);
    assert_eq!(
        fake.commands(1)[1..3],
        [
            "MAIL FROM:<送信者@example.jp> BODY=8BITMIME SMTPUTF8 SIZE=99",
            "RCPT TO:<受信者@example.lg.jp>"
        ]
    );
    assert_eq!(fake.messages()[0].1, message);

    // Neither offered.
    let fake = Fake::start(Opts {
        extensions: vec!["PIPELINING"],
        ..Opts::default()
    })
    .await;
    let ds = downstream(&fake.settings());
    let (reply, tx) = ds.begin("送信者@example.jp", &params).await;
    assert!(tx.is_none());
    assert_eq!((reply.code, &reply.lines[0][..5]), (553, "5.6.7"));
    let (reply, tx) = ds.begin("sender@example.jp", &params).await;
    assert!(tx.is_none());
    assert_eq!((reply.code, &reply.lines[0][..5]), (550, "5.6.9"));

    // 8 bits declared, none in the sanitized message: it goes as it is, without BODY=.
    let params = MailParams {
        eight_bit: true,
        ..MailParams::default()
    };
    let (_, tx) = ds.begin("sender@example.jp", &params).await;
    let mut tx = tx.unwrap();
    tx.rcpt("a@example.lg.jp").await;
    assert_eq!(tx.data(MESSAGE).await.code, 250);
    assert!(
        fake.commands(3)
            .contains(&"MAIL FROM:<sender@example.jp>".to_owned())
    );

    // 8-bit octets for a downstream without 8BITMIME: refused, nothing sent.
    let (_, tx) = ds.begin("sender@example.jp", &params).await;
    let mut tx = tx.unwrap();
    tx.rcpt("a@example.lg.jp").await;
    let reply = tx.data(message).await;
    assert_eq!((reply.code, &reply.lines[0][..5]), (554, "5.6.3"));
    assert_eq!(fake.messages().len(), 1);
    assert!(!fake.commands(4).contains(&"DATA".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// TLS.

struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    acceptor: TlsAcceptor,
}

/// A test CA and a server certificate for 127.0.0.1 / localhost signed by it.
fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-subj",
                "/CN=Mugai test CA",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);

    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&std::fs::read(p("leaf.pem")).unwrap())
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_slice(&std::fs::read(p("leaf.key")).unwrap()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Certs {
        ca: p("ca.pem"),
        _dir: dir,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

#[tokio::test]
async fn tls_opportunistic_and_required() {
    let certs = certs();
    let fake = Fake::start(Opts {
        tls: FakeTls::On(certs.acceptor.clone()),
        ..Opts::default()
    })
    .await;

    // Opportunistic: encrypted, the certificate not checked (no CA given).
    let mut s = fake.settings();
    s.tls = TlsMode::Opportunistic;
    let (_, reply) = send(&downstream(&s), &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(fake.commands(1)[..2], ["EHLO mugai.test", "STARTTLS"]);
    assert_eq!(
        fake.tls_commands(1),
        [
            "EHLO mugai.test",
            "MAIL FROM:<sender@example.jp>",
            "RCPT TO:<a@example.lg.jp>",
            "DATA"
        ]
    );

    // Required with the CA: verified for the IP address of `address`.
    s.tls = TlsMode::Required;
    s.tls_ca = certs.ca.clone();
    let (_, reply) = send(&downstream(&s), &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(fake.tls_commands(2).len(), 4);

    // Required against the public roots: this certificate is not trusted, and there is no
    // plaintext fallback.
    s.tls_ca = PathBuf::new();
    let (reply, tx) = downstream(&s)
        .begin("sender@example.jp", &MailParams::default())
        .await;
    assert!(tx.is_none());
    assert_451(&reply, "4.4.2");
    assert!(reply.lines[0].contains("TLS"), "{reply:?}");
    assert_eq!(fake.connections(), 3);
    assert_eq!(fake.commands(3), ["EHLO mugai.test", "STARTTLS"]);

    // Required with the right CA but another name: the certificate names only 127.0.0.1.
    let mut s = fake.settings();
    s.address = format!("localhost:{}", fake.addr.port());
    s.tls = TlsMode::Required;
    s.tls_ca = certs.ca.clone();
    let (reply, tx) = downstream(&s)
        .begin("sender@example.jp", &MailParams::default())
        .await;
    assert!(tx.is_none());
    assert_451(&reply, "4.4.2");
    assert!(fake.messages().len() == 2);
}

#[tokio::test]
async fn tls_required_but_not_offered_is_451() {
    let fake = Fake::start(Opts::default()).await;
    let certs = certs();
    let mut s = fake.settings();
    s.tls = TlsMode::Required;
    s.tls_ca = certs.ca.clone();
    let (reply, tx) = downstream(&s)
        .begin("sender@example.jp", &MailParams::default())
        .await;
    assert!(tx.is_none());
    assert_451(&reply, "4.4.2");
    assert!(reply.lines[0].contains("STARTTLS not offered"), "{reply:?}");
    assert!(!fake.commands(1).iter().any(|c| c.starts_with("MAIL")));

    // Opportunistic: plaintext then.
    s.tls = TlsMode::Opportunistic;
    let (_, reply) = send(&downstream(&s), &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 250);
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn opportunistic_tls_falls_back_to_plaintext_once_when_the_handshake_fails() {
    let fake = Fake::start(Opts {
        tls: FakeTls::Broken,
        ..Opts::default()
    })
    .await;
    let mut s = fake.settings();
    s.tls = TlsMode::Opportunistic;
    let (_, reply) = send(&downstream(&s), &["a@example.lg.jp"], MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.commands(1), ["EHLO mugai.test", "STARTTLS"]);
    assert_eq!(
        fake.commands(2)[..2],
        ["EHLO mugai.test", "MAIL FROM:<sender@example.jp>"]
    );
    assert_eq!(fake.messages()[0].0, 2);

    // Required: no fallback.
    let certs = certs();
    s.tls = TlsMode::Required;
    s.tls_ca = certs.ca.clone();
    let (reply, _) = downstream(&s)
        .begin("sender@example.jp", &MailParams::default())
        .await;
    assert_451(&reply, "4.4.2");
    assert_eq!(fake.connections(), 3);
}
