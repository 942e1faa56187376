//! End-to-end tests of the `mugai` binary: exit codes, output naming, reports, quarantine.
//!
//! Inputs are ones the core already handles on its own: HTML (converted to text), executables
//! (blocked) and simple mails (never blocked).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test may panic: that is its failure report"
)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const HTML: &[u8] = b"<html><head><script>stealCookies()</script></head>\
<body><p>\xe8\xa6\x8b\xe7\xa9\x8d\xe6\x9b\xb8 Hello</p></body></html>";
const EXE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00 not really a program";
const MAIL: &[u8] = b"From: sender@example.jp\r\nTo: staff@city.example.lg.jp\r\n\
Subject: meeting\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\n\
Message-ID: <1@example.jp>\r\n\r\nSee you at 10.\r\n";

fn mugai() -> Command {
    let mut c = Command::cargo_bin("mugai").unwrap();
    c.env_remove("RUST_LOG");
    c
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every file under `dir`, relative, sorted, with `/` separators.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    out.sort();
    out
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    sanitizer_core::report::sha256_hex(bytes)
}

/// The report fields CONTRACT.md fixes, with their JSON types.
fn assert_report_shape(r: &Value) {
    let obj = r.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "duration_ms",
            "id",
            "input",
            "items",
            "output",
            "quarantine_id",
            "time",
            "verdict",
            "warnings"
        ]
    );
    // Additive fields (CONTRACT.md allows them): when the line was written, and where from/to.
    assert!(
        r["time"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "time: {r}"
    );
    assert!(r["id"].as_str().is_some_and(|s| !s.is_empty()));
    for k in ["name", "size", "sha256", "kind"] {
        assert!(r["input"].get(k).is_some(), "input.{k} missing: {r}");
    }
    assert!(["clean", "sanitized", "blocked"].contains(&r["verdict"].as_str().unwrap()));
    assert!(r["output"].is_null() || r["output"]["sha256"].is_string());
    assert!(r["duration_ms"].is_u64());
    assert!(r["warnings"].is_array());
    for item in r["items"].as_array().unwrap() {
        for k in ["path", "kind", "action", "threats", "reason"] {
            assert!(item.get(k).is_some(), "item.{k} missing: {item}");
        }
    }
}

#[test]
fn single_html_file_becomes_text_and_the_report_has_the_contract_fields() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "page.html", HTML);
    let out = d.path().join("chosen-by-user");
    let report = d.path().join("r.json");
    mugai()
        .arg("sanitize")
        .arg("--report")
        .arg(&report)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0)
        .stderr("");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("見積書 Hello"), "{text}");
    assert!(!text.contains("stealCookies") && !text.contains("<script"));
    let reports = json_lines(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_report_shape(r);
    assert_eq!(r["verdict"], "sanitized");
    assert_eq!(r["input"]["name"], "page.html");
    assert_eq!(r["input"]["sha256"], sha256(HTML));
    assert_eq!(r["input"]["kind"], "html");
    assert_eq!(r["output"]["kind"], "text");
    // The report names the sanitized file (extension changed), not the path the user chose.
    assert_eq!(r["output"]["name"], "page.txt");
    assert_eq!(r["output"]["sha256"], sha256(text.as_bytes()));
    assert_eq!(r["items"][0]["action"], "converted_to_text");
    assert!(
        r["items"][0]["threats"]
            .as_array()
            .unwrap()
            .contains(&Value::from("html.script"))
    );
    assert!(r["quarantine_id"].is_null());
}

#[test]
fn executable_is_blocked_with_exit_3_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "invoice.pdf", EXE);
    let out = d.path().join("out.pdf");
    mugai()
        .arg("sanitize")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("blocked").and(predicate::str::contains("executable.binary")),
        );
    assert!(!out.exists());
}

#[test]
fn stdout_output_and_stdout_report_together_are_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "a.html", HTML);
    mugai()
        .args(["sanitize", "--report", "-"])
        .arg(&input)
        .args(["-o", "-"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--report -"));
    mugai()
        .args(["mail", "--report", "-"])
        .write_stdin(MAIL)
        .assert()
        .code(2)
        .stdout("");
}

#[test]
fn usage_errors_exit_2() {
    mugai().arg("sanitize").assert().code(2);
    mugai().arg("frobnicate").assert().code(2);
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.html", HTML);
    let b = write(d.path(), "b.html", HTML);
    // Several inputs cannot all go to standard output.
    mugai()
        .arg("sanitize")
        .args([&a, &b])
        .args(["-o", "-"])
        .assert()
        .code(2)
        .stdout("");
    // Several inputs need a directory, not an existing file.
    mugai()
        .arg("sanitize")
        .args([&a, &b])
        .arg("-o")
        .arg(&a)
        .assert()
        .code(2);
    assert_eq!(std::fs::read(&a).unwrap(), HTML);
}

#[test]
fn single_file_to_stdout_with_report_to_file() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "a.html", HTML);
    let report = d.path().join("r.jsonl");
    let out = mugai()
        .arg("sanitize")
        .arg(&input)
        .args(["-o", "-", "--report"])
        .arg(&report)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("見積書") && !text.contains("stealCookies"));
    assert_eq!(
        json_lines(&std::fs::read_to_string(report).unwrap()).len(),
        1
    );
}

#[test]
fn batch_renames_by_type_adds_suffixes_and_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let a1 = write(d.path(), "one/a.html", HTML);
    let a2 = write(d.path(), "two/a.html", b"<p>second</p>");
    let a3 = write(d.path(), "three/a.htm", b"<p>third</p>");
    let exe = write(d.path(), "tool.exe", EXE);
    let out = d.path().join("out");
    write(&out, "a.txt", b"precious, not ours");
    let report = d.path().join("r.jsonl");
    mugai()
        .arg("sanitize")
        .arg("--report")
        .arg(&report)
        .args([&a1, &a2, &a3, &exe])
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3);
    assert_eq!(
        files(&out),
        [
            "a (2).txt",
            "a (3).txt",
            "a (4).txt",
            "a.txt",
            "tool.exe.blocked.txt"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("a.txt")).unwrap(),
        b"precious, not ours"
    );
    assert!(
        std::fs::read_to_string(out.join("a (3).txt"))
            .unwrap()
            .contains("second")
    );
    let note = std::fs::read_to_string(out.join("tool.exe.blocked.txt")).unwrap();
    assert!(note.contains("executable"), "{note}");
    let reports = json_lines(&std::fs::read_to_string(report).unwrap());
    assert_eq!(reports.len(), 4, "one JSON line per input");
    for r in &reports {
        assert_report_shape(r);
    }
    // The report names the file actually written.
    assert_eq!(reports[0]["output"]["name"], "a (2).txt");
    assert_eq!(reports[3]["verdict"], "blocked");
    assert!(reports[3]["output"].is_null());
    assert!(note.contains(reports[3]["id"].as_str().unwrap()));

    // Running again adds more suffixed files; nothing is replaced.
    mugai()
        .arg("sanitize")
        .arg("-q")
        .arg(&a1)
        .arg(&exe)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3)
        .stderr("");
    assert_eq!(files(&out).len(), 7);
    assert!(files(&out).contains(&"tool (2).exe.blocked.txt".to_owned()));
}

#[test]
fn directory_inputs_keep_their_relative_paths() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("inbox");
    write(&inbox, "top.html", HTML);
    write(&inbox, "sub/deep/page.html", HTML);
    write(&inbox, "sub/mail.eml", MAIL);
    write(&inbox, "sub/run.exe", EXE);
    let out = d.path().join("safe");
    mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3);
    assert_eq!(
        files(&out),
        [
            "sub/deep/page.txt",
            "sub/mail.eml",
            "sub/run.exe.blocked.txt",
            "top.txt"
        ]
    );
}

#[test]
fn output_directory_inside_the_input_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.html", HTML);
    write(d.path(), "out/old.html", HTML);
    for out in [
        d.path().join("out"),
        d.path().join("new/deeper"),
        d.path().to_owned(),
        d.path().join("out/../out2"),
    ] {
        mugai()
            .arg("sanitize")
            .arg(d.path())
            .arg("-o")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("inside the input directory"));
    }
    // Nothing was written anywhere.
    assert_eq!(files(&d.path().join("out")), ["old.html"]);
    assert!(!d.path().join("new").exists() && !d.path().join("out2").exists());
}

