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
