//! Office samples from `corpus/samples/office` (made by `corpus/gen/office.py`) through
//! `sanitize_file`, with the outputs opened by LibreOffice: a rebuilt package that LibreOffice
//! cannot open is a failure, not a success.
//!
//! LibreOffice must be installed in CI (`CI` set): the test fails without it. Elsewhere it prints
//! a notice and checks everything except the LibreOffice round trip.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failure should panic"
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sanitizer_core::{Policy, Verdict, sanitize_file};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/office")
}

fn soffice() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("soffice"))
        .find(|p| p.is_file())
}

fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let name = f.name().unwrap().into_owned();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// (sample, expected verdict, threats that must be reported, output name, text that must survive)
const CASES: &[(&str, Verdict, &[&str], &str, &str)] = &[
    (
        "macro.docm",
        Verdict::Sanitized,
        &["ooxml.vba_macro", "ooxml.macro_enabled_type"],
        "macro.docx",
        "見積書",
    ),
    (
        "remote_template.docx",
        Verdict::Sanitized,
        &["ooxml.attached_template", "ooxml.external_relationship"],
        "remote_template.docx",
        "テンプレート参照",
    ),
    (
        "ddeauto.docx",
        Verdict::Sanitized,
        &["ooxml.dde"],
        "ddeauto.docx",
        "請求金額",
    ),
    (
        "customui.docx",
        Verdict::Sanitized,
        &["ooxml.custom_ui"],
        "customui.docx",
        "リボン",
    ),
    (
        "external_image_link.docx",
        Verdict::Sanitized,
        &["ooxml.external_relationship", "link.rewritten"],
        "external_image_link.docx",
        "ログインページ",
    ),
    (
        "japanese_plain.docx",
        Verdict::Clean,
        &[],
        "japanese_plain.docx",
        "予算執行状況報告書",
    ),
    (
        "dde_external.xlsx",
        Verdict::Sanitized,
        &["ooxml.dde", "ooxml.external_link"],
        "dde_external.xlsx",
        "項目",
    ),
    (
        "activex_ole.pptx",
        Verdict::Sanitized,
        &["ooxml.activex", "ooxml.ole_object"],
        "activex_ole.pptx",
        "会議資料スライド",
    ),
    (
        "macro_listener.odt",
        Verdict::Sanitized,
        &[
            "odf.macro",
            "odf.event_listener",
            "odf.embedded_object",
            "odf.external_link",
        ],
        "macro_listener.odt",
        "マクロ付き ODF 文書",
    ),
    (
        "japanese_lo.odt",
        Verdict::Clean,
        &[],
        "japanese_lo.odt",
        "令和6年度 事業計画書",
    ),
    (
        "budget_lo.ods",
        Verdict::Clean,
        &[],
        "budget_lo.ods",
        "人件費",
    ),
];