#[test]
fn single_input_into_an_existing_directory() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "a.html", HTML);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    mugai()
        .arg("sanitize")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    assert_eq!(files(&out), ["a.txt"]);
    // A trailing slash asks for a directory even when it does not exist yet.
    let fresh = d.path().join("fresh");
    mugai()
        .arg("sanitize")
        .arg(&input)
        .arg("-o")
        .arg(format!("{}/", fresh.display()))
        .assert()
        .code(0);
    assert_eq!(files(&fresh), ["a.txt"]);
}

#[test]
fn unreadable_input_is_exit_1_and_wins_over_blocked() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.html");
    mugai()
        .arg("sanitize")
        .arg(&missing)
        .arg("-o")
        .arg(d.path().join("x.txt"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.html"));
    let exe = write(d.path(), "x.exe", EXE);
    let html = write(d.path(), "ok.html", HTML);
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .args([&exe, &missing, &html])
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1);
    // The other inputs were still processed.
    assert_eq!(files(&out), ["ok.txt", "x.exe.blocked.txt"]);
}

#[test]
fn quarantine_keeps_exactly_the_originals_that_were_not_clean() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    let inputs: Vec<(&str, &[u8])> = vec![
        ("page.html", HTML),
        ("tool.exe", EXE),
        ("notes.txt", "plain text 見積書\n".as_bytes()),
        ("m.eml", MAIL),
    ];
    for (name, bytes) in &inputs {
        write(&inbox, name, bytes);
    }
    let q = d.path().join("q");
    let report = d.path().join("r.jsonl");
    mugai()
        .arg("sanitize")
        .arg("--quarantine")
        .arg(&q)
        .arg("--report")
        .arg(&report)
        .arg(&inbox)
        .arg("-o")
        .arg(d.path().join("out"))
        .assert()
        .code(3);
    let reports = json_lines(&std::fs::read_to_string(report).unwrap());
    assert_eq!(reports.len(), inputs.len());
    let stored = files(&q);
    let mut expected_originals = 0;
    for r in &reports {
        let name = r["input"]["name"].as_str().unwrap();
        let bytes = inputs.iter().find(|(n, _)| *n == name).unwrap().1;
        let hash = sha256(bytes);
        let original = format!("{}/{}/original", &hash[..2], hash);
        if r["verdict"] == "clean" {
            assert!(r["quarantine_id"].is_null(), "{name}");
            assert!(!stored.contains(&original), "{name} is clean");
        } else {
            expected_originals += 1;
            assert_eq!(r["quarantine_id"], hash, "{name}");
            assert!(stored.contains(&original), "{name} not stored: {stored:?}");
            assert_eq!(std::fs::read(q.join(&original)).unwrap(), bytes);
            // Its report is stored beside it, with the quarantine id filled in.
            let stored_report: Value = serde_json::from_slice(
                &std::fs::read(q.join(format!(
                    "{}/{}/reports/{}.json",
                    &hash[..2],
                    hash,
                    r["id"].as_str().unwrap()
                )))
                .unwrap(),
            )
            .unwrap();
            // The log line adds `time` and paths (additive fields); the rest is the same.
            let mut logged = r.clone();
            logged.as_object_mut().unwrap().remove("time");
            for k in ["input", "output"] {
                if let Some(o) = logged[k].as_object_mut() {
                    o.remove("path");
                }
            }
            assert_eq!(stored_report, logged);
        }
    }
    // HTML with a script and an executable are never clean; the plain text and the simple mail
    // are clean once their sanitizers exist, which exercises the "clean is not kept" side.
    assert!(expected_originals >= 2, "html and exe are never clean");
    assert_eq!(
        stored.iter().filter(|f| f.ends_with("/original")).count(),
        expected_originals
    );
    assert!(stored.iter().all(|f| !f.contains(".mugai-tmp-")));
}

#[test]
fn mail_from_stdin_to_stdout() {
    let out = mugai()
        .arg("mail")
        .arg("-q")
        .write_stdin(MAIL)
        .assert()
        .code(0)
        .stderr("")
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("X-Mugai-Report-Id:"), "{text}");
}

#[test]
fn mail_with_files_and_report_and_summary() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "in.eml", MAIL);
    let out = d.path().join("safe.eml");
    let report = d.path().join("r.json");
    mugai()
        .arg("mail")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .code(0)
        .stdout("");
    let r = &json_lines(&std::fs::read_to_string(&report).unwrap())[0];
    assert_report_shape(r);
    assert_eq!(r["input"]["kind"], "mail");
    assert_eq!(r["input"]["name"], "in.eml");
    assert_ne!(r["verdict"], "blocked");
    let safe = std::fs::read(&out).unwrap();
    assert_eq!(r["output"]["sha256"], sha256(&safe));
    let id = r["id"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&safe).contains(id));
    // Without --report: a one-line summary on stderr.
    mugai()
        .arg("mail")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("in.eml: ").and(predicate::str::contains("safe.eml")));
}

#[test]
fn mail_sniffed_without_eml_extension_is_sanitized_as_mail() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "message.dat", MAIL);
    let input2 = write(d.path(), "x.html", HTML);
    let out = d.path().join("out");
    let report = d.path().join("r.jsonl");
    mugai()
        .arg("sanitize")
        .args([&input, &input2])
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .code(0);
    assert_eq!(files(&out), ["message.eml", "x.txt"]);
    let r = &json_lines(&std::fs::read_to_string(&report).unwrap())[0];
    assert_eq!(r["input"]["kind"], "mail");
    assert_eq!(r["output"]["kind"], "mail");
}

#[test]
fn policy_prints_defaults_that_parse_back() {
    let out = mugai()
        .arg("policy")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let parsed = sanitizer_core::Policy::from_toml(&text).unwrap();
    assert_eq!(parsed, sanitizer_core::Policy::default());

    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "good.toml", text.as_bytes());
    mugai()
        .arg("check-policy")
        .arg(&good)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("OK"));
    mugai()
        .args(["policy", "--check"])
        .arg(&good)
        .assert()
        .code(0);
}

#[test]
fn bad_policy_is_exit_2_naming_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    let bad = write(d.path(), "strict.toml", b"[links]\nmdoe = \"keep\"\n");
    let input = write(d.path(), "a.html", HTML);
    for args in [
        vec!["check-policy".to_owned()],
        vec!["policy".to_owned(), "--check".to_owned()],
    ] {
        mugai()
            .args(&args)
            .arg(&bad)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("strict.toml").and(predicate::str::contains("mdoe")));
    }
    let out = d.path().join("a.txt");
    mugai()
        .arg("sanitize")
        .arg("--policy")
        .arg(&bad)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("strict.toml").and(predicate::str::contains("mdoe")));
    assert!(!out.exists(), "nothing is sanitized under a bad policy");
    mugai()
        .arg("mail")
        .arg("--policy")
        .arg(d.path().join("missing.toml"))
        .write_stdin(MAIL)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
}

#[test]
fn policy_from_file_is_applied() {
    let d = tempfile::tempdir().unwrap();
    let policy = write(d.path(), "p.toml", b"[links]\nmode = \"remove\"\n");
    let input = write(
        d.path(),
        "a.html",
        b"<p>visit <a href=\"https://evil.example/login\">https://evil.example/login</a></p>",
    );
    let out = mugai()
        .arg("sanitize")
        .arg("--policy")
        .arg(&policy)
        .arg(&input)
        .args(["-o", "-"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("evil.example"), "{text}");
}

#[test]
fn help_teaches_and_version_prints() {
    mugai()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Exit codes").and(predicate::str::contains("sanitize")));
    mugai()
        .args(["sanitize", "--help"])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("a (2).txt")
                .and(predicate::str::contains("Examples"))
                .and(predicate::str::contains("blocked.txt")),
        );
    mugai()
        .args(["mail", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("never blocked"));
    mugai()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("mugai "));
}

