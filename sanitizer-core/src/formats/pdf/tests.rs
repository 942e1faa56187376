//! PDF tests on the generated corpus (`corpus/gen/pdf.py`): outcomes a user cares about — no
//! active content survives, pages keep their number, order and size, Japanese text without
//! embedded fonts still shows, every limit trips as a verdict, hostile files never panic.

use super::*;
use crate::policy::Policy;
use crate::report::Verdict;
use crate::sanitize_file;

macro_rules! sample {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../corpus/samples/pdf/",
            $name
        ))
        .as_slice()
    };
}

fn policy(toml: &str) -> Policy {
    Policy::from_toml(toml).unwrap()
}

fn clean_policy() -> Policy {
    policy("[pdf]\nmode = \"clean\"\n")
}

fn page_sizes(bytes: &[u8]) -> Vec<(f32, f32)> {
    let doc = lopdf::Document::load_mem(bytes).unwrap();
    doc.get_pages()
        .values()
        .map(|id| {
            let page = doc.get_dictionary(*id).unwrap();
            let mb = page.get(b"MediaBox").unwrap().as_array().unwrap();
            let n: Vec<f32> = mb.iter().map(|o| o.as_float().unwrap()).collect();
            (n[2] - n[0], n[3] - n[1])
        })
        .collect()
}

/// Independent check of the output: lopdf finds nothing active, page count as the input.
fn assert_safe(input: &[u8], output: &[u8]) {
    let doc = lopdf::Document::load_mem(output).unwrap();
    assert!(active::find_active(&doc).is_empty());
    let before = lopdf::Document::load_mem(input).map(|d| d.get_pages().len());
    if let Ok(n) = before {
        assert_eq!(doc.get_pages().len(), n);
    }
}

const ACTIVE: &[(&[u8], &[&str])] = &[
    (
        sample!("js_openaction.pdf"),
        &[t::PDF_JAVASCRIPT, t::PDF_OPEN_ACTION],
    ),
    (
        sample!("aa_page.pdf"),
        &[t::PDF_ADDITIONAL_ACTIONS, t::PDF_JAVASCRIPT],
    ),
    (sample!("launch.pdf"), &[t::PDF_LAUNCH]),
    (sample!("uri_annot.pdf"), &[t::PDF_URI]),
    (sample!("embedded_file.pdf"), &[t::PDF_EMBEDDED_FILE]),
    (
        sample!("hex_name_js.pdf"),
        &[
            t::PDF_OBFUSCATED_NAME,
            t::PDF_JAVASCRIPT,
            t::PDF_OPEN_ACTION,
        ],
    ),
    (
        sample!("incremental_js.pdf"),
        &[t::PDF_INCREMENTAL_UPDATE, t::PDF_JAVASCRIPT],
    ),
    (
        sample!("objstm_js.pdf"),
        &[t::PDF_JAVASCRIPT, t::PDF_OPEN_ACTION],
    ),
];

#[test]
fn both_modes_remove_and_report_active_content() {
    for p in [Policy::default(), clean_policy()] {
        for (input, threats) in ACTIVE {
            let out = sanitize_file(input, Some("a.pdf"), &p);
            let file = out.output.as_ref().expect("sanitized, not blocked");
            assert_eq!(out.report.verdict, Verdict::Sanitized);
            for th in *threats {
                assert!(
                    out.report.threats().contains(th),
                    "{th} missing: {:?}",
                    out.report
                );
            }
            assert_safe(input, file.bytes.as_slice());
            recheck(file.bytes.as_slice(), p.pdf.mode).unwrap();
        }
    }
}

