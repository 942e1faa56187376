//! Text layer tests: the text of the original reads the same in the output (English and
//! Japanese), text that was not visible is not carried over, the OCR hook, and the re-check
//! still refusing anything but our own structure.

use std::collections::BTreeMap;

use lopdf::{Document, Object, dictionary};

use super::font::{LayerFont, glyphless_truetype};
use super::*;
use crate::error::SanitizeError;
use crate::pipeline::{Ocr, OcrWord, Services};
use crate::policy::{PdfMode, Policy};
use crate::sanitize_file_with;

use super::super::recheck;

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

/// A one-page PDF (612 x 792) with Helvetica as /F1 and `content` as its content stream.
fn one_page(content: &str) -> Vec<u8> {
    one_page_rotated(content, 0)
}

/// [`one_page`] with `/Rotate rotate`.
fn one_page_rotated(content: &str, rotate: i64) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let stream = doc.add_object(lopdf::Stream::new(
        dictionary! {},
        content.as_bytes().to_vec(),
    ));
    let pages = doc.new_object_id();
    let page = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages, "Contents" => stream,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        "Rotate" => rotate,
    });
    doc.objects.insert(
        pages,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// The layer's ToUnicode map, read back from the output: CID -> text.
fn to_unicode(doc: &Document) -> BTreeMap<u16, String> {
    let mut map = BTreeMap::new();
    for obj in doc.objects.values() {
        let Ok(d) = obj.as_dict() else { continue };
        if d.get(b"Subtype").ok().and_then(|s| s.as_name().ok()) != Some(b"Type0") {
            continue;
        }
        let id = d.get(b"ToUnicode").unwrap().as_reference().unwrap();
        let cmap = doc
            .get_object(id)
            .unwrap()
            .as_stream()
            .unwrap()
            .decompressed_content()
            .unwrap();
        let text = String::from_utf8(cmap).unwrap();
        let mut in_bfchar = false;
        for line in text.lines() {
            if line.ends_with("beginbfchar") {
                in_bfchar = true;
                continue;
            }
            if line == "endbfchar" {
                in_bfchar = false;
            }
            if !in_bfchar {
                continue;
            }
            let parts: Vec<&str> = line
                .split(['<', '>', ' '])
                .filter(|p| !p.is_empty())
                .collect();
            if parts.len() != 2 {
                continue;
            }
            let cid = u16::from_str_radix(parts[0], 16).unwrap();
            let units: Vec<u16> = (0..parts[1].len() / 4)
                .map(|i| u16::from_str_radix(&parts[1][i * 4..i * 4 + 4], 16).unwrap())
                .collect();
            map.insert(cid, String::from_utf16(&units).unwrap());
        }
    }
    map
}

/// The words of the text layer, page by page, decoded with the output's own ToUnicode map.
fn layer_words(pdf: &[u8]) -> Vec<Vec<String>> {
    let doc = Document::load_mem(pdf).unwrap();
    let map = to_unicode(&doc);
    doc.get_pages()
        .values()
        .map(|page| {
            let content = doc.get_page_content(*page);
            let ops = lopdf::content::Content::decode(&content)
                .unwrap()
                .operations;
            ops.iter()
                .filter(|op| op.operator == "Tj")
                .map(|op| {
                    let bytes = op.operands[0].as_str().unwrap();
                    bytes
                        .chunks(2)
                        .map(|c| map[&u16::from_be_bytes([c[0], c[1]])].as_str())
                        .collect::<String>()
                })
                .collect()
        })
        .collect()
}

fn text_detail(out: &crate::FileOutcome) -> serde_json::Value {
    out.report.items[0].detail.as_ref().unwrap()["text_layer"].clone()
}

#[test]
fn english_text_reads_the_same_in_the_output() {
    let out = crate::testing::sanitize_file(
        sample!("multipage_text.pdf"),
        Some("a.pdf"),
        &Policy::default(),
    );
    let bytes = out.output.as_ref().unwrap().bytes.as_slice().to_vec();
    let words = layer_words(&bytes);
    assert_eq!(words.len(), 3);
    for (i, page) in words.iter().enumerate() {
        let expected = format!("Quarterly report Invoice total: 12,345 JPY Page {}", i + 1);
        assert_eq!(page.join(" "), expected);
    }
    let detail = text_detail(&out);
    assert_eq!(detail["pages"], 3);
    assert_eq!(detail["words"], 24);
    assert_eq!(detail["words_dropped_invisible"], 0);
    recheck(&bytes, PdfMode::Rasterize).unwrap();
    // Without the layer the same file has no font at all.
    let off = Policy::from_toml("[pdf]\ntext_layer = false\n").unwrap();
    let out = crate::testing::sanitize_file(sample!("multipage_text.pdf"), Some("a.pdf"), &off);
    let bytes = out.output.unwrap().bytes.into_vec();
    assert!(layer_words(&bytes).iter().all(Vec::is_empty));
    assert!(!String::from_utf8_lossy(&bytes).contains("/Font"));
}

#[test]
fn japanese_text_reads_the_same_in_the_output() {
    let out = crate::testing::sanitize_file(
        sample!("ja_nonembedded.pdf"),
        Some("見積書.pdf"),
        &Policy::default(),
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    let text = layer_words(&bytes).concat().join(" ");
    assert!(text.contains("無害化ゲートウェイの試験"), "{text}");
    assert!(text.contains("見積書"), "{text}");
}

/// 縦書き: glyphs of a vertical (`-V`) CMap follow each other down the column, so each column
/// is one word, written along the column (a quarter turn clockwise), not one word a character.
#[test]
fn vertical_japanese_keeps_its_columns() {
    let out = crate::testing::sanitize_file(
        sample!("ja_vertical.pdf"),
        Some("通知.pdf"),
        &Policy::default(),
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(
        layer_words(&bytes),
        vec![vec!["縦書きの通知文です", "二行目も縦に書く"]]
    );
    recheck(&bytes, PdfMode::Rasterize).unwrap();
}

#[test]
fn invisible_text_is_not_carried_over() {
    let content = "BT /F1 20 Tf 72 700 Td (Visible) Tj ET\n\
        q BT /F1 20 Tf 3 Tr 72 650 Td (ModeThree) Tj ET Q\n\
        1 1 1 rg BT /F1 20 Tf 72 600 Td (WhiteOnWhite) Tj ET 0 0 0 rg\n\
        q 0 0 10 10 re W n BT /F1 20 Tf 72 550 Td (Clipped) Tj ET Q\n\
        BT /F1 20 Tf 72 500 Td (Covered) Tj ET 1 1 1 rg 60 490 300 40 re f 0 0 0 rg\n\
        BT /F1 20 Tf 700 450 Td (Outside) Tj ET\n\
        BT /F1 20 Tf 72 400 Td (Shown) Tj ET\n";
    let input = one_page(content);
    let out = crate::testing::sanitize_file(&input, Some("a.pdf"), &Policy::default());
    let bytes = out.output.as_ref().unwrap().bytes.as_slice().to_vec();
    assert_eq!(layer_words(&bytes), vec![vec!["Visible", "Shown"]]);
    assert_eq!(text_detail(&out)["words_dropped_invisible"], 5);
    recheck(&bytes, PdfMode::Rasterize).unwrap();
}

#[test]
fn layer_paints_nothing() {
    let input = sample!("multipage_text.pdf");
    let on = crate::testing::sanitize_file(input, Some("a.pdf"), &Policy::default());
    let off = Policy::from_toml("[pdf]\ntext_layer = false\n").unwrap();
    let off = crate::testing::sanitize_file(input, Some("a.pdf"), &off);
    let render = |pdf: &[u8]| {
        let data: hayro::hayro_syntax::PdfData = std::sync::Arc::new(pdf.to_vec()).into();
        let doc = hayro::hayro_syntax::Pdf::new(data).unwrap();
        let pix = hayro::render(
            doc.pages().first().unwrap(),
            &hayro::RenderCache::new(),
            &hayro::hayro_interpret::InterpreterSettings::default(),
            &hayro::RenderSettings::default(),
            &hayro::PixmapSettings {
                x_scale: 1.0,
                y_scale: 1.0,
                bg_color: hayro::vello_cpu::color::palette::css::WHITE,
            },
        );
        pix.data_as_u8_slice().to_vec()
    };
    assert_eq!(
        render(on.output.unwrap().bytes.as_slice()),
        render(off.output.unwrap().bytes.as_slice())
    );
}

#[test]
fn characters_are_filtered_and_non_bmp_maps_through_surrogates() {
    let mut alloc = super::super::rasterize::RefAlloc::for_tests();
    let mut font = LayerFont::new(&mut alloc).unwrap();
    let mut content = pdf_writer::Content::new();
    let words = [
        Word {
            text: "ab\u{202E}c\u{2066}\u{0007}𠮷".into(),
            x0: 10.0,
            y0: 10.0,
            x1: 60.0,
            y1: 20.0,
        },
        Word {
            text: "\u{202D}\u{0000}".into(),
            x0: 10.0,
            y0: 30.0,
            x1: 60.0,
            y1: 40.0,
        },
    ];
    assert_eq!(write_words(&mut content, &mut font, &words, &[]), 1);
    let mut pdf = pdf_writer::Pdf::new();
    font.write(&mut pdf, &mut alloc).unwrap();
    let bytes = pdf.finish();
    let doc = Document::load_mem(&bytes).unwrap();
    let map = to_unicode(&doc);
    let all: String = map.values().cloned().collect();
    assert_eq!(all, "abc𠮷");
    let ops = lopdf::content::Content::decode(&content.finish())
        .unwrap()
        .operations;
    let shown: Vec<_> = ops.iter().filter(|o| o.operator == "Tj").collect();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].operands[0].as_str().unwrap().len(), 8);
    let tr: Vec<_> = ops.iter().filter(|o| o.operator == "Tr").collect();
    assert_eq!(tr[0].operands[0].as_i64().unwrap(), 3);
}

#[test]
fn glyphless_font_is_a_well_formed_truetype() {
    let font = glyphless_truetype();
    let be32 = |o: usize| u32::from_be_bytes(font[o..o + 4].try_into().unwrap());
    let be16 = |o: usize| u16::from_be_bytes(font[o..o + 2].try_into().unwrap());
    assert_eq!(be32(0), 0x0001_0000);
    let n = usize::from(be16(4));
    assert_eq!(n, 9);
    // The whole file sums to the magic value, and every table is in bounds.
    let sum = font.chunks(4).fold(0u32, |s, c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        s.wrapping_add(u32::from_be_bytes(w))
    });
    assert_eq!(sum, 0xB1B0_AFBA);
    let mut tags = Vec::new();
    for i in 0..n {
        let rec = 12 + 16 * i;
        tags.push(font[rec..rec + 4].to_vec());
        assert!(be32(rec + 8) as usize + be32(rec + 12) as usize <= font.len());
    }
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(tags, sorted);
}