#[test]
fn input_over_the_size_limit_is_blocked_with_its_real_size_and_hash() {
    let d = tempfile::tempdir().unwrap();
    let policy = write(d.path(), "p.toml", b"[limits]\nmax_input_bytes = 100\n");
    let big: Vec<u8> = b"<p>"
        .iter()
        .chain(b"x".repeat(70_000).iter())
        .chain(b"</p>".iter())
        .copied()
        .collect();
    let input = write(d.path(), "big.html", &big);
    let report = d.path().join("r.json");
    let out = d.path().join("big.txt");
    mugai()
        .arg("sanitize")
        .arg("--policy")
        .arg(&policy)
        .arg("--report")
        .arg(&report)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3);
    assert!(!out.exists());
    let r = &json_lines(&std::fs::read_to_string(&report).unwrap())[0];
    assert_eq!(r["verdict"], "blocked");
    assert_eq!(r["input"]["size"], big.len() as u64);
    assert_eq!(r["input"]["sha256"], sha256(&big));
    assert!(
        r["items"][0]["threats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("limit.")),
        "{r}"
    );
}

#[test]
fn quiet_silences_the_summary_and_report_file_replaces_it() {
    let d = tempfile::tempdir().unwrap();
    let input = write(d.path(), "a.html", HTML);
    mugai()
        .arg("sanitize")
        .arg(&input)
        .arg("-o")
        .arg(d.path().join("1.txt"))
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "a.html: sanitized [html.script] ->",
        ));
    mugai()
        .arg("sanitize")
        .arg("--quiet")
        .arg(&input)
        .arg("-o")
        .arg(d.path().join("2.txt"))
        .assert()
        .code(0)
        .stderr("");
    mugai()
        .arg("sanitize")
        .arg("--report")
        .arg(d.path().join("r.json"))
        .arg(&input)
        .arg("-o")
        .arg(d.path().join("3.txt"))
        .assert()
        .code(0)
        .stderr("");
}

#[test]
fn special_files_in_a_directory_are_skipped_not_read() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "a.html", HTML);
    let fifo = inbox.join("pipe.html");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(0)
        .stderr(predicate::str::contains("a FIFO, skipped"));
    assert_eq!(files(&out), ["a.txt"]);
}

#[test]
fn walks_skip_symlinks_to_files_and_directories() {
    let d = tempfile::tempdir().unwrap();
    let secret = write(d.path(), "secret/shadow.txt", b"TOP-SECRET root:$6$hash\n");
    write(d.path(), "elsewhere/b.html", HTML);
    let inbox = d.path().join("in");
    write(&inbox, "a.html", HTML);
    std::os::unix::fs::symlink(&secret, inbox.join("copy.txt")).unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere"), inbox.join("linked")).unwrap();
    let out = d.path().join("out");
    let assert = mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(files(&out), ["a.txt"], "{stderr}");
    assert_eq!(
        stderr.matches("a symbolic link, skipped").count(),
        2,
        "{stderr}"
    );
}

#[test]
fn inputs_that_are_not_regular_files_are_refused_without_hanging() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe.txt");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for input in [Path::new("/dev/zero"), fifo.as_path()] {
        let out = d.path().join("o.txt");
        mugai()
            .arg("sanitize")
            .arg(input)
            .arg("-o")
            .arg(&out)
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .code(1)
            .stderr(predicate::str::contains("not a regular file"));
        assert!(!out.exists());
    }
    // In a batch the others still go through.
    let html = write(d.path(), "a.html", HTML);
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .args([fifo.as_path(), Path::new("/dev/zero"), html.as_path()])
        .arg("-o")
        .arg(&out)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("a FIFO, not a regular file"))
        .stderr(predicate::str::contains("a device, not a regular file"));
    assert_eq!(files(&out), ["a.txt"]);
}

#[test]
fn control_characters_in_names_are_escaped_on_the_terminal_and_in_notes() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    let evil = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\nReason: harmless\u{202e}.exe";
    write(&inbox, evil, EXE);
    let out = d.path().join("out");
    let assert = mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !stderr.contains(raw),
            "raw {raw:?} on the terminal: {stderr:?}"
        );
    }
    assert!(!stderr.contains("\nReason: harmless"), "{stderr:?}");
    assert!(stderr.contains("\\u{1b}"), "{stderr:?}");
    let notes = files(&out);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = std::fs::read_to_string(out.join(&notes[0])).unwrap();
    assert!(
        !note.contains('\u{1b}') && !note.contains('\u{202e}'),
        "{note:?}"
    );
    assert_eq!(
        note.matches("\nReason: ").count(),
        1,
        "spoofed Reason line: {note}"
    );
}

#[test]
fn outputs_are_never_wider_than_their_input() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    let private = write(&inbox, "private.html", HTML);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out.join("private.txt")) & !0o600, 0);
    let single = d.path().join("single.txt");
    mugai()
        .arg("sanitize")
        .arg(&private)
        .arg("-o")
        .arg(&single)
        .assert()
        .code(0);
    assert_eq!(mode(&single) & !0o600, 0);
}

#[test]
fn output_names_follow_the_text_and_device_name_rules() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "readme.nfo", b"plain notes\r\n");
    write(&inbox, "CON.html", HTML);
    write(&inbox, "aux/notes.txt", b"plain\n");
    write(&inbox, "data.csv", b"a,b\r\n1,2\r\n");
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    assert_eq!(
        files(&out),
        ["CON_.txt", "aux_/notes.txt", "data.csv", "readme.nfo.txt"]
    );
}

#[test]
fn parallel_batches_keep_input_order_for_names_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = (1..=12)
        .map(|i| {
            let bytes: &[u8] = if i % 5 == 0 {
                EXE
            } else {
                &format!("<p>file number {i}</p>").into_bytes()
            };
            // Same file name everywhere, so every output after the first needs a suffix.
            let name = if i % 5 == 0 { "a.exe" } else { "a.html" };
            write(d.path(), &format!("d{i:02}/{name}"), bytes)
        })
        .collect();
    let out = d.path().join("out");
    let report = d.path().join("r.jsonl");
    mugai()
        .arg("sanitize")
        .args(["--jobs", "4", "--report"])
        .arg(&report)
        .args(&inputs)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(3);
    let reports = json_lines(&std::fs::read_to_string(report).unwrap());
    assert_eq!(reports.len(), 12);
    let mut text_no = 0;
    for (i, r) in (1..=12).zip(&reports) {
        if i % 5 == 0 {
            assert_eq!(r["verdict"], "blocked", "report {i} out of order");
            continue;
        }
        text_no += 1;
        let name = if text_no == 1 {
            "a.txt".to_owned()
        } else {
            format!("a ({text_no}).txt")
        };
        assert_eq!(r["output"]["name"], name.as_str());
        let text = std::fs::read_to_string(out.join(&name)).unwrap();
        assert!(text.contains(&format!("file number {i}")), "{name}: {text}");
    }
    assert_eq!(files(&out).len(), 12);
    assert!(out.join("a (2).exe.blocked.txt").exists());
}

#[test]
fn mail_over_the_size_limit_still_gets_a_safe_message_and_its_real_hash() {
    let d = tempfile::tempdir().unwrap();
    let policy = write(d.path(), "p.toml", b"[limits]\nmax_input_bytes = 100\n");
    let mut mail = MAIL.to_vec();
    mail.extend(b"padding line\r\n".repeat(500));
    let report = d.path().join("r.json");
    let out = mugai()
        .arg("mail")
        .arg("--policy")
        .arg(&policy)
        .arg("--report")
        .arg(&report)
        .write_stdin(mail.clone())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert!(!out.is_empty());
    assert!(!String::from_utf8_lossy(&out).contains("padding line"));
    let r = &json_lines(&std::fs::read_to_string(&report).unwrap())[0];
    assert_eq!(r["input"]["size"], mail.len() as u64);
    assert_eq!(r["input"]["sha256"], sha256(&mail));
    assert_ne!(r["verdict"], "blocked");
}

#[test]
fn standard_input_as_the_only_input() {
    let d = tempfile::tempdir().unwrap();
    let out = mugai()
        .args(["sanitize", "-q", "-", "-o", "-"])
        .write_stdin(HTML)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("見積書") && !text.contains("stealCookies"));
    mugai()
        .args(["sanitize", "-q", "-", "-o"])
        .arg(d.path().join("x.txt"))
        .write_stdin(EXE)
        .assert()
        .code(3);
    assert!(!d.path().join("x.txt").exists());
    let other = write(d.path(), "a.html", HTML);
    mugai()
        .args(["sanitize", "-"])
        .arg(&other)
        .arg("-o")
        .arg(d.path().join("out"))
        .write_stdin(HTML)
        .assert()
        .code(2);
}

