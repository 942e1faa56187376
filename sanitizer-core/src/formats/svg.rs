//! SVG: rasterized to PNG (pure-Rust `resvg`), or removed when `images.rasterize_svg` is false.
//! Nothing of the SVG document survives, only its pixels.
//!
//! What an SVG can do and how it is stopped:
//! - scripts (`<script>`, `on*` handlers, `javascript:` URLs): resvg does not run them; reported
//!   as `svg.script`;
//! - external references (`href` to anything but `#fragment` or a `data:` URL, CSS `url()` and
//!   `@import`, external entities): reported as `svg.external_reference`. usvg's default image
//!   resolver **reads local files** named by `<image href>`: we install our own resolver that
//!   accepts only `data:` URLs, and only raster images whose header is within the pixel limit
//!   (or nested SVG, parsed with the same resolver). resvg fetches nothing from the network;
//! - `<foreignObject>` (HTML inside SVG): resvg does not render it; reported as
//!   `svg.foreign_object`;
//! - fonts: text is shaped only with the fonts the caller lends
//!   ([`crate::FontSource::svg_fonts`]; the daemon loads its configured directory once per
//!   process); `@font-face` sources in the SVG are never loaded;
//! - size: the canvas is scaled down so that it stays within `max_pixels_per_image` (and 16384
//!   pixels a side) and charged to the pixel budget before anything is drawn. usvg itself
//!   refuses documents with more than a million elements. Rendering cannot be interrupted, so
//!   the deadline is checked before and after it; the pixel clamp bounds its time.

use std::sync::Arc;

use resvg::tiny_skia;
use resvg::usvg;

use crate::error::SanitizeError;
use crate::limits::LimitKind;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// Longest side of the rendered PNG.
pub const MAX_SIDE: u32 = 16_384;

/// Threats found in an SVG document (by parsing it, not by rendering).
pub fn scan(svg: &str) -> Result<Vec<&'static str>, SanitizeError> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut note = |t: &'static str| {
        if !found.contains(&t) {
            found.push(t);
        }
    };
    let lower = svg.to_ascii_lowercase();
    if lower.contains("<!entity") && (lower.contains("system") || lower.contains("public")) {
        note(threats::SVG_EXTERNAL_REFERENCE);
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(svg, opts)
        .map_err(|e| SanitizeError::Malformed(format!("SVG: {e}")))?;
    for node in doc.descendants() {
        if node.is_text()
            && let Some(t) = node.text()
            && node
                .parent_element()
                .is_some_and(|p| p.tag_name().name().eq_ignore_ascii_case("style"))
            && css_is_external(t)
        {
            note(threats::SVG_EXTERNAL_REFERENCE);
        }
        if !node.is_element() {
            continue;
        }
        let name = node.tag_name().name();
        if name.eq_ignore_ascii_case("script") {
            note(threats::SVG_SCRIPT);
        }
        if name.eq_ignore_ascii_case("foreignObject") {
            note(threats::SVG_FOREIGN_OBJECT);
        }
        for attr in node.attributes() {
            let (an, value) = (attr.name(), attr.value().trim());
            let lv = value.to_ascii_lowercase();
            if an.len() > 2 && an.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("on")) {
                note(threats::SVG_SCRIPT);
            }
            if lv.starts_with("javascript:") || (an == "style" && lv.contains("javascript:")) {
                note(threats::SVG_SCRIPT);
            }
            if an == "href" || an == "src" {
                if lv.starts_with("javascript:") {
                    note(threats::SVG_SCRIPT);
                } else if !(value.starts_with('#') || lv.starts_with("data:") || value.is_empty()) {
                    note(threats::SVG_EXTERNAL_REFERENCE);
                }
            }
            if (an == "style" || lv.contains("url(")) && css_is_external(value) {
                note(threats::SVG_EXTERNAL_REFERENCE);
            }
        }
    }
    Ok(found)
}

