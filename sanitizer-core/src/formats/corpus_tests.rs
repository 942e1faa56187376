//! Runs every sample of `corpus/manifest/formats.toml` through [`sanitize_file`] and checks
//! what the manifest promises (verdict, threats, output name and kind, strings present or
//! absent), so the samples and the sanitizers cannot drift apart. The CLI-level run with
//! independent tools is `corpus/verify.py`.

use std::path::Path;

use crate::policy::Policy;
use crate::sanitize_file;

fn strings(v: &toml::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn formats_manifest_holds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let manifest = std::fs::read_to_string(corpus.join("manifest/formats.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    let samples = manifest["sample"].as_array().unwrap();
    assert!(samples.len() >= 15);
    let policy = Policy::default();
    for s in samples {
        let file = s["file"].as_str().unwrap();
        let bytes = std::fs::read(corpus.join(file)).unwrap();
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let out = sanitize_file(&bytes, Some(name), &policy);
        let report = &out.report;
        let verdict = serde_json::to_value(report.verdict).unwrap();
        assert_eq!(
            verdict,
            s["expect"].as_str().unwrap(),
            "{file}: {report:#?}"
        );
        for t in strings(s, "threats") {
            assert!(report.threats().contains(&t.as_str()), "{file}: no {t}");
        }
        let Some(output) = out.output else {
            continue;
        };
        if let Some(n) = s.get("output_name").and_then(|n| n.as_str()) {
            assert_eq!(output.name, n, "{file}");
        }
        if let Some(k) = s.get("output_kind").and_then(|k| k.as_str()) {
            assert_eq!(output.kind.as_str(), k, "{file}");
        }
        let body = output.bytes.as_slice();
        // MUGAI_DUMP_DIR=dir writes outputs and reports there (to run corpus/checks_formats.py).
        if let Some(dir) = std::env::var_os("MUGAI_DUMP_DIR") {
            let dir = Path::new(&dir);
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(&output.name), body).unwrap();
            let report_path = dir.join(format!("{}.report.json", output.name));
            std::fs::write(report_path, report.to_json_line()).unwrap();
        }
        let has = |needle: &str| {
            body.windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
        };
        for needle in strings(s, "must_contain") {
            assert!(has(&needle), "{file}: missing {needle:?}");
        }
        for needle in strings(s, "must_not_contain") {
            assert!(!has(&needle), "{file}: still has {needle:?}");
        }
    }
}

/// Truncated and bit-flipped variants of every sample: each may be blocked, none may panic
/// (a caught panic shows as `internal.error`) or pass raw input bytes through as an error.
#[test]
fn mangled_samples_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/formats");
    let policy = Policy::default();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut runs = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for cut in 1..12 {
            variants.push(bytes[..bytes.len() * cut / 12].to_vec());
        }
        for _ in 0..24 {
            let mut v = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % v.len() as u64) as usize;
                v[i] ^= 1 << (next() % 8);
            }
            variants.push(v);
        }
        for v in variants {
            let out = sanitize_file(&v, Some(&name), &policy);
            runs += 1;
            assert!(
                !out.report
                    .threats()
                    .contains(&crate::threats::INTERNAL_ERROR),
                "{name}: {:?}",
                out.report.items
            );
        }
    }
    assert!(runs > 400);
}

/// With no time left, every sample fails closed on a limit; with too little decoding budget,
/// every sample that decodes anything is blocked too.
#[test]
fn limits_trip_for_every_sample() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/formats");
    let mut no_time = Policy::default();
    no_time.limits.deadline_ms = 0;
    let mut no_decoding = Policy::default();
    no_decoding.limits.max_decoded_bytes = 3;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        for (policy, what) in [(&no_time, "deadline"), (&no_decoding, "decoded bytes")] {
            let out = sanitize_file(&bytes, Some(&name), policy);
            assert!(out.output.is_none(), "{name} passed with no {what} budget");
            assert!(
                out.report.threats().iter().any(|t| t.starts_with("limit.")),
                "{name}: {:?}",
                out.report.items
            );
        }
    }
}