// ---- The operator's command line (issue 9) ----

fn report_lines(path: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

#[test]
fn report_file_is_appended_across_runs_with_time_and_relative_paths() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "sub/a.html", HTML);
    write(&inbox, "b.exe", EXE);
    let report = d.path().join("log/reports.jsonl");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    std::fs::write(&report, "{\"earlier\":\"line\"}\n").unwrap();
    for run in 0..2 {
        mugai()
            .arg("sanitize")
            .arg("--report")
            .arg(&report)
            .arg(&inbox)
            .arg("-o")
            .arg(d.path().join(format!("out{run}")))
            .assert()
            .code(3);
    }
    let lines = report_lines(&report);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["earlier"], "line");
    for l in &lines[1..] {
        assert_report_shape(l);
    }
    // Walk order is sorted: b.exe, then sub/a.html; paths relative to the argument.
    assert_eq!(lines[1]["input"]["path"], "b.exe");
    assert_eq!(lines[2]["input"]["path"], "sub/a.html");
    let out = lines[2]["output"]["path"].as_str().unwrap();
    assert!(out.ends_with("out0/sub/a.txt"), "{out}");
    assert!(lines[1]["output"].is_null());
    assert!(
        lines[4]["output"]["path"]
            .as_str()
            .unwrap()
            .ends_with("out1/sub/a.txt")
    );
}

#[test]
fn interrupted_batch_has_a_report_line_for_every_output() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    for i in 0..300 {
        write(&inbox, &format!("f{i:03}.html"), HTML);
    }
    let out = d.path().join("out");
    let report = d.path().join("r.jsonl");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mugai"))
        .args(["sanitize", "-j", "1", "--report"])
        .arg(&report)
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first reports, then Ctrl-C.
    let start = std::time::Instant::now();
    while report_lines(&report).len() < 3 && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let outputs = files(&out).len();
    let lines = report_lines(&report).len();
    assert!(outputs < 300, "the batch was not interrupted");
    assert_eq!(lines, outputs, "every output has its report line");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Interrupted"), "{stderr}");
}

#[test]
fn closed_stderr_and_stdout_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    for i in 0..20 {
        write(&inbox, &format!("f{i}.html"), HTML);
    }
    write(&inbox, "x.exe", EXE);
    let bin = assert_cmd::cargo::cargo_bin("mugai");
    let script = format!(
        "{bin} sanitize {inbox} -o {out} 2>&-; echo \"closed:$?\"; \
         {bin} sanitize {inbox} -o {out2} 2>&1 | head -c 1 >/dev/null; echo \"head:${{PIPESTATUS[0]}}\"; \
         {bin} policy | head -1 >/dev/null; echo \"policy:${{PIPESTATUS[0]}}\"",
        bin = bin.display(),
        inbox = inbox.display(),
        out = d.path().join("out").display(),
        out2 = d.path().join("out2").display(),
    );
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    // Exit 3: one input was blocked; never 101 (a panic).
    assert!(text.contains("closed:3"), "{text}");
    assert!(!text.contains(":101"), "{text}");
    assert!(text.contains("policy:0"), "{text}");
    // Every input was still sanitized with stderr closed.
    assert_eq!(files(&d.path().join("out")).len(), 21);
}

#[test]
fn batch_summary_counts_and_names_what_was_blocked() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "a.html", HTML);
    write(&inbox, "b.txt", b"plain words\r\n");
    write(&inbox, "c.exe", EXE);
    write(&inbox, "d.html", HTML);
    let report = d.path().join("r.jsonl");
    let assert = mugai()
        .arg("sanitize")
        .arg("--report")
        .arg(&report)
        .arg(&inbox)
        .arg("-o")
        .arg(d.path().join("out"))
        .env("LANG", "C")
        .assert()
        .code(3);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for want in [
        "SUMMARY",
        "Inputs: 4",
        "Clean: 1",
        "Sanitized: 2",
        "Blocked: 1",
        "Errors: 0",
        "c.exe: ",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    // --quiet silences it.
    mugai()
        .arg("sanitize")
        .arg("--quiet")
        .arg(&inbox)
        .arg("-o")
        .arg(d.path().join("out2"))
        .assert()
        .code(3)
        .stderr("");
}

#[test]
fn japanese_locale_speaks_japanese_and_notes_give_a_japanese_reason() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "見積書.exe", EXE);
    write(&inbox, "a.html", HTML);
    let out = d.path().join("out");
    let assert = mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .env("LANG", "ja_JP.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .assert()
        .code(3);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(err.contains("無害化の結果"), "{err}");
    assert!(err.contains("入力：2 件"), "{err}");
    assert!(err.contains("a.html：無害化済み"), "{err}");
    assert!(err.contains("見積書.exe：遮断"), "{err}");
    // --lang en wins over the locale.
    let assert = mugai()
        .args(["sanitize", "--lang", "en"])
        .arg(&inbox)
        .arg("-o")
        .arg(d.path().join("out-en"))
        .env("LANG", "ja_JP.UTF-8")
        .assert()
        .code(3);
    assert!(String::from_utf8_lossy(&assert.get_output().stderr).contains("SUMMARY"));
    let note = std::fs::read_to_string(out.join("見積書.exe.blocked.txt")).unwrap();
    assert!(
        note.starts_with("このファイルは無害化できなかったため出力していません"),
        "{note}"
    );
    assert!(note.contains("理由："), "{note}");
    assert!(note.contains("Reason: "), "{note}");
    // No quarantine configured: no promise of the original.
    assert!(
        !note.contains("隔離") && !note.contains("quarantine"),
        "{note}"
    );
}

#[test]
fn several_inputs_into_a_file_name_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.html", HTML);
    let b = write(d.path(), "b.html", HTML);
    mugai()
        .arg("sanitize")
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(d.path().join("single.docx"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("looks like a file name"));
    assert!(!d.path().join("single.docx").exists());
    // A trailing slash says "directory".
    let dir = format!("{}/", d.path().join("single.docx").display());
    mugai()
        .arg("sanitize")
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&dir)
        .assert()
        .code(0);
    assert_eq!(files(&d.path().join("single.docx")), ["a.txt", "b.txt"]);
}

#[test]
fn symlinks_inside_a_tree_are_skipped_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path().join("in");
    write(&inbox, "a.html", HTML);
    let secret = write(d.path(), "secret.txt", b"root-only secret\r\n");
    std::os::unix::fs::symlink(&secret, inbox.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(d.path(), inbox.join("dirlink")).unwrap();
    let out = d.path().join("out");
    mugai()
        .arg("sanitize")
        .arg(&inbox)
        .arg("-o")
        .arg(&out)
        .env("LANG", "C")
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "link.txt: a symbolic link, skipped",
        ))
        .stderr(predicate::str::contains(
            "dirlink: a symbolic link, skipped",
        ));
    assert_eq!(files(&out), ["a.txt"]);
}

#[test]
fn warnings_show_in_the_per_file_line() {
    let d = tempfile::tempdir().unwrap();
    let pdf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/samples/pdf/ja_nonembedded.pdf");
    let config = write(
        d.path(),
        "mugai.toml",
        b"[host]\ncjk_font = \"/nonexistent/font.ttc\"\ncjk_serif_font = \"\"\n",
    );
    mugai()
        .arg("sanitize")
        .arg("--config")
        .arg(&config)
        .arg(&pdf)
        .arg("-o")
        .arg(d.path().join("out.pdf"))
        .env("LANG", "C")
        .assert()
        .code(0)
        .stderr(predicate::str::contains("(warnings: pdf.font_missing)"));
    // With the default configuration the fonts are found: no warning.
    mugai()
        .arg("sanitize")
        .arg(&pdf)
        .arg("-o")
        .arg(d.path().join("out2.pdf"))
        .env("LANG", "C")
        .assert()
        .code(0)
        .stderr(predicate::str::contains("warnings").not());
}