/// CSS that loads something from outside the document: `@import`, or `url()` that is not a
/// `#fragment` or `data:` URL.
fn css_is_external(css: &str) -> bool {
    let lower = css.to_ascii_lowercase();
    if lower.contains("@import") {
        return true;
    }
    lower.match_indices("url(").any(|(i, _)| {
        let rest = lower.get(i + 4..).unwrap_or_default();
        let target = rest.trim_start().trim_start_matches(['"', '\'']);
        !(target.starts_with('#') || target.starts_with("data:"))
    })
}

/// The caller's SVG fonts, or an empty database (text is then left out).
fn fonts(cx: &Context<'_>) -> Arc<usvg::fontdb::Database> {
    cx.fonts().and_then(|f| f.svg_fonts()).unwrap_or_else(|| {
        static EMPTY: std::sync::OnceLock<Arc<usvg::fontdb::Database>> = std::sync::OnceLock::new();
        Arc::clone(EMPTY.get_or_init(|| Arc::new(usvg::fontdb::Database::new())))
    })
}

/// Accepts `data:` URLs only, and raster images only when their header is within `max_pixels`.
fn resolver(max_pixels: u64) -> usvg::ImageHrefResolver<'static> {
    usvg::ImageHrefResolver {
        resolve_data: Box::new(
            move |mime: &str, data: Arc<Vec<u8>>, opts: &usvg::Options| {
                let within = |data: &[u8]| {
                    image::ImageReader::new(std::io::Cursor::new(data))
                        .with_guessed_format()
                        .ok()
                        .and_then(|r| r.into_dimensions().ok())
                        .is_some_and(|(w, h)| {
                            u64::from(w).saturating_mul(u64::from(h)) <= max_pixels
                        })
                };
                match image::guess_format(&data) {
                    Ok(image::ImageFormat::Png) if within(&data) => {
                        Some(usvg::ImageKind::PNG(data))
                    }
                    Ok(image::ImageFormat::Jpeg) if within(&data) => {
                        Some(usvg::ImageKind::JPEG(data))
                    }
                    Ok(image::ImageFormat::Gif) if within(&data) => {
                        Some(usvg::ImageKind::GIF(data))
                    }
                    Ok(image::ImageFormat::WebP) if within(&data) => {
                        Some(usvg::ImageKind::WEBP(data))
                    }
                    Ok(_) => None,
                    Err(_) if mime == "image/svg+xml" => {
                        // Parsed with the same options, so the same resolver applies inside.
                        usvg::Tree::from_data_nested(&data, opts)
                            .ok()
                            .map(usvg::ImageKind::SVG)
                    }
                    Err(_) => None,
                }
            },
        ),
        resolve_string: Box::new(|_href: &str, _opts: &usvg::Options| None),
    }
}

/// The pixel size to render `(w, h)` at: the natural size, scaled down to fit the limits.
fn target_size(w: f32, h: f32, max_pixels: u64) -> Option<(u32, u32, f32)> {
    if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
        return None;
    }
    let mut scale = 1.0f64;
    let (wf, hf) = (f64::from(w), f64::from(h));
    let area = wf * hf;
    let max = max_pixels.max(1) as f64;
    if area > max {
        scale = (max / area).sqrt();
    }
    let side = f64::from(MAX_SIDE);
    scale = scale.min(side / wf).min(side / hf);
    let pw = (wf * scale).floor().max(1.0);
    let ph = (hf * scale).floor().max(1.0);
    // Both are within 1..=MAX_SIDE here.
    Some((pw as u32, ph as u32, scale as f32))
}

/// SVG files become PNG pictures.
#[derive(Debug, Clone, Copy)]
pub struct SvgSanitizer;

