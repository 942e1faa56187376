//! End-to-end tests of `mugai serve` as a drop directory: the real binary, a temporary
//! configuration (SMTP and HTTP off), files dropped in its inbox, outputs read back from its
//! outbox, and a `kill -9` in the middle of a thousand files.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test may panic: that is its failure report"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Proc, files};

/// A corpus sample's bytes.
fn sample(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/samples")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A `mugai serve` with only the drop directory, in its own data folder.
struct Mugai {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Proc>,
}

impl Mugai {
    /// Writes the configuration into `dir` and starts the daemon.
    fn start(dir: &Path, settle_secs: u64) -> Mugai {
        let config = format!(
            "{base}\
             [smtp]\nenabled = false\n\
             [http]\nenabled = false\n\
             [dropdir]\nenabled = true\ninbox = {i:?}\noutbox = {o:?}\nwork = {w:?}\n\
             settle_secs = {settle_secs}\nrescan_secs = 5\n",
            base = common::config_logged(dir),
            i = dir.join("inbox"),
            o = dir.join("outbox"),
            w = dir.join("work"),
        );
        let mut m = Mugai {
            dir: dir.to_owned(),
            config: common::write_config(dir, &config),
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        self.child = Some(Proc(common::spawn_serve(&self.dir, &self.config)));
    }

    /// Panics with the daemon's stderr and log if it exited.
    fn alive(&mut self) {
        let c = &mut self.child.as_mut().unwrap().0;
        if let Ok(Some(status)) = c.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("mugai serve exited ({status}): {err}\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        common::log(&self.dir)
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.0.kill().unwrap();
        c.0.wait().unwrap();
    }

    /// SIGTERM, and waits for a clean exit.
    fn stop(&mut self) {
        let mut c = self.child.take().unwrap();
        common::signal(&c.0, nix::sys::signal::Signal::SIGTERM);
        common::wait_exit_ok(&mut c.0, "mugai serve", Duration::from_secs(30));
    }

    fn inbox(&self) -> PathBuf {
        self.dir.join("inbox")
    }

    fn outbox(&self) -> PathBuf {
        self.dir.join("outbox")
    }

    /// Waits (at most `secs`) until `done` holds, checking the daemon is still running.
    fn wait_for(&mut self, secs: u64, what: &str, mut done: impl FnMut(&Mugai) -> bool) {
        let start = Instant::now();
        while !done(self) {
            self.alive();
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Visible files (no component starting with a dot): what an LGWAN-side reader may open.
fn visible(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| !f.split('/').any(|c| c.starts_with('.')))
        .collect()
}

fn put(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reports in the outbox, keyed by the input's relative path.
fn reports(outbox: &Path) -> BTreeMap<String, (String, serde_json::Value)> {
    let mut m = BTreeMap::new();
    for f in visible(outbox) {
        if f.ends_with(".report.json") {
            let v = json(&outbox.join(&f));
            let input = v["input"]["path"].as_str().unwrap().to_owned();
            assert!(
                m.insert(input.clone(), (f.clone(), v)).is_none(),
                "two reports for {input}"
            );
        }
    }
    m
}

fn held_rows(dir: &Path) -> Vec<gateway_daemon::sinks::index::HeldItem> {
    let vault =
        gateway_daemon::sinks::vault::Vault::open(&gateway_daemon::config::QuarantineSettings {
            dir: dir.join("quarantine"),
            key_file: dir.join("quarantine.key"),
            retention_days: 90,
        })
        .unwrap();
    vault
        .index()
        .search(&gateway_daemon::sinks::index::Search {
            limit: 10_000,
            ..gateway_daemon::sinks::index::Search::default()
        })
        .unwrap()
}

#[test]
fn a_tree_of_hostile_files_comes_out_safe_with_reports_notes_and_quarantine() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("inbox");
    put(
        &inbox,
        "総務課/page.html",
        b"<html><body><script>alert('x')</script><p>\xe6\x9d\xa5\xe9\x80\xb1</p></body></html>",
    );
    put(
        &inbox,
        "総務課/見積/macro.docm",
        &sample("office/macro.docm"),
    );
    put(
        &inbox,
        "js_openaction.pdf",
        &sample("pdf/js_openaction.pdf"),
    );
    put(&inbox, "tools/invoice.pdf.exe", b"MZ\x90\0\x03\0\0\0");
    put(&inbox, "tools/setup.txt", &sample("disguised/setup.txt"));
    put(
        &inbox,
        "mail/plain_utf8.eml",
        &sample("mail/plain_utf8.eml"),
    );
    put(&inbox, "notes.txt", "議事録\n".as_bytes());
    put(&inbox, ".hidden.txt", b"never taken");
    put(&inbox, "upload.part", b"never taken");
    std::os::unix::fs::symlink("/etc/passwd", inbox.join("passwd.txt")).unwrap();
    let mut m = Mugai::start(d.path(), 1);
    let outbox = m.outbox();
    m.wait_for(60, "seven reports", |m| reports(&m.outbox()).len() == 7);
    m.stop();

    assert_eq!(
        visible(&outbox),
        [
            "js_openaction.pdf",
            "js_openaction.pdf.report.json",
            "mail/plain_utf8.eml",
            "mail/plain_utf8.eml.report.json",
            "notes.txt",
            "notes.txt.report.json",
            "tools/invoice.pdf.exe.blocked.txt",
            "tools/invoice.pdf.exe.report.json",
            "tools/setup.txt.blocked.txt",
            "tools/setup.txt.report.json",
            "総務課/page.txt",
            "総務課/page.txt.report.json",
            "総務課/見積/macro.docx",
            "総務課/見積/macro.docx.report.json",
        ]
    );
    let r = reports(&outbox);
    let verdict = |p: &str| r[p].1["verdict"].as_str().unwrap().to_owned();
    assert_eq!(verdict("総務課/page.html"), "sanitized");
    assert_eq!(verdict("総務課/見積/macro.docm"), "sanitized");
    assert_eq!(verdict("js_openaction.pdf"), "sanitized");
    assert_eq!(verdict("tools/invoice.pdf.exe"), "blocked");
    assert_eq!(verdict("tools/setup.txt"), "blocked");
    assert_eq!(verdict("notes.txt"), "clean");
    assert_eq!(r["総務課/page.html"].1["output"]["path"], "総務課/page.txt");

    let text = std::fs::read_to_string(outbox.join("総務課/page.txt")).unwrap();
    assert!(text.contains("来週") && !text.contains("alert"), "{text}");
    let pdf = std::fs::read(outbox.join("js_openaction.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    assert!(!pdf.windows(11).any(|w| w == b"/JavaScript"));
    let docx = std::fs::read(outbox.join("総務課/見積/macro.docx")).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(docx)).unwrap();
    assert!(zip.by_name("word/document.xml").is_ok());
    assert!((0..zip.len()).all(|i| {
        !zip.by_index(i)
            .unwrap()
            .name()
            .unwrap()
            .contains("vbaProject")
    }));
    // The note says why, in both languages, with the report id to ask for the original.
    let note = std::fs::read_to_string(outbox.join("tools/invoice.pdf.exe.blocked.txt")).unwrap();
    let id = r["tools/invoice.pdf.exe"].1["id"].as_str().unwrap();
    assert!(note.contains("無害化できなかった") && note.contains("blocked by Mugai"));
    assert!(note.contains(id) && note.contains("quarantine"), "{note}");

    // Nothing is left behind but what was never to be taken.
    assert_eq!(files(&inbox), [".hidden.txt", "passwd.txt", "upload.part"]);
    assert!(files(&d.path().join("work")).is_empty());
    assert!(m.log().contains("Not a regular file"), "{}", m.log());

    // Every original that was not clean is in the quarantine, named by its path.
    let mut held: Vec<(String, String)> = held_rows(d.path())
        .into_iter()
        .map(|h| {
            assert_eq!(h.source, "dropdir");
            assert_eq!(h.status.as_str(), "delivered", "{h:?}");
            (h.file_name.unwrap(), h.verdict)
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            ("js_openaction.pdf".into(), "sanitized".into()),
            ("tools/invoice.pdf.exe".into(), "blocked".into()),
            ("tools/setup.txt".into(), "blocked".into()),
            ("総務課/page.html".into(), "sanitized".into()),
            ("総務課/見積/macro.docm".into(), "sanitized".into()),
        ]
    );
    for (_, rep) in r.values() {
        let q = rep["quarantine_id"].as_str();
        assert_eq!(q.is_some(), rep["verdict"] != "clean", "{rep}");
    }
    // One audit line per file.
    let audit = std::fs::read_to_string(d.path().join("audit.jsonl")).unwrap();
    let ids: BTreeSet<String> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["report_id"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = r
        .values()
        .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn partial_uploads_and_growing_files_are_not_taken_early() {
    let d = tempfile::tempdir().unwrap();
    let mut m = Mugai::start(d.path(), 2);
    let inbox = m.inbox();
    let outbox = m.outbox();
    std::fs::create_dir_all(&inbox).unwrap();
    // An upload in progress under a .part name, and a file written slowly under its real name.
    let part_text: String = (0..200).map(|i| format!("part line {i}\n")).collect();
    std::fs::write(inbox.join("upload.txt.part"), &part_text).unwrap();
    let mut growing = std::fs::File::create(inbox.join("growing.txt")).unwrap();
    let mut expected = String::new();
    for i in 0..8 {
        let chunk = format!("chunk {i} of the growing file\n");
        growing.write_all(chunk.as_bytes()).unwrap();
        growing.flush().unwrap();
        expected.push_str(&chunk);
        std::thread::sleep(Duration::from_millis(600));
        m.alive();
        assert!(
            visible(&outbox).is_empty(),
            "taken too early: {:?}",
            visible(&outbox)
        );
        assert!(inbox.join("upload.txt.part").exists());
    }
    drop(growing);
    std::fs::rename(inbox.join("upload.txt.part"), inbox.join("upload.txt")).unwrap();
    m.wait_for(30, "both outputs", |m| reports(&m.outbox()).len() == 2);
    m.stop();
    // Text comes out with CRLF line ends (Windows readers); every line must be there.
    let text = |name: &str| {
        std::fs::read_to_string(outbox.join(name))
            .unwrap()
            .replace("\r\n", "\n")
    };
    assert_eq!(text("growing.txt"), expected);
    assert_eq!(text("upload.txt"), part_text);
    assert!(files(&inbox).is_empty());
}

/// What a thousand-file run drops: (relative path, bytes).
fn thousand_files() -> Vec<(String, Vec<u8>)> {
    let samples = [
        ("docm", sample("office/macro.docm")),
        ("pdf", sample("pdf/js_openaction.pdf")),
        ("txt", sample("disguised/setup.txt")),
        ("zip", sample("archives/zip_exe_and_txt.zip")),
    ];
    (0..1000)
        .map(|i| {
            let dir = format!("d{}", i % 10);
            match i % 10 {
                0 => {
                    let (ext, bytes) = &samples[(i / 10) % samples.len()];
                    (format!("{dir}/sample{i}.{ext}"), bytes.clone())
                }
                1 => (format!("{dir}/tool{i}.exe"), b"MZ\x90\0\x03\0".to_vec()),
                2..=5 => (
                    format!("{dir}/page{i}.html"),
                    format!("<html><script>x({i})</script><p>ページ {i}</p></html>").into_bytes(),
                ),
                _ => (
                    format!("{dir}/note{i}.txt"),
                    format!("メモ {i}\n{}\n", "本文 ".repeat(i % 50)).into_bytes(),
                ),
            }
        })
        .collect()
}

#[test]
fn a_thousand_files_survive_kill_9_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("inbox");
    let dropped = thousand_files();
    for (rel, bytes) in &dropped {
        put(&inbox, rel, bytes);
    }
    let started = Instant::now();
    let mut m = Mugai::start(d.path(), 1);
    let outbox = m.outbox();

    // Every visible file seen while the daemon runs must already be complete: its size then
    // is its size at the end (writes are atomic; nothing is rewritten or removed).
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let poll = |seen: &mut BTreeMap<String, u64>| {
        for f in visible(&outbox) {
            let Ok(meta) = std::fs::metadata(outbox.join(&f)) else {
                panic!("{f} vanished");
            };
            let size = meta.len();
            if let Some(old) = seen.insert(f.clone(), size) {
                assert_eq!(old, size, "{f} changed after it became visible");
            }
            if f.ends_with(".report.json") {
                json(&outbox.join(&f));
            }
        }
    };
    // Kill in the middle.
    let start = Instant::now();
    loop {
        poll(&mut seen);
        m.alive();
        let done = seen.keys().filter(|f| f.ends_with(".report.json")).count();
        if done >= 300 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {done} files done in 60 s\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m.kill9();
    poll(&mut seen);
    m.spawn();
    let start = Instant::now();
    loop {
        poll(&mut seen);
        m.alive();
        let done = seen.keys().filter(|f| f.ends_with(".report.json")).count();
        if done >= dropped.len() && files(&d.path().join("work")).is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {done} of {} files done after the restart\n{}",
            dropped.len(),
            m.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m.stop();
    let elapsed = started.elapsed();

    // Exactly one report per input, and exactly one output or note per report.
    let r = reports(&outbox);
    let inputs: BTreeSet<String> = dropped.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(r.keys().cloned().collect::<BTreeSet<_>>(), inputs);
    let outputs: BTreeSet<String> = visible(&outbox)
        .into_iter()
        .filter(|f| !f.ends_with(".report.json"))
        .collect();
    assert_eq!(outputs.len(), dropped.len(), "one output per input");
    for (input, (report_file, v)) in &r {
        let dir = Path::new(input)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let stem = report_file.strip_suffix(".report.json").unwrap();
        if v["verdict"] == "blocked" {
            let note = format!("{stem}.blocked.txt");
            assert!(outputs.contains(&note), "{input}: no {note}");
        } else {
            let name = v["output"]["name"].as_str().unwrap();
            let out = format!("{dir}/{name}");
            assert_eq!(v["output"]["path"].as_str(), Some(out.as_str()));
            assert!(outputs.contains(&out), "{input}: no {out}");
            let size = std::fs::metadata(outbox.join(&out)).unwrap().len();
            assert_eq!(v["output"]["size"].as_u64(), Some(size), "{out}");
        }
    }
    // Nothing left in the inbox or the work folder.
    assert!(files(&inbox).is_empty(), "{:?}", files(&inbox));
    assert!(files(&d.path().join("work")).is_empty());
    // Every visible file seen during the run is there at the end with the size it had then.
    for (f, size) in &seen {
        assert_eq!(
            std::fs::metadata(outbox.join(f)).map(|m| m.len()).ok(),
            Some(*size),
            "{f}"
        );
    }
    let log = m.log();
    eprintln!(
        "1,000 files with a kill -9 in between: {elapsed:.1?}; after the restart: {}",
        log.lines()
            .filter(|l| l.contains("left in the work folder") || l.contains("Finishing a file"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