#[test]
fn check_config_reports_what_would_fail_at_run_time() {
    let d = tempfile::tempdir().unwrap();
    let bad = write(
        d.path(),
        "bad.toml",
        b"[host]\ncjk_font = \"/nonexistent/font.ttc\"\n\
          svg_font_dir = \"/nonexistent/fonts\"\nsoffice = \"/nonexistent/soffice\"\n\
          [policy.office]\nconvert_legacy = true\n",
    );
    mugai()
        .arg("check-config")
        .arg(&bad)
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("host.cjk_font"))
        .stderr(predicate::str::contains("host.svg_font_dir"))
        .stderr(predicate::str::contains("host.soffice"));
    // The text layer is built: turning it on or off is a valid policy.
    for value in ["true", "false"] {
        let layer = write(
            d.path(),
            "layer.toml",
            format!("[pdf]\ntext_layer = {value}\n").as_bytes(),
        );
        mugai().arg("check-policy").arg(&layer).assert().success();
    }
    // Host paths are not policy: an old policy file that sets one is told where it went.
    let moved = write(
        d.path(),
        "moved.toml",
        b"[office]\nsoffice = \"/usr/bin/soffice\"\n",
    );
    mugai()
        .arg("check-policy")
        .arg(&moved)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("[host] soffice"));
    // Office conversion off: LibreOffice is not needed, so its absence is no problem.
    let no_office = write(
        d.path(),
        "ok.toml",
        b"[host]\nsoffice = \"/nonexistent\"\n\
          [policy.office]\nconvert_legacy = false\nrasterize = false\n",
    );
    let assert = mugai().arg("check-config").arg(&no_office).assert();
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(!err.contains("host.soffice"), "{err}");
    // The printed defaults check out on a machine with the fonts and LibreOffice installed.
    let defaults = d.path().join("defaults.toml");
    let out = mugai().arg("config").assert().code(0);
    std::fs::write(&defaults, &out.get_output().stdout).unwrap();
    mugai()
        .arg("check-config")
        .arg(&defaults)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("OK"));
}

#[test]
fn quarantine_list_show_get_find_originals_by_report_id_or_hash() {
    let d = tempfile::tempdir().unwrap();
    let q = d.path().join("q");
    let inbox = d.path().join("in");
    write(&inbox, "bad.exe", EXE);
    write(&inbox, "page.html", HTML);
    let report = d.path().join("r.jsonl");
    mugai()
        .arg("sanitize")
        .arg("--quarantine")
        .arg(&q)
        .arg("--report")
        .arg(&report)
        .arg(&inbox)
        .arg("-o")
        .arg(d.path().join("out"))
        .assert()
        .code(3);
    let lines = report_lines(&report);
    let exe = lines
        .iter()
        .find(|l| l["input"]["name"] == "bad.exe")
        .unwrap();
    let report_id = exe["id"].as_str().unwrap();
    let hash = sha256(EXE);

    let assert = mugai()
        .args(["quarantine", "list"])
        .arg(&q)
        .assert()
        .code(0);
    let list = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(&hash) && list.contains("bad.exe") && list.contains("blocked"));

    for key in [report_id, hash.as_str()] {
        mugai()
            .args(["quarantine", "show"])
            .arg(&q)
            .arg(key)
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!("sha256: {hash}")))
            .stdout(predicate::str::contains(report_id));
    }
    mugai()
        .args(["quarantine", "show", "--json"])
        .arg(&q)
        .arg(report_id)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(format!("\"id\":\"{report_id}\"")));

    let got = d.path().join("review/original.bin");
    std::fs::create_dir_all(got.parent().unwrap()).unwrap();
    mugai()
        .args(["quarantine", "get"])
        .arg(&q)
        .arg(report_id)
        .arg("-o")
        .arg(&got)
        .assert()
        .code(0);
    assert_eq!(std::fs::read(&got).unwrap(), EXE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwritten; unknown ids are errors.
    mugai()
        .args(["quarantine", "get"])
        .arg(&q)
        .arg(&hash)
        .arg("-o")
        .arg(&got)
        .assert()
        .code(1);
    mugai()
        .args(["quarantine", "show"])
        .arg(&q)
        .arg("0000-no-such-report")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no quarantine entry has report"));
}

#[test]
fn completions_and_manual_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        mugai()
            .args(["completions", shell])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("mugai"))
            .stdout(predicate::str::contains("quarantine"));
    }
    mugai()
        .arg("man")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(".TH mugai"));
}

#[test]
fn help_teaches_the_relay() {
    let top = mugai().arg("--help").assert().code(0);
    let top = String::from_utf8_lossy(&top.get_output().stdout).into_owned();
    assert!(top.contains("serve"), "{top}");
    let serve = mugai().args(["serve", "--help"]).assert().code(0);
    let serve = String::from_utf8_lossy(&serve.get_output().stdout).into_owned();
    for needle in ["--config", "deploy/mugai.toml", "swaks", "451", "SIGHUP"] {
        assert!(serve.contains(needle), "{needle}: {serve}");
    }
    // Without a quarantine the daemon refuses to start, saying why.
    mugai()
        .arg("serve")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("[quarantine] dir is required"));
}

const DEPLOY_QUARANTINE_DIR: &str = "dir = \"mugai-data/quarantine\"";
const DEPLOY_KEY_FILE: &str = "key_file = \"mugai-data/quarantine.key\"";

#[test]
fn deploy_files_check_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    mugai()
        .arg("check-config")
        .arg(root.join("mugai.toml"))
        .assert()
        .code(0);
    mugai()
        .arg("check-policy")
        .arg(root.join("policy.toml"))
        .assert()
        .code(0);
    // The shipped configuration is the printed default with a quarantine (which `mugai serve`
    // needs) filled in, so the two cannot drift apart.
    let printed = mugai().arg("config").assert().code(0);
    let printed = String::from_utf8(printed.get_output().stdout.clone()).unwrap();
    let expected = printed
        .replacen("\ndir = \"\"\n", &format!("\n{DEPLOY_QUARANTINE_DIR}\n"), 1)
        .replacen("\nkey_file = \"\"\n", &format!("\n{DEPLOY_KEY_FILE}\n"), 1);
    assert_ne!(expected, printed);
    assert_eq!(
        std::fs::read_to_string(root.join("mugai.toml")).unwrap(),
        expected
    );
}

#[test]
fn notices_promise_the_original_only_when_a_quarantine_keeps_it() {
    let d = tempfile::tempdir().unwrap();
    let mail = b"From: sender@example.jp\r\nTo: staff@city.example.lg.jp\r\nSubject: invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n--b\r\n\
Content-Type: application/octet-stream; name=\"a.exe\"\r\n\
Content-Disposition: attachment; filename=\"a.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--b--\r\n";
    let input = write(d.path(), "m.eml", mail);
    let read = |out: &Path| {
        mail_parser::MessageParser::default()
            .parse(&std::fs::read(out).unwrap())
            .map(|m| m.body_text(0).unwrap_or_default().into_owned())
            .unwrap()
    };
    let without = d.path().join("without.eml");
    mugai()
        .arg("mail")
        .arg(&input)
        .arg("-o")
        .arg(&without)
        .assert()
        .code(0);
    let text = read(&without);
    assert!(
        text.contains("このメールは無害化システム（Mugai）により無害化されました。"),
        "{text}"
    );
    assert!(!text.contains("元のファイルが必要な場合"), "{text}");
    assert!(!text.contains("To obtain the original"), "{text}");
    let with = d.path().join("with.eml");
    mugai()
        .arg("mail")
        .arg("--quarantine")
        .arg(d.path().join("q"))
        .arg(&input)
        .arg("-o")
        .arg(&with)
        .assert()
        .code(0);
    let text = read(&with);
    assert!(text.contains("元のファイルが必要な場合"), "{text}");
    assert!(text.contains("To obtain the original"), "{text}");
}

/// Writes a configuration whose quarantine is `q`, encrypted with the key in `key`.
fn keyed_config(dir: &Path, name: &str, q: &Path, key: &Path) -> PathBuf {
    let text = format!(
        "[quarantine]\ndir = {:?}\nkey_file = {:?}\n",
        q.to_str().unwrap(),
        key.to_str().unwrap()
    );
    write(dir, name, text.as_bytes())
}

