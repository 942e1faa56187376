//! The harness the daemon's end-to-end tests share: free loopback ports, child processes that
//! die with the test, waiting for a listener, `mugai serve` and `mugai user`, the parts of a
//! configuration every test daemon has, an exact SMTP client and HTTP requests with curl.
//!
//! Each test file is a crate of its own and takes this in with `mod common;` (Cargo's layout:
//! a folder under `tests/` is not a test binary itself).

// Every test binary uses only some of these helpers; in each, the rest would be dead code, and
// `clippy -D warnings` would fail on it.
#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test may panic: that is its failure report"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `mugai` binary Cargo built for these tests.
pub const MUGAI: &str = env!("CARGO_BIN_EXE_mugai");

/// How long `mugai serve` may take to listen.
pub const SERVE_WITHIN: Duration = Duration::from_secs(60);

/// A loopback port nothing listens on now (the system's pick, free until someone binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed and reaped when dropped: a failing test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Whether something accepts connections on the loopback `port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits, looking every 50 ms, until something accepts connections on each of `ports`.
///
/// Panics when `within` has passed, or when `child` (the process that is to listen, where
/// given) exits first, with its standard error if that is piped. `context` is added to either
/// message (e.g. the end of a log file).
pub fn wait_listening(
    ports: &[u16],
    what: &str,
    within: Duration,
    mut child: Option<&mut Child>,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !ports.iter().all(|p| listening(*p)) {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "{what} exited ({status}) before listening: {err}{}",
                context()
            );
        }
        assert!(
            start.elapsed() < within,
            "{what} did not listen on {ports:?} within {within:?}{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (looking every 50 ms, `within` at most) for `child` to exit; panics unless it exits
/// successfully.
pub fn wait_exit_ok(child: &mut Child, what: &str, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} exited with {status}");
            return status;
        }
        assert!(
            start.elapsed() < within,
            "{what} did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sections every test daemon's configuration has, its state kept in `dir`: two workers,
/// the quarantine and its key, the audit log.
pub fn config_core(dir: &Path) -> String {
    format!(
        "[pool]\nworkers = 2\n\
         [quarantine]\ndir = {q:?}\nkey_file = {k:?}\n\
         [audit]\nfile = {a:?}\n",
        q = dir.join("quarantine"),
        k = dir.join("quarantine.key"),
        a = dir.join("audit.jsonl"),
    )
}

/// [`config_core`] and the log, at level info, in `dir/mugai.log` (see [`log`]).
pub fn config_logged(dir: &Path) -> String {
    format!(
        "{}[log]\nfile = {:?}\nlevel = \"info\"\n",
        config_core(dir),
        dir.join("mugai.log")
    )
}

/// Writes `text` as `dir/mugai.toml` and gives its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mugai.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the daemon has written to `dir/mugai.log` so far (nothing before the file exists).
pub fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("mugai.log")).unwrap_or_default()
}

/// `mugai ARGS --config CONFIG`, to be run in `dir` with its standard error piped.
fn mugai(dir: &Path, args: &[&str], config: &Path) -> Command {
    let mut cmd = Command::new(MUGAI);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stderr(Stdio::piped());
    cmd
}

/// Starts `mugai serve --config CONFIG` in `dir`: standard input and output closed, standard
/// error piped (for [`wait_listening`]'s message).
pub fn spawn_serve(dir: &Path, config: &Path) -> Child {
    mugai(dir, &["serve"], config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// [`spawn_serve`], then waits ([`SERVE_WITHIN`] at most) until it listens on each of `ports`.
pub fn serve(dir: &Path, config: &Path, ports: &[u16]) -> Proc {
    let mut p = Proc(spawn_serve(dir, config));
    wait_listening(
        ports,
        "mugai serve",
        SERVE_WITHIN,
        Some(&mut p.0),
        String::new,
    );
    p
}

/// Runs `mugai user ARGS --config CONFIG` in `dir` with `stdin` (e.g. the password for
/// `--password-stdin`) on its standard input; panics unless it succeeds; its standard output.
pub fn mugai_user(dir: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = mugai(dir, &[&["user"], args].concat(), config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mugai user {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `mugai audit verify FILE`, run to its end.
pub fn audit_verify(file: &Path) -> std::process::Output {
    Command::new(MUGAI)
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap()
}

/// The messages a `dir` downstream delivered into `dir` (not its hidden files in the making),
/// sorted by name; none if `dir` does not exist.
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "eml")
                        && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file under `dir` (dot-names included), relative to it, sorted; none if `dir` does not
/// exist. Links are not followed.
pub fn files(dir: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(list) = std::fs::read_dir(dir) else {
            return;
        };
        for e in list.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                go(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut v = Vec::new();
    go(dir, dir, &mut v);
    v.sort();
    v
}

/// A minimal SMTP client on loopback, for exact transcripts: replies are read whole, with
/// a 60 s timeout.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    /// Connects to `port`; the client and the greeting.
    pub fn connect(port: u16) -> (Client, (u16, String)) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.reply();
        (c, greeting)
    }

    /// Reads one reply, all its lines: its code and its text (code 0 once the server has
    /// closed the connection).
    pub fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Sends `line` and CRLF; the reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// How an HTTP request authenticates.
pub enum Auth<'a> {
    None,
    Token(&'a str),
    Basic(&'a str, &'a str),
}

/// An HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names; the values in the order they came.
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (lower case), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    /// The body as JSON; panics (showing it) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request with curl to `http://127.0.0.1:PORT/PATH`; `body`, if any, is sent as it is
/// (`--data-binary`) with `content_type`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<&[u8]>,
    content_type: &str,
) -> Answer {
    let work = tempfile::tempdir().unwrap();
    let headers = work.path().join("h");
    let out = work.path().join("b");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-X", method, "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code}"]);
    match auth {
        Auth::None => {}
        Auth::Token(t) => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        Auth::Basic(u, p) => {
            cmd.arg("-u").arg(format!("{u}:{p}"));
        }
    }
    if let Some(b) = body {
        let f = work.path().join("in");
        std::fs::write(&f, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", f.display()));
        cmd.arg("-H").arg(format!("Content-Type: {content_type}"));
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let done = cmd.output().unwrap();
    let status: u16 = String::from_utf8_lossy(&done.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&done.stderr)));
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for line in std::fs::read_to_string(&headers)
        .unwrap_or_default()
        .lines()
    {
        if let Some((k, v)) = line.split_once(':') {
            map.entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    Answer {
        status,
        headers: map,
        body: std::fs::read(&out).unwrap_or_default(),
    }
}