struct FakeOcr(Result<Vec<OcrWord>, String>);

impl Ocr for FakeOcr {
    fn recognize(
        &self,
        grey: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        languages: &str,
        _deadline: std::time::Instant,
    ) -> Result<Vec<OcrWord>, String> {
        assert_eq!(grey.len(), (width * height) as usize);
        assert_eq!(dpi, 150);
        assert_eq!(languages, "jpn+eng");
        self.0.clone()
    }
}

fn with_ocr(input: &[u8], ocr: &FakeOcr) -> crate::FileOutcome {
    let policy = Policy::from_toml("[pdf]\nocr = true\n").unwrap();
    let fonts = crate::testing::fonts();
    sanitize_file_with(
        input,
        Some("scan.pdf"),
        &policy,
        Services {
            converter: None,
            fonts: Some(&fonts),
            archive_password: None,
            ocr: Some(ocr),
        },
    )
}

#[test]
fn pages_without_text_are_recognised_by_the_lent_ocr() {
    // A "scan": a drawn rectangle and no text.
    let scan = one_page("0.5 g 100 600 200 50 re f\n");
    let ocr = FakeOcr(Ok(vec![OcrWord {
        text: "スキャン\u{202E}".into(),
        left: 208,
        top: 400,
        width: 417,
        height: 104,
    }]));
    let out = with_ocr(&scan, &ocr);
    let bytes = out.output.as_ref().unwrap().bytes.as_slice().to_vec();
    assert_eq!(layer_words(&bytes), vec![vec!["スキャン"]]);
    let detail = text_detail(&out);
    assert_eq!(detail["pages_ocr"], 1);
    assert_eq!(detail["words"], 1);
    recheck(&bytes, PdfMode::Rasterize).unwrap();
    // Pixels (150 DPI, top left) became points (bottom left).
    let doc = Document::load_mem(&bytes).unwrap();
    let page = *doc.get_pages().values().next().unwrap();
    let ops = lopdf::content::Content::decode(&doc.get_page_content(page))
        .unwrap()
        .operations;
    let tm = ops.iter().find(|o| o.operator == "Tm").unwrap();
    let x = tm.operands[4].as_float().unwrap();
    assert!((x - 208.0 * 72.0 / 150.0).abs() < 0.5, "{x}");

    // A page with text of its own is not sent to the engine.
    let out = with_ocr(sample!("multipage_text.pdf"), &ocr);
    assert_eq!(text_detail(&out)["pages_ocr"], 0);
}