#[test]
fn quarantine_get_of_an_encrypted_original_needs_the_configured_key() {
    use gateway_daemon::sinks::index::{HeldItem, HoldStatus};
    use gateway_daemon::sinks::vault::Vault;

    let d = tempfile::tempdir().unwrap();
    let q = d.path().join("q");
    let key = d.path().join("etc/quarantine.key");
    let config = keyed_config(d.path(), "mugai.toml", &q, &key);
    let input = write(d.path(), "in/bad.exe", EXE);
    let report = d.path().join("r.jsonl");

    // The command line seals what it quarantines with the configuration's key (made now).
    mugai()
        .arg("sanitize")
        .arg("--config")
        .arg(&config)
        .arg("--report")
        .arg(&report)
        .arg(&input)
        .arg("-o")
        .arg(d.path().join("out/bad.exe"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("created the quarantine key"));
    assert!(key.is_file());
    let report_id = report_lines(&report)[0]["id"].as_str().unwrap().to_owned();
    let hash = sha256(EXE);
    let on_disk = std::fs::read(q.join(&hash[..2]).join(&hash).join("original")).unwrap();
    assert!(on_disk.starts_with(b"MUGAIQ\0\x01"));
    assert!(!on_disk.windows(EXE.len()).any(|w| w == EXE));

    // The relay's vault (same settings) holds a mail beside it, with its index row.
    let settings = gateway_daemon::config::Config::load(&config)
        .unwrap()
        .quarantine;
    let vault = Vault::open(&settings).unwrap();
    let mail_report =
        sanitizer_core::sanitize_file(EXE, Some("attached.exe"), &Default::default()).report;
    let mail = [MAIL, b"\r\n--\r\n" as &[u8]].concat();
    vault
        .hold(
            &mail,
            &HeldItem {
                report_id: mail_report.id.clone(),
                quarantine_id: String::new(),
                received_at: "2026-03-01T09:00:00Z".into(),
                source: "smtp".into(),
                client_ip: Some("192.0.2.1".into()),
                helo: None,
                mail_from: Some("sender@example.jp".into()),
                rcpt_to: vec!["staff@city.example.lg.jp".into()],
                message_id: Some("<1@example.jp>".into()),
                subject: Some("meeting".into()),
                header_from: None,
                file_name: None,
                size: mail.len() as u64,
                verdict: "sanitized".into(),
                threats: vec![],
                report_json: String::new(),
                status: HoldStatus::Held,
                downstream_reply: None,
            },
            &mail_report,
        )
        .unwrap();
    drop(vault);

    // list and show need no key (reports are not encrypted).
    let assert = mugai()
        .args(["quarantine", "list"])
        .arg(&q)
        .assert()
        .code(0);
    let list = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(&hash) && list.contains("bad.exe"), "{list}");
    mugai()
        .args(["quarantine", "show"])
        .arg(&q)
        .arg(&report_id)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(format!("sha256: {hash}")))
        .stdout(predicate::str::contains(format!(
            "size: {} bytes",
            EXE.len()
        )));

    // get without the key: a clear message, nothing written.
    let got = d.path().join("review/original.bin");
    std::fs::create_dir_all(got.parent().unwrap()).unwrap();
    mugai()
        .args(["quarantine", "get"])
        .arg(&q)
        .arg(&report_id)
        .arg("-o")
        .arg(&got)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("encrypted at rest"))
        .stderr(predicate::str::contains("--config"));
    assert!(!got.exists());

    // With the configuration: the original itself, by report id or hash.
    mugai()
        .args(["quarantine", "get", "--config"])
        .arg(&config)
        .arg(&q)
        .arg(&report_id)
        .arg("-o")
        .arg(&got)
        .assert()
        .code(0);
    assert_eq!(std::fs::read(&got).unwrap(), EXE);
    let got_mail = d.path().join("review/mail.eml");
    mugai()
        .args(["quarantine", "get", "--config"])
        .arg(&config)
        .arg(&q)
        .arg(&mail_report.id)
        .arg("-o")
        .arg(&got_mail)
        .assert()
        .code(0);
    assert_eq!(std::fs::read(&got_mail).unwrap(), mail);

    // Another key is refused, naming the key the store uses.
    let other_key = d.path().join("etc/other.key");
    write(d.path(), "etc/other.key", "ab".repeat(32).as_bytes());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = keyed_config(d.path(), "other.toml", &q, &other_key);
    mugai()
        .args(["quarantine", "get", "--config"])
        .arg(&other)
        .arg(&q)
        .arg(&hash)
        .arg("-o")
        .arg(d.path().join("review/x.bin"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("key whose id is"));

    // And nothing is added in clear to the encrypted store by a run without the key.
    mugai()
        .arg("sanitize")
        .arg("--quarantine")
        .arg(&q)
        .arg(write(d.path(), "in2/other.exe", b"MZ another one"))
        .arg("-o")
        .arg(d.path().join("out2/other.exe"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("encrypts originals at rest"));
    assert!(
        !q.join(&sha256(b"MZ another one")[..2])
            .join(sha256(b"MZ another one"))
            .join("original")
            .exists()
    );
}

#[test]
fn audit_verify_says_intact_or_names_the_first_bad_line() {
    use gateway_daemon::config::AuditSettings;
    use gateway_daemon::sinks::audit::{AuditLog, AuditRecord};

    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("audit.jsonl");
    let log = AuditLog::open(&AuditSettings {
        file: path.clone(),
        address_hmac_key_file: PathBuf::new(),
    })
    .unwrap()
    .unwrap();
    for i in 0..4 {
        let report =
            sanitizer_core::sanitize_file(HTML, Some("a.html"), &Default::default()).report;
        let mut rec = AuditRecord::from_report(&report);
        rec.queue_id = format!("Q{i}");
        rec.mail_from = Some("sender@example.jp".into());
        rec.rcpt_to = vec!["staff@city.example.lg.jp".into()];
        log.append(&rec).unwrap();
    }
    drop(log);

    mugai()
        .args(["audit", "verify"])
        .arg(&path)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("chain intact: 4 lines"))
        .stdout(predicate::str::contains("last seq 4"));

    // A changed verdict on line 2: found at line 3, whose prev no longer matches.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("\"sanitized\"", "\"clean\"");
    assert_ne!(lines[1], text.lines().nth(1).unwrap());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    mugai()
        .args(["audit", "verify"])
        .arg(&path)
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("line 3:"))
        .stderr(predicate::str::contains("line 2 was changed"));

    // A deleted line.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.remove(2);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    mugai()
        .args(["audit", "verify"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "line 3: seq 4 where 3 was expected",
        ));

    // A file that is not there is an error too (exit 1), not an intact chain.
    mugai()
        .args(["audit", "verify"])
        .arg(d.path().join("missing.jsonl"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.jsonl"));
}

/// A daemon configuration for the release commands, and a mail held in its quarantine (with
/// its index row); returns the configuration file and the report id.
fn held_mail_for_release(dir: &Path) -> (PathBuf, String) {
    use gateway_daemon::sinks::index::{HeldItem, HoldStatus};
    use gateway_daemon::sinks::vault::Vault;
    let p = |s: &str| dir.join(s).display().to_string();
    let config = write(
        dir,
        "mugai.toml",
        format!(
            "[quarantine]\ndir = {:?}\nkey_file = {:?}\n\n[downstream]\nkind = \"dir\"\n\
             dir = {:?}\n\n[audit]\nfile = {:?}\n\n[http]\nreleased_dir = {:?}\n",
            p("q"),
            p("etc/q.key"),
            p("delivered"),
            p("audit.jsonl"),
            p("released"),
        )
        .as_bytes(),
    );
    let settings = gateway_daemon::config::Config::load(&config)
        .unwrap()
        .quarantine;
    let vault = Vault::open(&settings).unwrap();
    let report =
        sanitizer_core::sanitize_file(EXE, Some("attached.exe"), &Default::default()).report;
    vault
        .hold(
            MAIL,
            &HeldItem {
                report_id: report.id.clone(),
                quarantine_id: String::new(),
                received_at: "2026-03-01T09:00:00Z".into(),
                source: "smtp".into(),
                client_ip: Some("192.0.2.1".into()),
                helo: None,
                mail_from: Some("sender@example.jp".into()),
                rcpt_to: vec!["staff@city.example.lg.jp".into()],
                message_id: Some("<1@example.jp>".into()),
                subject: Some("meeting".into()),
                header_from: None,
                file_name: None,
                size: MAIL.len() as u64,
                verdict: "sanitized".into(),
                threats: vec![],
                report_json: String::new(),
                status: HoldStatus::Delivered,
                downstream_reply: None,
            },
            &report,
        )
        .unwrap();
    (config, report.id)
}

/// `mugai` as the operator `user` (the CLI's actor is `cli:<USER>`).
fn mugai_as(user: &str) -> Command {
    let mut c = mugai();
    c.env_remove("SUDO_USER").env("USER", user);
    c
}

#[test]
fn a_release_needs_a_second_operator_and_is_audited() {
    let d = tempfile::tempdir().unwrap();
    let (config, id) = held_mail_for_release(d.path());

    // A reason is required (usage error).
    mugai_as("alice")
        .args(["quarantine", "request", "--config"])
        .arg(&config)
        .arg(&id)
        .assert()
        .code(2);
    // Alice enters a request for a staff member who phoned in.
    mugai_as("alice")
        .args(["quarantine", "request", "--config"])
        .arg(&config)
        .args([&id, "--as", "suzuki", "--reason", "取引先に電話で確認済み"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("pending"))
        .stdout(predicate::str::contains(
            "requester=suzuki entered_by=cli:alice",
        ));
    // Alice cannot release what she entered herself.
    mugai_as("alice")
        .args(["quarantine", "release", "--config"])
        .arg(&config)
        .args([&id, "--reason", "ok"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("two-person rule"));
    assert!(!d.path().join("delivered").exists() || files(&d.path().join("delivered")).is_empty());
    // Bob can.
    mugai_as("bob")
        .args(["quarantine", "release", "--config"])
        .arg(&config)
        .args([&id, "--reason", "内容確認済み"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("approved"))
        .stdout(predicate::str::contains("decided_by=cli:bob"))
        .stderr(predicate::str::contains("released: 250"));
    let delivered = d.path().join("delivered");
    let eml: Vec<String> = files(&delivered)
        .into_iter()
        .filter(|f| f.ends_with(".eml"))
        .collect();
    assert_eq!(eml.len(), 1);
    let bytes = std::fs::read(delivered.join(&eml[0])).unwrap();
    let head = b"X-Mugai-Released: by cli:bob; request 1\r\n";
    assert!(bytes.starts_with(head));
    assert_eq!(&bytes[head.len()..], MAIL);
    // Released once; again is a conflict.
    mugai_as("carol")
        .args(["quarantine", "release", "--config"])
        .arg(&config)
        .args(["1", "--reason", "again"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already approved and delivered"));
    mugai_as("carol")
        .args(["quarantine", "requests", "--config"])
        .arg(&config)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("request 1: approved"))
        .stdout(predicate::str::contains("delivered_at="));

    let audit = d.path().join("audit.jsonl");
    let kinds: Vec<String> = json_lines(&std::fs::read_to_string(&audit).unwrap())
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["release_requested", "release_approved", "release_delivered"]
    );
    mugai()
        .args(["audit", "verify"])
        .arg(&audit)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("chain intact: 3 lines"));
}

#[test]
fn refuse_and_purge_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let (config, id) = held_mail_for_release(d.path());
    mugai_as("alice")
        .args(["quarantine", "request", "--config"])
        .arg(&config)
        .args([&id, "--reason", "need it"])
        .assert()
        .code(0);
    // Self-refusal is refused too; another operator refuses.
    mugai_as("alice")
        .args(["quarantine", "refuse", "--config"])
        .arg(&config)
        .args([&id, "--reason", "no"])
        .assert()
        .code(1);
    mugai_as("bob")
        .args(["quarantine", "refuse", "--config"])
        .arg(&config)
        .args([&id, "--reason", "マクロ付きのため不可"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("refused"));
    // Purge: the original goes, the row stays marked purged; a second purge is an error.
    mugai_as("alice")
        .args(["quarantine", "purge", "--config"])
        .arg(&config)
        .args([&id, "--reason", "誤送信のため削除"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("1 row(s) marked purged"));
    let hash = sha256(MAIL);
    assert!(!d.path().join("q").join(&hash[..2]).join(&hash).exists());
    mugai_as("alice")
        .args(["quarantine", "purge", "--config"])
        .arg(&config)
        .args([&id, "--reason", "again"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already purged"));
    let audit = d.path().join("audit.jsonl");
    let lines = json_lines(&std::fs::read_to_string(&audit).unwrap());
    let last = lines.last().unwrap();
    assert_eq!(last["kind"], "quarantine_purged");
    assert_eq!(last["actor"], "cli:alice");
    assert_eq!(last["reason"], "誤送信のため削除");
    mugai()
        .args(["audit", "verify"])
        .arg(&audit)
        .assert()
        .code(0);
}

#[test]
fn unlock_opens_a_ppap_file_with_the_password_from_stdin() {
    use gateway_daemon::sinks::index::{HeldItem, HoldStatus};
    use gateway_daemon::sinks::vault::Vault;
    use std::io::Write;
    use zip::unstable::write::FileOptionsExt;

    let d = tempfile::tempdir().unwrap();
    let (config, _) = held_mail_for_release(d.path());
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .with_deprecated_encryption(b"kaigi-0601")
        .unwrap();
    w.start_file("agenda.html", o).unwrap();
    w.write_all(b"<p>agenda</p><script>evil()</script>")
        .unwrap();
    let ppap = w.finish().unwrap().into_inner();
    let report =
        sanitizer_core::sanitize_file(&ppap, Some("agenda.zip"), &Default::default()).report;
    let settings = gateway_daemon::config::Config::load(&config)
        .unwrap()
        .quarantine;
    Vault::open(&settings)
        .unwrap()
        .hold(
            &ppap,
            &HeldItem {
                report_id: report.id.clone(),
                quarantine_id: String::new(),
                received_at: "2026-03-01T09:00:00Z".into(),
                source: "dropdir".into(),
                client_ip: None,
                helo: None,
                mail_from: None,
                rcpt_to: vec![],
                message_id: None,
                subject: None,
                header_from: None,
                file_name: Some("agenda.zip".into()),
                size: ppap.len() as u64,
                verdict: "blocked".into(),
                threats: vec!["archive.encrypted".into()],
                report_json: String::new(),
                status: HoldStatus::Held,
                downstream_reply: None,
            },
            &report,
        )
        .unwrap();

    mugai_as("alice")
        .args(["quarantine", "unlock", "--config"])
        .arg(&config)
        .arg(&report.id)
        .write_stdin("guess\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong password (4 tries left)"));
    let assert = mugai_as("alice")
        .args(["quarantine", "unlock", "--config"])
        .arg(&config)
        .arg(&report.id)
        .write_stdin("kaigi-0601\n")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("unlocked"));
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(!out.contains("kaigi-0601"));
    let zip_out = std::fs::read(d.path().join("released/agenda.zip")).unwrap();
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip_out)).unwrap();
    let mut m = a.by_index(0).unwrap();
    assert!(!m.encrypted());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut m, &mut text).unwrap();
    assert!(text.contains("agenda") && !text.contains("evil"), "{text}");
    drop(m);
    let audit = std::fs::read_to_string(d.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("ppap_unlock_failed") && audit.contains("ppap_unlocked"));
    assert!(!audit.contains("kaigi-0601") && !audit.contains("guess"));
}

// ---- Issue 13: pages as pixels with text (OCR, Office rasterize) -------------------------

/// Whether the external `tool` is installed; in CI (`.ci/run` installs them) it must be.
fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} must be installed in CI"
        );
        eprintln!("NOTICE: {tool} not installed; test skipped");
    }
    found
}

