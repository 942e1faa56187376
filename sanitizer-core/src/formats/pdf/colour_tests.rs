//! Colour fidelity of rasterize mode for CMYK input (issue 13: "CMYK comes out lighter and
//! bluer than poppler draws it").
//!
//! Findings these tests pin down: hayro converts DeviceCMYK through its bundled CGATS001
//! (SWOP-like) ICC profile, the same way for fills, raw images and Adobe-style inverted CMYK
//! JPEGs, and the encoder passes those colours through unchanged (exactly for Flate and indexed
//! images, within JPEG error for pictures). poppler's DeviceCMYK path uses its own
//! approximation instead, which is darker and yellower on mixed mid-tones (C20 M40 Y60 K10:
//! poppler 184,134,89, hayro 187,143,103, ΔE76 ≈ 5); poppler drawing the same values as
//! `ICCBased` with this profile agrees with hayro within 2 units. The difference is the choice
//! of profile in hayro-interpret 0.9, which `InterpreterSettings` does not expose.

use pdf_writer::{Content, Filter, Name, Pdf, Rect, Ref};

use crate::policy::Policy;
use crate::sanitize_file;

/// The CMYK test values, one patch each.
const PATCHES: [[f32; 4]; 8] = [
    [0.0, 0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 0.5],
    [0.2, 0.4, 0.6, 0.1],
    [1.0, 1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5, 0.5],
];
/// Page size in points; rows of patches (top of each row from the page top, in points).
const PAGE: (f32, f32) = (400.0, 300.0);
const ROW_FILL: f32 = 10.0;
const ROW_RAW: f32 = 80.0;
const ROW_JPEG: f32 = 150.0;
const ROW_HEIGHT: f32 = 50.0;
const SCALE: f32 = 150.0 / 72.0;

fn byte(v: f32) -> u8 {
    (v * 255.0).round() as u8
}