impl FormatSanitizer for SvgSanitizer {
    fn name(&self) -> &'static str {
        "svg"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let decoded = super::text::decode(input);
        let text = decoded.text.trim_start_matches('\u{FEFF}');
        let found = scan(text)?;
        if !cx.policy().images.rasterize_svg {
            let reason = "SVG is removed by policy (images.rasterize_svg = false)".to_owned();
            return Err(match found.first() {
                Some(t) => SanitizeError::Forbidden { threat: t, reason },
                None => SanitizeError::Unsupported(reason),
            });
        }
        cx.budget().check_deadline()?;
        let max_pixels = cx.budget().limits().max_pixels_per_image;
        let opts = usvg::Options {
            image_href_resolver: resolver(max_pixels),
            fontdb: fonts(cx),
            font_family: "Noto Sans CJK JP".to_owned(),
            languages: vec!["ja".to_owned(), "en".to_owned()],
            resources_dir: None,
            ..usvg::Options::default()
        };
        let tree = usvg::Tree::from_str(text, &opts)
            .map_err(|e| SanitizeError::Malformed(format!("SVG: {e}")))?;
        let size = tree.size();
        let (w, h, scale) = target_size(size.width(), size.height(), max_pixels)
            .ok_or_else(|| SanitizeError::Malformed("SVG has no usable size".into()))?;
        cx.budget().charge_pixels(u64::from(w), u64::from(h))?;
        cx.budget()
            .charge_decoded(u64::from(w).saturating_mul(u64::from(h)).saturating_mul(4))?;
        cx.budget().check_deadline()?;
        let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or_else(|| {
            SanitizeError::limit(LimitKind::Pixels, format!("cannot allocate {w}x{h}"))
        })?;
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(scale, scale),
            &mut pixmap.as_mut(),
        );
        cx.budget().check_deadline()?;
        // tiny-skia pixels are premultiplied RGBA; the PNG wants straight alpha.
        let mut rgba = image::RgbaImage::new(w, h);
        for (dst, src) in rgba.pixels_mut().zip(pixmap.pixels()) {
            let c = src.demultiply();
            *dst = image::Rgba([c.red(), c.green(), c.blue(), c.alpha()]);
        }
        let png = super::image::encode_png(&image::DynamicImage::ImageRgba8(rgba))?;
        let mut detail = serde_json::Map::new();
        detail.insert("converted_to".into(), "png".into());
        detail.insert("width".into(), w.into());
        detail.insert("height".into(), h.into());
        let mut reason = "SVG rasterized to PNG; nothing of the SVG document is kept".to_owned();
        if !found.is_empty() {
            reason.push_str(&format!(" (found: {})", found.join(", ")));
        }
        Ok(
            Rebuilt::new(png, Action::Rasterized, Kind::Image, "image/png")
                .with_extension("png")
                .with_threats(found)
                .with_reason(reason)
                .with_detail(serde_json::Value::Object(detail)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::sanitize_file;

    const HOSTILE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="40" height="20" onload="alert(1)">
<script>alert(document.cookie)</script>
<rect width="40" height="20" fill="#ff0000"/>
<image href="/etc/passwd" width="10" height="10"/>
<image xlink:href="https://tracker.example/p.png" width="10" height="10"/>
<foreignObject width="10" height="10"><div xmlns="http://www.w3.org/1999/xhtml">hi</div></foreignObject>
</svg>"##;

    #[test]
    fn hostile_svg_is_rasterized_and_reported() {
        let out = sanitize_file(HOSTILE.as_bytes(), Some("logo.svg"), &Policy::default());
        let t = out.report.threats();
        for id in [
            threats::SVG_SCRIPT,
            threats::SVG_EXTERNAL_REFERENCE,
            threats::SVG_FOREIGN_OBJECT,
        ] {
            assert!(t.contains(&id), "{id}");
        }
        let file = out.output.unwrap();
        assert_eq!(file.name, "logo.png");
        assert_eq!(file.mime, "image/png");
        let img = image::load_from_memory(file.bytes.as_slice())
            .unwrap()
            .to_rgba8();
        assert_eq!(img.dimensions(), (40, 20));
        // The red rectangle is drawn; nothing of the document survives in the bytes.
        assert_eq!(img.get_pixel(30, 15).0, [255, 0, 0, 255]);
        let bytes = file.bytes.as_slice();
        assert!(!bytes.windows(7).any(|w| w.eq_ignore_ascii_case(b"<script")));
    }

    #[test]
    fn local_files_are_never_read() {
        // A readable local PNG: the default usvg resolver would embed it.
        let dir = std::env::temp_dir().join(format!("mugai-svg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png_path = dir.join("secret.png");
        let green = image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 255, 0, 255]));
        green.save(&png_path).unwrap();
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><image href="{}" width="10" height="10"/></svg>"#,
            png_path.display()
        );
        let out = sanitize_file(svg.as_bytes(), Some("a.svg"), &Policy::default());
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            out.report
                .threats()
                .contains(&threats::SVG_EXTERNAL_REFERENCE)
        );
        let img = image::load_from_memory(out.output.unwrap().bytes.as_slice())
            .unwrap()
            .to_rgba8();
        assert_eq!(img.get_pixel(5, 5).0[3], 0, "the local file was drawn");
    }

    #[test]
    fn data_url_images_are_drawn() {
        let mut png = Vec::new();
        image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 255, 255]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let b64 = base64_encode(&png);
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><image href="data:image/png;base64,{b64}" width="4" height="4"/></svg>"#
        );
        let out = sanitize_file(svg.as_bytes(), Some("a.svg"), &Policy::default());
        assert!(out.report.threats().is_empty());
        let img = image::load_from_memory(out.output.unwrap().bytes.as_slice())
            .unwrap()
            .to_rgba8();
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 255, 255]);
    }

    fn base64_encode(b: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn huge_canvas_is_scaled_into_the_pixel_limit() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200000" height="100000"><rect width="200000" height="100000" fill="black"/></svg>"#;
        let mut policy = Policy::default();
        policy.limits.max_pixels_per_image = 20_000;
        let out = sanitize_file(svg.as_bytes(), Some("big.svg"), &policy);
        let img = image::load_from_memory(out.output.unwrap().bytes.as_slice()).unwrap();
        assert!(u64::from(img.width()) * u64::from(img.height()) <= 20_000);
        assert_eq!((img.width(), img.height()), (200, 100));
    }

    #[test]
    fn removed_when_policy_says_so() {
        let mut policy = Policy::default();
        policy.images.rasterize_svg = false;
        let out = sanitize_file(HOSTILE.as_bytes(), Some("logo.svg"), &policy);
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::SVG_SCRIPT));
        let clean = r#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#;
        let out = sanitize_file(clean.as_bytes(), Some("c.svg"), &policy);
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::UNSUPPORTED_FORMAT));
    }

    #[test]
    fn japanese_text_is_drawn() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60"><text x="5" y="40" font-size="32" font-family="sans-serif" fill="black">無害化</text></svg>"#;
        let inked = |out: crate::FileOutcome| {
            let img = image::load_from_memory(out.output.unwrap().bytes.as_slice())
                .unwrap()
                .to_rgba8();
            img.pixels().filter(|p| p.0[3] > 128).count()
        };
        let with = inked(crate::testing::sanitize_file(
            svg.as_bytes(),
            Some("t.svg"),
            &Policy::default(),
        ));
        assert!(with > 200, "only {with} pixels drawn: fonts not found?");
        // Without lent fonts the core reads none itself: no text is drawn.
        let without = inked(sanitize_file(
            svg.as_bytes(),
            Some("t.svg"),
            &Policy::default(),
        ));
        assert_eq!(without, 0);
    }

    #[test]
    fn exponential_use_expansion_is_refused() {
        // 10^7 rectangles by seven levels of ten <use> each: usvg's node limit refuses it.
        let mut svg = String::from(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><defs><rect id="l0" width="1" height="1"/>"#,
        );
        for i in 1..=7 {
            svg.push_str(&format!("<g id=\"l{i}\">"));
            for j in 0..10 {
                svg.push_str(&format!("<use href=\"#l{}\" x=\"{j}\"/>", i - 1));
            }
            svg.push_str("</g>");
        }
        svg.push_str(r##"</defs><use href="#l7"/></svg>"##);
        let out = sanitize_file(svg.as_bytes(), Some("bomb.svg"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::PARSE_FAILED));
    }
}