/// Runs `program args` and returns its standard output, failing the test on a non-zero exit.
fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `input` converted to PDF by LibreOffice itself, in `dir`.
fn soffice_pdf(dir: &Path, input: &Path) -> PathBuf {
    let profile = format!("-env:UserInstallation=file://{}/lo-profile", dir.display());
    run_tool(
        "soffice",
        &[
            profile.as_ref(),
            "--headless".as_ref(),
            "--norestore".as_ref(),
            "--convert-to".as_ref(),
            "pdf".as_ref(),
            "--outdir".as_ref(),
            dir.as_os_str(),
            input.as_os_str(),
        ],
    );
    dir.join(input.with_extension("pdf").file_name().unwrap())
}

fn pdf_pages(pdf: &Path) -> u32 {
    let info = String::from_utf8(run_tool("pdfinfo", &[pdf.as_os_str()])).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn pdf_text(pdf: &Path) -> String {
    String::from_utf8(run_tool("pdftotext", &[pdf.as_os_str(), "-".as_ref()])).unwrap()
}

/// A scanned-style page: `text` (English and Japanese) laid out by LibreOffice, rendered to a
/// 150 DPI grey PNG by mutool and wrapped back into a PDF that holds only that image.
fn scanned_pdf(dir: &Path, text: &str) -> PathBuf {
    let txt = write(dir, "scan-src.txt", text.as_bytes());
    let typeset = soffice_pdf(dir, &txt);
    let png = dir.join("scan.png");
    let scan = dir.join("scanned.pdf");
    run_tool(
        "mutool",
        &[
            "draw".as_ref(),
            "-q".as_ref(),
            "-r".as_ref(),
            "150".as_ref(),
            "-c".as_ref(),
            "gray".as_ref(),
            "-o".as_ref(),
            png.as_os_str(),
            typeset.as_os_str(),
        ],
    );
    run_tool(
        "mutool",
        &[
            "convert".as_ref(),
            "-o".as_ref(),
            scan.as_os_str(),
            png.as_os_str(),
        ],
    );
    scan
}

/// Every `/Name` key and `/Subtype` value in `pdf`'s objects, read with `qpdf --json`.
fn pdf_names(pdf: &Path) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, keys: &mut Vec<String>, subtypes: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k.starts_with('/') {
                        keys.push(k.clone());
                    }
                    if k == "/Subtype"
                        && let Some(s) = v.as_str()
                    {
                        subtypes.push(s.to_owned());
                    }
                    walk(v, keys, subtypes);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, keys, subtypes)),
            _ => {}
        }
    }
    let json = run_tool(
        "qpdf",
        &[
            "--json=2".as_ref(),
            "--json-key=qpdf".as_ref(),
            pdf.as_os_str(),
        ],
    );
    let json: Value = serde_json::from_slice(&json).unwrap();
    let (mut keys, mut subtypes) = (Vec::new(), Vec::new());
    walk(&json, &mut keys, &mut subtypes);
    (keys, subtypes)
}