#[test]
fn a_failing_ocr_leaves_the_page_without_a_layer_and_warns() {
    let scan = one_page("0.5 g 100 600 200 50 re f\n");
    let out = with_ocr(&scan, &FakeOcr(Err("tesseract died".into())));
    assert_eq!(
        out.report.warnings,
        vec![super::super::WARN_OCR_FAILED.to_owned()]
    );
    let bytes = out.output.unwrap().bytes.into_vec();
    assert!(layer_words(&bytes).iter().all(Vec::is_empty));
}

/// Our output with one thing planted by `plant`, saved again.
fn planted(plant: impl Fn(&mut Document)) -> Vec<u8> {
    let out = crate::testing::sanitize_file(
        sample!("multipage_text.pdf"),
        Some("a.pdf"),
        &Policy::default(),
    );
    let mut doc = Document::load_mem(out.output.unwrap().bytes.as_slice()).unwrap();
    plant(&mut doc);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

fn refused(bytes: &[u8]) {
    assert!(
        matches!(
            recheck(bytes, PdfMode::Rasterize),
            Err(SanitizeError::Recheck(_))
        ),
        "accepted"
    );
}

#[test]
fn recheck_still_refuses_anything_but_our_layer() {
    // Re-saving alone keeps it acceptable.
    recheck(&planted(|_| {}), PdfMode::Rasterize).unwrap();
    let first_page = |doc: &Document| *doc.get_pages().values().next().unwrap();
    // An annotation with an action.
    refused(&planted(|doc| {
        let action = doc.add_object(
            dictionary! { "S" => "URI", "URI" => lopdf::Object::string_literal("http://x") },
        );
        let annot = doc.add_object(dictionary! {
            "Type" => "Annot", "Subtype" => "Link", "A" => action,
            "Rect" => vec![0.into(), 0.into(), 10.into(), 10.into()],
        });
        let page = first_page(doc);
        doc.get_dictionary_mut(page)
            .unwrap()
            .set("Annots", vec![annot.into()]);
    }));
    // An open action with JavaScript.
    refused(&planted(|doc| {
        let js = doc.add_object(dictionary! { "S" => "JavaScript", "JS" => lopdf::Object::string_literal("app.alert(1)") });
        let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
        doc.get_dictionary_mut(root).unwrap().set("OpenAction", js);
    }));
    // A foreign font, used from the page.
    refused(&planted(|doc| {
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let page = first_page(doc);
        let res = doc
            .get_dictionary_mut(page)
            .unwrap()
            .get_mut(b"Resources")
            .unwrap();
        let fonts = res.as_dict_mut().unwrap().get_mut(b"Font").unwrap();
        fonts.as_dict_mut().unwrap().set("F9", font);
    }));
    // Our font name on another font program.
    refused(&planted(|doc| {
        for obj in doc.objects.values_mut() {
            if let Ok(s) = obj.as_stream_mut()
                && s.dict.has(b"Length1")
            {
                s.set_plain_content(b"\x00\x01\x00\x00 not our font".to_vec());
            }
        }
    }));
    // Visible text in the layer font.
    refused(&planted(|doc| {
        let page = first_page(doc);
        let mut content = doc.get_and_decode_page_content(page).unwrap();
        for op in &mut content.operations {
            if op.operator == "Tr" {
                op.operands = vec![0.into()];
            }
        }
        doc.change_page_content(page, content.encode().unwrap())
            .unwrap();
    }));
}

#[test]
fn ink_check_reads_a_bounded_number_of_pixels() {
    // A 100 x 100 white page with one black pixel in the middle.
    let mut rgba = vec![255u8; 100 * 100 * 4];
    rgba[(50 * 100 + 50) * 4..(50 * 100 + 50) * 4 + 3].fill(0);
    let pixels = Pixels {
        rgba: &rgba,
        width: 100,
        height: 100,
        scale: 1.0,
    };
    let mut budget = pixels.scan_budget();
    assert!(pixels.has_ink([40.0, 40.0, 60.0, 60.0], &mut budget));
    assert!(!pixels.has_ink([0.0, 0.0, 20.0, 20.0], &mut budget));
    // Outside the page: nothing to read, not visible.
    assert!(!pixels.has_ink([200.0, 200.0, 220.0, 220.0], &mut budget));
    // A hostile page of page-sized glyphs spends the budget and stops reading.
    let mut charged = 0;
    for _ in 0..100 {
        let before = budget;
        pixels.has_ink([0.0, 0.0, 100.0, 100.0], &mut budget);
        charged += usize::from(budget < before);
    }
    // 8 pages' worth of pixels in all: at most 10 reads of an 80 x 100 box.
    assert!(charged <= 10, "{charged}");
    assert!(budget < 80 * 100);
}

/// The text matrices of the layer's words on page 1.
fn text_matrices(pdf: &[u8]) -> Vec<Vec<f32>> {
    let doc = Document::load_mem(pdf).unwrap();
    let page = *doc.get_pages().values().next().unwrap();
    lopdf::content::Content::decode(&doc.get_page_content(page))
        .unwrap()
        .operations
        .iter()
        .filter(|o| o.operator == "Tm")
        .map(|o| o.operands.iter().map(|v| v.as_float().unwrap()).collect())
        .collect()
}

#[test]
fn rotated_text_keeps_its_direction_and_order() {
    // Text turned a quarter counter-clockwise on an upright page.
    let input = one_page("BT /F1 14 Tf 0 1 -1 0 300 100 Tm (Sideways text here) Tj ET\n");
    let out = crate::testing::sanitize_file(&input, Some("a.pdf"), &Policy::default());
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(layer_words(&bytes), vec![vec!["Sideways", "text", "here"]]);
    let tm = text_matrices(&bytes);
    assert_eq!(tm[0][..4], [0.0, 1.0, -1.0, 0.0]);
    // Upright text on a page shown turned (/Rotate 90): upright in the output's page space
    // after the turn is applied, lines in order.
    let input = one_page_rotated(
        "BT /F1 14 Tf 72 700 Td 20 TL (The quick brown fox) Tj T* (jumps over) Tj ET\n",
        90,
    );
    let out = crate::testing::sanitize_file(&input, Some("a.pdf"), &Policy::default());
    let bytes = out.output.unwrap().bytes.into_vec();
    assert_eq!(
        layer_words(&bytes),
        vec![vec!["The", "quick", "brown", "fox", "jumps", "over"]]
    );
    for m in text_matrices(&bytes) {
        assert_eq!(m[..4], [0.0, -1.0, 1.0, 0.0]);
    }
}

/// Past its share of the item's time, a page is not sent to the engine at all: it is delivered
/// without a layer, counted as failed (and so warned about), and the document still finishes.
#[test]
fn no_ocr_is_started_without_time_left() {
    struct Never;
    impl Ocr for Never {
        fn recognize(
            &self,
            _: &[u8],
            _: u32,
            _: u32,
            _: u32,
            _: &str,
            _: std::time::Instant,
        ) -> Result<Vec<OcrWord>, String> {
            panic!("the engine was called after the deadline");
        }
    }
    let rgba = vec![255u8; 4 * 4 * 4];
    let pixels = super::words::Pixels {
        rgba: &rgba,
        width: 4,
        height: 4,
        scale: 150.0 / 72.0,
    };
    let found = super::recognize(
        super::OcrRequest {
            engine: &Never,
            languages: "jpn+eng",
            deadline: std::time::Instant::now(),
        },
        &pixels,
    );
    assert!(found.ocr && found.words.is_empty());
    assert!(found.ocr_error.unwrap().contains("no time left"));
}