#[test]
fn office_samples_are_cleaned_and_open_in_libreoffice() {
    let policy = Policy::default();
    let tmp = std::env::temp_dir().join(format!("mugai-office-test-{}", std::process::id()));
    let outdir = tmp.join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let mut written = Vec::new();
    for (sample, verdict, threats, out_name, text) in CASES {
        let input = std::fs::read(samples().join(sample)).unwrap();
        let outcome = sanitize_file(&input, Some(sample), &policy);
        let report = &outcome.report;
        assert_eq!(report.verdict, *verdict, "{sample}: {report:#?}");
        for t in *threats {
            assert!(
                report.threats().contains(t),
                "{sample}: {t} not reported: {report:#?}"
            );
        }
        let file = outcome.output.unwrap();
        assert_eq!(file.name, *out_name, "{sample}");
        let parts = members(file.bytes.as_slice());
        let first = if out_name.ends_with('x') {
            "[Content_Types].xml"
        } else {
            "mimetype"
        };
        assert_eq!(parts.first().map(|p| p.0.as_str()), Some(first), "{sample}");
        let all: Vec<u8> = parts.iter().flat_map(|(_, d)| d.clone()).collect();
        let all = String::from_utf8_lossy(&all);
        for bad in [
            "vbaProject",
            "activeX",
            "oleObject",
            "customUI",
            "attachedTemplate",
            "DDEAUTO",
            "cmd|",
            "evil.example",
            "script:event-listener",
            "Basic/",
            "draw:object",
        ] {
            assert!(
                !all.contains(bad),
                "{sample}: output still contains {bad:?}"
            );
        }
        assert!(all.contains(text), "{sample}: text {text:?} lost");
        for (name, _) in &parts {
            let lower = name.to_ascii_lowercase();
            assert!(
                !lower.contains("embeddings") && !lower.ends_with(".bin"),
                "{sample}: {name}"
            );
        }
        // Sanitizing the output again changes nothing that matters: it is clean.
        let again = sanitize_file(file.bytes.as_slice(), Some(out_name), &policy);
        assert_eq!(
            again.report.verdict,
            Verdict::Clean,
            "{sample}: {:#?}",
            again.report
        );
        let path = tmp.join(out_name);
        std::fs::write(&path, file.bytes.as_slice()).unwrap();
        written.push(path);
    }

    let Some(soffice) = soffice() else {
        if std::env::var_os("CI").is_some() {
            panic!("soffice is not installed; CI must install LibreOffice for this test");
        }
        eprintln!(
            "NOTICE: soffice not installed; LibreOffice round trip of Office outputs skipped"
        );
        return;
    };
    let profile = tmp.join("profile");
    let status = Command::new(soffice)
        .arg(format!(
            "-env:UserInstallation=file://{}",
            profile.display()
        ))
        .args([
            "--headless",
            "--norestore",
            "--convert-to",
            "pdf",
            "--outdir",
        ])
        .arg(&outdir)
        .args(&written)
        .output()
        .unwrap();
    assert!(status.status.success(), "soffice failed: {status:?}");
    for (path, (sample, _, _, _, text)) in written.iter().zip(CASES) {
        let pdf = outdir.join(path.with_extension("pdf").file_name().unwrap());
        let bytes = std::fs::read(&pdf)
            .unwrap_or_else(|e| panic!("LibreOffice made no PDF of {}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"%PDF-") && bytes.len() > 500,
            "{}",
            pdf.display()
        );
        // What LibreOffice rendered still says what the document said (poppler, when present).
        if let Ok(out) = Command::new("pdftotext").arg(&pdf).arg("-").output()
            && out.status.success()
        {
            let rendered = String::from_utf8_lossy(&out.stdout);
            // pdftotext may put spaces between scripts (令和 6 年度): compare without spaces.
            let squeeze = |s: &str| s.split_whitespace().collect::<String>();
            assert!(
                squeeze(&rendered).contains(&squeeze(text)),
                "{sample}: PDF lacks {text:?}: {rendered}"
            );
        }
    }
    // MUGAI_OFFICE_KEEP=1 keeps the outputs for inspection (corpus/checks_office.py).
    if std::env::var_os("MUGAI_OFFICE_KEEP").is_some() {
        eprintln!("outputs kept in {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// Damaged packages (truncated, bytes flipped, members' data corrupted) never panic the
/// sanitizers and never produce an output that a fresh sanitizing pass would find active.
#[test]
fn damaged_office_files_fail_closed_without_panics() {
    let policy = Policy::default();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut outputs = 0;
    for name in [
        "macro.docm",
        "ddeauto.docx",
        "dde_external.xlsx",
        "activex_ole.pptx",
        "macro_listener.odt",
        "external_image_link.docx",
        "japanese_lo.odt",
        "legacy_book.xls",
    ] {
        let original = std::fs::read(samples().join(name)).unwrap();
        for round in 0..150 {
            let mut bytes = original.clone();
            let len = bytes.len() as u64;
            match round % 3 {
                0 => bytes.truncate((next() % len) as usize),
                _ => {
                    for _ in 0..(1 + next() % 8) {
                        let i = (next() % len) as usize;
                        bytes[i] ^= (next() % 255 + 1) as u8;
                    }
                }
            }
            let out = sanitize_file(&bytes, Some(name), &policy);
            for item in &out.report.items {
                assert!(
                    !item.threats.iter().any(|t| t == "internal.error"),
                    "{name} round {round}: {item:?}"
                );
            }
            if let Some(file) = out.output {
                outputs += 1;
                // What came out is itself stable: sanitizing it again finds nothing active.
                let again = sanitize_file(file.bytes.as_slice(), Some(&file.name), &policy);
                let found: Vec<_> = again
                    .report
                    .threats()
                    .into_iter()
                    .filter(|t| *t != "mime.type_mismatch")
                    .map(str::to_owned)
                    .collect();
                assert!(found.is_empty(), "{name} round {round}: {found:?}");
            }
        }
    }
    // Some damage (e.g. in a compressed member we drop anyway) still leaves a usable package.
    assert!(outputs > 0);
}