/// A rasterized output holds pages of images, their content streams and (with the text
/// layer) fonts: nothing active, nothing attached, nothing a reader would act on.
fn assert_only_pixels_and_text(pdf: &Path) {
    let (keys, subtypes) = pdf_names(pdf);
    for bad in [
        "/JavaScript",
        "/JS",
        "/AA",
        "/OpenAction",
        "/Names",
        "/EmbeddedFile",
        "/EmbeddedFiles",
        "/Annots",
        "/AcroForm",
        "/XFA",
        "/Launch",
        "/URI",
        "/RichMedia",
        "/OCProperties",
    ] {
        assert!(
            !keys.iter().any(|k| k == bad),
            "{}: has {bad}",
            pdf.display()
        );
    }
    let allowed = [
        "/Image",
        "/Type0",
        "/CIDFontType0",
        "/CIDFontType2",
        "/TrueType",
        "/Type1",
        "/Type3",
        "/CIDFontType0C",
        "/OpenType",
    ];
    for s in &subtypes {
        assert!(
            allowed.contains(&s.as_str()),
            "{}: object of subtype {s}",
            pdf.display()
        );
    }
    assert!(
        subtypes.iter().any(|s| s == "/Image"),
        "{}: no image",
        pdf.display()
    );
}

/// OCR end to end: a page that is only a picture of English and Japanese text comes out with
/// a text layer a reader can search, through the sandboxed worker asking the parent, which
/// runs Tesseract confined. (Needs the core's OCR hook, issue 13 branch i13-a.)
#[test]
fn scanned_pages_get_searchable_text_by_ocr() {
    if !["soffice", "mutool", "tesseract", "pdftotext"]
        .iter()
        .all(|t| have(t))
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let scan = scanned_pdf(
        d.path(),
        "Sanitized invoice number 4521 for the city office\n請求書の金額は五万円です\n",
    );
    assert_eq!(
        pdf_text(&scan).trim(),
        "",
        "the scanned input has no text of its own"
    );
    // The text layer is on by default once issue 13 lands (branch i13-a).
    let policy = write(
        d.path(),
        "ocr.toml",
        b"[pdf]\nmode = \"rasterize\"\nocr = true\nocr_languages = \"jpn+eng\"\n",
    );
    let out = d.path().join("out.pdf");
    for isolation in [true, false] {
        let mut cmd = mugai();
        cmd.arg("sanitize").arg("--policy").arg(&policy);
        if !isolation {
            cmd.arg("--no-isolation");
        }
        cmd.arg(&scan)
            .arg("-o")
            .arg(&out)
            .args(["--report", "-"])
            .assert()
            .code(0);
        assert_only_pixels_and_text(&out);
        let text = pdf_text(&out);
        for word in ["Sanitized", "invoice", "4521", "office", "請求", "金額"] {
            assert!(
                text.contains(word),
                "isolation {isolation}: {word:?} not found by OCR in {text:?}"
            );
        }
        std::fs::remove_file(&out).unwrap();
    }
}

/// Office rasterize end to end: documents become PDFs of pixels with exactly LibreOffice's
/// pages, nothing active inside, and the text still searchable (the text layer; issue 13
/// branch i13-a).
#[test]
fn office_documents_become_pages_of_pixels() {
    if !["soffice", "pdfinfo", "pdftotext", "qpdf"]
        .iter()
        .all(|t| have(t))
    {
        return;
    }
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/office");
    let d = tempfile::tempdir().unwrap();
    // The text layer is on by default once issue 13 lands (branch i13-a).
    let policy = write(
        d.path(),
        "raster.toml",
        b"[office]\nrasterize = true\n[pdf]\nmode = \"rasterize\"\n",
    );
    // Word, Excel, PowerPoint (with an ActiveX control) and OpenDocument text, Japanese included.
    let cases = [
        ("japanese_plain.docx", "docx"),
        ("macro.docm", "docm"),
        ("dde_external.xlsx", "xlsx"),
        ("activex_ole.pptx", "pptx"),
        ("japanese_lo.odt", "odt"),
    ];
    let mut missing_text = Vec::new();
    for (name, _) in cases {
        let input = samples.join(name);
        let reference_dir = d.path().join(format!("ref-{name}"));
        std::fs::create_dir(&reference_dir).unwrap();
        let reference = soffice_pdf(&reference_dir, &input);
        let out = d.path().join(format!("{name}.pdf"));
        let report = mugai()
            .arg("sanitize")
            .arg("--policy")
            .arg(&policy)
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--report", "-"])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let report = json_lines(&String::from_utf8(report).unwrap());
        let r = &report[0];
        assert_eq!(r["verdict"], "sanitized", "{name}: {r}");
        assert_eq!(r["output"]["kind"], "pdf", "{name}: {r}");
        assert!(
            std::fs::read(&out).unwrap().starts_with(b"%PDF-"),
            "{name}: not a PDF"
        );
        assert_eq!(
            pdf_pages(&out),
            pdf_pages(&reference),
            "{name}: page count differs from LibreOffice's own PDF"
        );
        assert_only_pixels_and_text(&out);
        if pdf_text(&out).trim().is_empty() {
            missing_text.push(name);
        }
    }
    assert!(
        missing_text.is_empty(),
        "no searchable text in the rasterized output of {missing_text:?}"
    );
}

#[test]
fn check_config_names_a_missing_tesseract_only_when_ocr_is_on() {
    let d = tempfile::tempdir().unwrap();
    let host = "[host]\ntesseract = \"/nonexistent/tesseract\"\n";
    let on = write(
        d.path(),
        "on.toml",
        format!("{host}[policy.pdf]\nocr = true\n").as_bytes(),
    );
    mugai()
        .arg("check-config")
        .arg(&on)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("host.tesseract"));
    for off in [host.to_owned(), "[host]\ntesseract = \"\"\n".to_owned()] {
        let off = write(d.path(), "off.toml", off.as_bytes());
        let assert = mugai().arg("check-config").arg(&off).assert();
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(!err.contains("host.tesseract"), "{err}");
    }
}