#[test]
fn clean_mode_keeps_text_and_drops_history() {
    let input = sample!("multipage_text.pdf");
    let out = sanitize_file(input, Some("a.pdf"), &clean_policy());
    let bytes = out.output.unwrap().bytes.into_vec();
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let text = doc.extract_text(&[1, 3]).unwrap();
    assert!(
        text.contains("Quarterly report") && text.contains("Page 3"),
        "{text}"
    );
    assert!(doc.trailer.get(b"Info").is_err());

    // The incremental update's script is gone, and so is the old revision's xref chain.
    let out = sanitize_file(
        sample!("incremental_js.pdf"),
        Some("a.pdf"),
        &clean_policy(),
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert!(!active::has_incremental_update(&bytes));
    assert!(!bytes.windows(10).any(|w| w == b"JavaScript"));
}

#[test]
fn rasterize_keeps_page_count_order_and_size() {
    let out = sanitize_file(
        sample!("multipage_text.pdf"),
        Some("a.pdf"),
        &Policy::default(),
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(page_sizes(&bytes), vec![(612.0, 792.0); 3]);
    // Crop box and rotation are honoured: 300 x 500 cropped, turned by 90 degrees.
    let out = sanitize_file(
        sample!("rotated_cropped.pdf"),
        Some("a.pdf"),
        &Policy::default(),
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(page_sizes(&bytes), vec![(500.0, 300.0)]);
}

/// Dark pixels in the top part of page 1 of `pdf`, rendered by hayro independently of how
/// the file was written.
fn ink_in_text_area(pdf: &[u8]) -> usize {
    let data: hayro::hayro_syntax::PdfData = std::sync::Arc::new(pdf.to_vec()).into();
    let doc = hayro::hayro_syntax::Pdf::new(data).unwrap();
    let page = doc.pages().first().unwrap();
    let cache = hayro::RenderCache::new();
    let pix = hayro::render(
        page,
        &cache,
        &hayro::hayro_interpret::InterpreterSettings::default(),
        &hayro::RenderSettings::default(),
        &hayro::PixmapSettings {
            x_scale: 1.0,
            y_scale: 1.0,
            bg_color: hayro::vello_cpu::color::palette::css::WHITE,
        },
    );
    let w = usize::from(pix.width());
    pix.data_as_u8_slice()
        .chunks_exact(4)
        .enumerate()
        // Text lines sit at y = 92..200 pt from the top.
        .filter(|(i, px)| (60..220).contains(&(i / w)) && px[0] < 128)
        .count()
}

#[test]
fn japanese_without_embedded_fonts_renders_ink() {
    let input = sample!("ja_nonembedded.pdf");
    let out = crate::testing::sanitize_file(input, Some("見積書.pdf"), &Policy::default());
    assert!(out.report.warnings.is_empty(), "{:?}", out.report.warnings);
    let with_font = ink_in_text_area(out.output.unwrap().bytes.as_slice());
    // 26 glyphs at 28 pt: thousands of dark pixels at 72 DPI.
    assert!(with_font > 2000, "only {with_font} dark pixels");

    // Without the CJK fonts (none lent) the same page is (nearly) blank, and the report says so.
    let out = sanitize_file(input, Some("a.pdf"), &Policy::default());
    assert_eq!(out.report.warnings, vec![WARN_FONT_MISSING.to_owned()]);
    let without = ink_in_text_area(out.output.unwrap().bytes.as_slice());
    assert!(without * 10 < with_font, "{without} vs {with_font}");
}

fn blocked_by(input: &[u8], p: &Policy, threat: &str) {
    let out = sanitize_file(input, Some("a.pdf"), p);
    assert!(out.output.is_none(), "not blocked: {:?}", out.report);
    assert_eq!(out.report.verdict, Verdict::Blocked);
    assert!(out.report.threats().contains(&threat), "{:?}", out.report);
}

#[test]
fn every_limit_trips_as_a_verdict() {
    let d = Policy::default();
    blocked_by(sample!("pages_2000.pdf"), &d, t::LIMIT_PAGES);
    blocked_by(sample!("pages_2000.pdf"), &clean_policy(), t::LIMIT_PAGES);
    blocked_by(sample!("flate_bomb.pdf"), &d, t::LIMIT_DECODED_BYTES);
    blocked_by(
        sample!("flate_bomb.pdf"),
        &clean_policy(),
        t::LIMIT_DECODED_BYTES,
    );
    let text = sample!("multipage_text.pdf");
    blocked_by(
        text,
        &policy("[limits]\nmax_input_bytes = 100\n"),
        t::LIMIT_INPUT_BYTES,
    );
    blocked_by(
        text,
        &policy("[limits]\ndeadline_ms = 1\n"),
        t::LIMIT_DEADLINE,
    );
    // 3 letter pages at 150 DPI are 6.3 million pixels.
    blocked_by(
        text,
        &policy("[limits]\nmax_total_pixels = 5000000\n"),
        t::LIMIT_TOTAL_PIXELS,
    );
    blocked_by(
        text,
        &policy("[limits]\nmax_output_bytes = 1000\n"),
        t::LIMIT_OUTPUT_BYTES,
    );

    // A 200 x 200 inch page is clamped to the per-page pixel limit, not allocated at 150 DPI.
    let p = policy("[limits]\nmax_pixels_per_image = 1000000\n");
    let out = sanitize_file(sample!("huge_page.pdf"), Some("a.pdf"), &p);
    assert_eq!(
        out.report.items[0].detail.as_ref().unwrap()["clamped_pages"],
        1
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(page_sizes(&bytes), vec![(14400.0, 14400.0)]);
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let img = doc
        .objects
        .values()
        .find_map(|o| o.as_stream().ok().filter(|s| s.dict.has(b"Width")))
        .unwrap();
    let w = img.dict.get(b"Width").unwrap().as_i64().unwrap();
    let h = img.dict.get(b"Height").unwrap().as_i64().unwrap();
    assert!(w * h <= 1_000_000 && w > 900, "{w}x{h}");
}

#[test]
fn encrypted_pdfs_are_blocked_unless_the_password_is_empty() {
    for p in [Policy::default(), clean_policy()] {
        blocked_by(sample!("encrypted_rc4.pdf"), &p, t::PDF_ENCRYPTED);
        blocked_by(sample!("encrypted_aes.pdf"), &p, t::PDF_ENCRYPTED);
        let out = sanitize_file(sample!("encrypted_aes.pdf"), Some("a.pdf"), &p);
        // The reason is English, without a Rust enum name.
        let reason = &out.report.items[0].reason;
        assert!(
            !reason.contains('(') && reason.starts_with("encrypted: "),
            "{reason}"
        );
    }
    // Both modes decrypt a file that opens with the empty user password, and say so.
    for p in [Policy::default(), clean_policy()] {
        let out = sanitize_file(sample!("encrypted_empty_password.pdf"), Some("a.pdf"), &p);
        assert_eq!(
            out.report.warnings,
            vec![super::clean::WARN_ENCRYPTED_EMPTY_PASSWORD.to_owned()],
            "{:?}",
            out.report
        );
        let bytes = out.output.unwrap().bytes.into_vec();
        assert_eq!(page_sizes(&bytes).len(), 3);
        assert!(!String::from_utf8_lossy(&bytes).contains("/Encrypt"));
    }
}

#[test]
fn malformed_pdfs_never_panic() {
    let mut inputs: Vec<Vec<u8>> = vec![
        sample!("truncated.pdf").to_vec(),
        sample!("broken_xref.pdf").to_vec(),
        b"%PDF-1.7\n".to_vec(),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj trailer << /Root 1 0 R >>"
            .to_vec(),
    ];
    // Nesting 100,000 deep (a stack-exhaustion attempt on recursive parsers).
    let mut deep = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R /X ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend_from_slice(b" >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    inputs.push(deep);
    // Deterministic corruption of a valid file: bytes overwritten at every 37th position.
    let base = sample!("js_openaction.pdf");
    for step in [7usize, 37, 101] {
        let mut v = base.to_vec();
        for i in (step..v.len()).step_by(step) {
            v[i] = v[i].wrapping_add(0x41);
        }
        inputs.push(v);
    }
    for p in [Policy::default(), clean_policy()] {
        for input in &inputs {
            let out = sanitize_file(input, Some("a.pdf"), &p);
            assert!(
                !out.report.threats().contains(&t::INTERNAL_ERROR),
                "{:?}",
                out.report
            );
            if let Some(f) = out.output {
                recheck(f.bytes.as_slice(), p.pdf.mode).unwrap();
            }
        }
    }
    // A broken xref is recovered: its three pages are rasterized.
    let out = sanitize_file(
        sample!("broken_xref.pdf"),
        Some("a.pdf"),
        &Policy::default(),
    );
    assert_eq!(page_sizes(out.output.unwrap().bytes.as_slice()).len(), 3);
}

#[test]
fn recheck_rejects_active_or_unexpected_structure() {
    for (input, _) in ACTIVE {
        assert!(matches!(
            recheck(input, PdfMode::Clean),
            Err(SanitizeError::Recheck(_))
        ));
    }
    // Hex-escaped names are decoded before the walk.
    assert!(recheck(sample!("hex_name_js.pdf"), PdfMode::Clean).is_err());
    // An ordinary text PDF passes the clean re-check but is not an image-only PDF.
    let text = sample!("multipage_text.pdf");
    recheck(text, PdfMode::Clean).unwrap();
    assert!(matches!(
        recheck(text, PdfMode::Rasterize),
        Err(SanitizeError::Recheck(_))
    ));
    // An /Annots array has no place in rasterize output.
    let err = recheck(sample!("uri_annot.pdf"), PdfMode::Rasterize).unwrap_err();
    assert!(matches!(err, SanitizeError::Recheck(_)));
    assert!(recheck(b"not a pdf", PdfMode::Rasterize).is_err());
}

/// (trailer /Size, highest object number) of a written PDF, read from its bytes, independent
/// of lopdf: `N G obj` headers and the last `/Size` (trailer dictionary or xref stream).
fn size_and_highest(bytes: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(bytes);
    let mut highest = 0u64;
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    for w in tokens.windows(3) {
        if w[2].starts_with("obj")
            && let (Ok(n), Ok(_)) = (w[0].parse::<u64>(), w[1].parse::<u64>())
        {
            highest = highest.max(n);
        }
    }
    let at = text.rfind("/Size").unwrap();
    let size: String = text[at + 5..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (size.parse().unwrap(), highest)
}

#[test]
fn clean_mode_writes_size_one_past_the_highest_object() {
    // Pruned objects (active content removed), object streams, incremental updates.
    for input in [
        sample!("js_openaction.pdf"),
        sample!("objstm_js.pdf"),
        sample!("incremental_js.pdf"),
        sample!("embedded_file.pdf"),
        sample!("multipage_text.pdf"),
        sample!("uri_annot.pdf"),
    ] {
        let out = sanitize_file(input, Some("a.pdf"), &clean_policy());
        let bytes = out.output.unwrap().bytes.into_vec();
        let (size, highest) = size_and_highest(&bytes);
        assert_eq!(size, highest + 1, "{:?}", out.report);
    }
}

/// A three-page PDF whose catalog has no /Pages (a broken page tree viewers still show).
fn without_page_tree() -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    let mut objs = vec!["<< /Type /Catalog >>".to_owned()];
    for i in 0..3 {
        objs.push(format!(
            "<< /Type /Page /MediaBox [0 0 200 100] /Contents {} 0 R >>",
            5 + i
        ));
    }
    objs.push("<< >>".to_owned());
    for _ in 0..3 {
        let s = "0 0 0 rg 10 10 50 50 re f";
        objs.push(format!("<< /Length {} >>\nstream\n{s}\nendstream", s.len()));
    }
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn a_missing_page_tree_is_rebuilt_in_both_modes_with_a_warning() {
    let input = without_page_tree();
    for p in [Policy::default(), clean_policy()] {
        let out = sanitize_file(&input, Some("a.pdf"), &p);
        assert!(out.output.is_some(), "{:?}", out.report);
        assert!(
            out.report
                .warnings
                .contains(&super::clean::WARN_PAGE_TREE_REBUILT.to_owned()),
            "{:?}",
            out.report
        );
        let bytes = out.output.unwrap().bytes.into_vec();
        assert_eq!(page_sizes(&bytes).len(), 3, "{:?}", p.pdf.mode);
    }
}
