//! The corpus, checked independently: runs `corpus/verify.py` (Python's email package, zipfile,
//! qpdf, pdftoppm, soffice; no code shared with the sanitizer) against the `mugai` binary built
//! for this test, over every `corpus/manifest/*.toml`.
//!
//! Needs `python3` (3.11+, standard library only); `.ci/run` installs it and the external tools.

use std::path::Path;
use std::process::Command;

#[test]
fn corpus_passes_the_independent_verifier() {
    let mugai = env!("CARGO_BIN_EXE_mugai");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway-daemon lives inside the workspace");
    let verify = root.join("corpus").join("verify.py");
    assert!(verify.is_file(), "{} is missing", verify.display());

    let run = Command::new("python3")
        .arg(&verify)
        .arg("--mugai")
        .arg(mugai)
        .current_dir(root)
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run python3 ({e}): the corpus verifier needs Python 3.11+ \
             (apt-get install python3; .ci/run installs it)"
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");

    // The verifier's last line is its summary: "N passed, M failed".
    let summary = stdout.lines().last().unwrap_or_default();
    let counts: Vec<u32> = summary
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        matches!(counts.as_slice(), [p, 0] if *p > 0),
        "corpus verification failed (exit {:?}), summary {summary:?}:\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(
        out.status.success(),
        "verify.py exited {:?}:\n{stdout}\n{stderr}",
        out.status.code()
    );
}

/// The verifier fails closed: a "sanitizer" that exits 0 and writes nothing fails every sample.
#[test]
fn verifier_rejects_a_binary_that_does_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway-daemon lives inside the workspace");
    let Some(noop) = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("no `true` binary to use as a do-nothing sanitizer");
    };
    let out = Command::new("python3")
        .arg(root.join("corpus").join("verify.py"))
        .args(["--mugai", noop, "--only", "plain_utf8"])
        .current_dir(root)
        .output()
        .expect("python3 is needed for the corpus verifier");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL samples/mail/plain_utf8.eml: ") && stdout.contains("no report"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("0 passed, 1 failed"),
        "{stdout}"
    );
}