/// A one-page PDF with the patches as DeviceCMYK fills, as a raw DeviceCMYK image and as an
/// Adobe-style CMYK JPEG (stored inverted, `/Decode [1 0 1 0 1 0 1 0]`), optionally with a
/// CMYK gradient under the page so that the page is encoded as a picture (JPEG).
fn cmyk_pdf(gradient: bool) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let (catalog, pages, page, content_ref, raw_ref, jpeg_ref, grad_ref) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
        Ref::new(7),
    );
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut p = pdf.page(page);
    p.parent(pages)
        .media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1))
        .contents(content_ref);
    p.resources()
        .x_objects()
        .pair(Name(b"Raw"), raw_ref)
        .pair(Name(b"Jpg"), jpeg_ref)
        .pair(Name(b"Grad"), grad_ref);
    drop(p);

    let mut c = Content::new();
    let bottom = |top: f32| PAGE.1 - top - ROW_HEIGHT;
    if gradient {
        c.save_state();
        c.transform([PAGE.0, 0.0, 0.0, PAGE.1, 0.0, 0.0]);
        c.x_object(Name(b"Grad"));
        c.restore_state();
    }
    for (i, [cy, m, y, k]) in PATCHES.iter().enumerate() {
        c.set_fill_cmyk(*cy, *m, *y, *k);
        c.rect(i as f32 * 50.0, bottom(ROW_FILL), 50.0, ROW_HEIGHT);
        c.fill_nonzero();
    }
    for (name, top) in [(&b"Raw"[..], ROW_RAW), (&b"Jpg"[..], ROW_JPEG)] {
        c.save_state();
        c.transform([PAGE.0, 0.0, 0.0, ROW_HEIGHT, 0.0, bottom(top)]);
        c.x_object(Name(name));
        c.restore_state();
    }
    pdf.stream(content_ref, &c.finish());

    let raw: Vec<u8> = PATCHES.iter().flatten().map(|v| byte(*v)).collect();
    pdf.image_xobject(raw_ref, &raw)
        .width(8)
        .height(1)
        .bits_per_component(8)
        .color_space()
        .device_cmyk();

    // 64 x 8 pixels, 8 per patch; jpeg-encoder stores CMYK inverted with an Adobe APP14
    // marker, as Photoshop does.
    let mut pixels = Vec::new();
    for _ in 0..8 {
        for x in 0..64usize {
            pixels.extend(PATCHES[x / 8].iter().map(|v| byte(*v)));
        }
    }
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 95)
        .encode(&pixels, 64, 8, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let mut img = pdf.image_xobject(jpeg_ref, &jpeg);
    img.width(64)
        .height(8)
        .bits_per_component(8)
        .filter(Filter::DctDecode);
    img.color_space().device_cmyk();
    img.decode([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    drop(img);

    let grad: Vec<u8> = (0..64u32 * 64)
        .flat_map(|i| [(i % 64 * 4) as u8, (i / 64 * 4) as u8, 40, 0])
        .collect();
    pdf.image_xobject(grad_ref, &grad)
        .width(64)
        .height(64)
        .bits_per_component(8)
        .color_space()
        .device_cmyk();
    pdf.finish()
}

/// Renders page 1 at 150 DPI with hayro, independently of how the file was written.
fn render(pdf: &[u8]) -> (Vec<u8>, usize) {
    let data: hayro::hayro_syntax::PdfData = std::sync::Arc::new(pdf.to_vec()).into();
    let doc = hayro::hayro_syntax::Pdf::new(data).unwrap();
    let page = doc.pages().first().unwrap();
    let pix = hayro::render(
        page,
        &hayro::RenderCache::new(),
        &hayro::hayro_interpret::InterpreterSettings::default(),
        &hayro::RenderSettings::default(),
        &hayro::PixmapSettings {
            x_scale: SCALE,
            y_scale: SCALE,
            bg_color: hayro::vello_cpu::color::palette::css::WHITE,
        },
    );
    (pix.data_as_u8_slice().to_vec(), usize::from(pix.width()))
}

/// Mean RGB of the middle of patch `i` in the row whose top is `top` points down the page.
fn patch(rgba: &[u8], width: usize, top: f32, i: usize) -> [f32; 3] {
    let cx = ((i as f32 * 50.0 + 25.0) * SCALE) as usize;
    let cy = ((top + ROW_HEIGHT / 2.0) * SCALE) as usize;
    let mut sum = [0f32; 3];
    let mut n = 0.0;
    for y in cy - 10..cy + 10 {
        for x in cx - 10..cx + 10 {
            let p = (y * width + x) * 4;
            for (s, v) in sum.iter_mut().zip(&rgba[p..p + 3]) {
                *s += f32::from(*v);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n)
}

fn rasterized(input: &[u8]) -> Vec<u8> {
    let out = sanitize_file(input, Some("cmyk.pdf"), &Policy::default());
    out.output.unwrap().bytes.into_vec()
}

fn assert_close(a: [f32; 3], b: [f32; 3], tolerance: f32, what: &str) {
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst <= tolerance, "{what}: {a:?} vs {b:?}");
}

#[test]
fn cmyk_colours_survive_rasterizing_unchanged() {
    for (gradient, tolerance) in [(false, 1.0), (true, 4.0)] {
        let input = cmyk_pdf(gradient);
        let (before, w) = render(&input);
        let output = rasterized(&input);
        // Flat patches only: exact (indexed Flate); under a gradient: the JPEG path.
        assert_eq!(output.windows(9).any(|w| w == b"DCTDecode"), gradient);
        let (after, w2) = render(&output);
        assert_eq!(w, w2);
        for row in [ROW_FILL, ROW_RAW, ROW_JPEG] {
            for i in 0..PATCHES.len() {
                assert_close(
                    patch(&before, w, row, i),
                    patch(&after, w, row, i),
                    tolerance,
                    &format!("gradient {gradient}, row {row}, patch {i}"),
                );
            }
        }
    }
}

#[test]
fn cmyk_goes_through_one_profile_for_fills_images_and_inverted_jpegs() {
    let (after, w) = render(&rasterized(&cmyk_pdf(false)));
    // hayro-interpret 0.9's DeviceCMYK profile (see the module docs for poppler's values).
    let expected = [(0, [35.0, 31.0, 32.0]), (5, [187.0, 143.0, 103.0])];
    for row in [ROW_FILL, ROW_RAW, ROW_JPEG] {
        for (i, want) in expected {
            assert_close(
                patch(&after, w, row, i),
                want,
                3.0,
                &format!("row {row}, patch {i}"),
            );
        }
    }
}
