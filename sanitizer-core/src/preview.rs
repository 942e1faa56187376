//! Page thumbnails of a **sanitized** output, for a reviewer's safe preview.
//!
//! The quarantine console shows what the recipient got as small pictures, never the original
//! rendered in a browser. [`thumbnails`] takes bytes this crate produced (a sanitized file or
//! message) and draws them as raw RGB pictures no larger than [`PreviewLimits::max_side`]:
//! - a PDF: its first pages, rendered with hayro (fonts from the caller's [`FontSource`]);
//! - a raster image: scaled down;
//! - a message: the PDF and image attachments of the sanitized message, in order;
//! - anything else: nothing (the notice text is the preview then).
//!
//! Callers that hold untrusted bytes (the daemon) run this inside a sandboxed worker and check
//! the sizes of what comes back; the pictures are raw pixels so that the parent parses nothing.
//! A picture that cannot be drawn (a render that panics, an image that does not decode) is
//! skipped: a preview is a convenience, never a verdict.
//!
//! ```
//! use sanitizer_core::preview::{PreviewLimits, thumbnails};
//! use sanitizer_core::report::Kind;
//!
//! let pics = thumbnails(b"plain text", Kind::Text, &PreviewLimits::default(), None);
//! assert!(pics.is_empty());
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf as HayroPdf;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use mail_parser::MimeHeaders;
use serde::{Deserialize, Serialize};

use crate::formats::pdf::fonts::FontResolver;
use crate::pipeline::FontSource;
use crate::report::Kind;

/// How many pictures, and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewLimits {
    /// Most pictures in all (pages plus images). Default 8.
    pub max_images: usize,
    /// Longest side of a picture in pixels. Default 320.
    pub max_side: u32,
}

impl Default for PreviewLimits {
    fn default() -> Self {
        PreviewLimits {
            max_images: 8,
            max_side: 320,
        }
    }
}

impl PreviewLimits {
    /// The largest raw size all pictures together can have, in bytes (RGB).
    pub fn max_bytes(&self) -> u64 {
        let side = u64::from(self.max_side);
        side.saturating_mul(side)
            .saturating_mul(3)
            .saturating_mul(self.max_images as u64)
    }
}

/// One picture: 8-bit RGB, row-major, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// What it shows: `p.1` for a page, or an attachment's name and page.
    pub label: String,
    /// Width in pixels (1..=`max_side`).
    pub width: u32,
    /// Height in pixels (1..=`max_side`).
    pub height: u32,
    /// The pixels.
    pub rgb: Vec<u8>,
}

/// Draws the pictures of `bytes`, a sanitized output of kind `kind` (see the module docs).
pub fn thumbnails(
    bytes: &[u8],
    kind: Kind,
    limits: &PreviewLimits,
    fonts: Option<Arc<dyn FontSource>>,
) -> Vec<Thumbnail> {
    let mut out = Vec::new();
    if limits.max_images == 0 || limits.max_side == 0 {
        return out;
    }
    let fonts = FontResolver::new(fonts);
    collect(bytes, kind, "", limits, &fonts, &mut out, 0);
    out
}

fn collect(
    bytes: &[u8],
    kind: Kind,
    prefix: &str,
    limits: &PreviewLimits,
    fonts: &FontResolver,
    out: &mut Vec<Thumbnail>,
    depth: u8,
) {
    match kind {
        Kind::Pdf => pdf_pages(bytes, prefix, limits, fonts, out),
        Kind::Image => {
            if out.len() < limits.max_images
                && let Some(t) = image(bytes, limits)
            {
                out.push(Thumbnail {
                    label: if prefix.is_empty() {
                        "image".into()
                    } else {
                        prefix.to_owned()
                    },
                    ..t
                });
            }
        }
        Kind::Mail if depth == 0 => mail_parts(bytes, limits, fonts, out),
        _ => {}
    }
}

/// The attachments of a sanitized message that can be drawn.
fn mail_parts(
    bytes: &[u8],
    limits: &PreviewLimits,
    fonts: &FontResolver,
    out: &mut Vec<Thumbnail>,
) {
    let Some(msg) = mail_parser::MessageParser::default().parse(bytes) else {
        return;
    };
    for part in msg.attachments() {
        if out.len() >= limits.max_images {
            return;
        }
        let body = part.contents();
        let kind = crate::sniff::sniff(body);
        if !matches!(kind, Kind::Pdf | Kind::Image) {
            continue;
        }
        let name = part.attachment_name().unwrap_or("attachment");
        let name: String = name.chars().filter(|c| !c.is_control()).take(80).collect();
        collect(body, kind, &name, limits, fonts, out, 1);
    }
}

fn pdf_pages(
    bytes: &[u8],
    prefix: &str,
    limits: &PreviewLimits,
    fonts: &FontResolver,
    out: &mut Vec<Thumbnail>,
) {
    let data: hayro::hayro_syntax::PdfData = Arc::new(bytes.to_vec()).into();
    let Ok(Ok(pdf)) = catch_unwind(AssertUnwindSafe(|| HayroPdf::new(data))) else {
        return;
    };
    let resolve = fonts.clone();
    let settings = InterpreterSettings {
        font_resolver: Arc::new(move |q| resolve.resolve(q)),
        ..InterpreterSettings::default()
    };
    let cache = RenderCache::new();
    for (i, page) in pdf.pages().iter().enumerate() {
        if out.len() >= limits.max_images {
            return;
        }
        let (w, h) = page.render_dimensions();
        if !(w.is_finite() && h.is_finite()) || w < 1.0 || h < 1.0 {
            continue;
        }
        let scale = limits.max_side as f32 / w.max(h);
        let rendered = catch_unwind(AssertUnwindSafe(|| {
            hayro::render(
                page,
                &cache,
                &settings,
                &RenderSettings::default(),
                &PixmapSettings {
                    x_scale: scale,
                    y_scale: scale,
                    bg_color: hayro::vello_cpu::color::palette::css::WHITE,
                },
            )
        }));
        let Ok(pixmap) = rendered else { continue };
        let (pw, ph) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
        if pw == 0 || ph == 0 || pw > limits.max_side || ph > limits.max_side {
            continue;
        }
        let rgb: Vec<u8> = pixmap
            .data_as_u8_slice()
            .chunks_exact(4)
            .flat_map(|px| px.iter().take(3).copied())
            .collect();
        let label = if prefix.is_empty() {
            format!("p.{}", i + 1)
        } else {
            format!("{prefix} p.{}", i + 1)
        };
        out.push(Thumbnail {
            label,
            width: pw,
            height: ph,
            rgb,
        });
    }
}

/// A raster image scaled to fit, or `None` when it does not decode within small limits.
fn image(bytes: &[u8], limits: &PreviewLimits) -> Option<Thumbnail> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(16_384);
    l.max_image_height = Some(16_384);
    l.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(l);
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .ok()?
        .ok()?;
    let small = decoded
        .thumbnail(limits.max_side, limits.max_side)
        .to_rgb8();
    let (width, height) = small.dimensions();
    if width == 0 || height == 0 {
        return None;
    }
    Some(Thumbnail {
        label: String::new(),
        width,
        height,
        rgb: small.into_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, sanitize_file};

    fn sanitized_pdf() -> Vec<u8> {
        let src = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
2 0 obj<</Type/Pages/Kids[3 0 R 4 0 R]/Count 2>>endobj\n\
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]/Contents 5 0 R>>endobj\n\
4 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 200]/Contents 5 0 R>>endobj\n\
5 0 obj<</Length 27>>stream\n0 0 1 rg 10 10 50 50 re f\nendstream endobj\n\
trailer<</Root 1 0 R>>\n%%EOF\n";
        let out = sanitize_file(src, Some("a.pdf"), &Policy::default());
        out.output
            .expect("the PDF is sanitized")
            .bytes
            .as_slice()
            .to_vec()
    }

    #[test]
    fn pdf_pages_become_small_pictures_in_order() {
        let pdf = sanitized_pdf();
        let limits = PreviewLimits {
            max_images: 8,
            max_side: 64,
        };
        let pics = thumbnails(&pdf, Kind::Pdf, &limits, None);
        assert_eq!(pics.len(), 2);
        assert_eq!(pics[0].label, "p.1");
        assert_eq!((pics[0].width, pics[0].height), (64, 32));
        assert_eq!((pics[1].width, pics[1].height), (32, 64));
        for p in &pics {
            assert_eq!(p.rgb.len(), (p.width * p.height * 3) as usize);
        }
        // The square is drawn (blue, or black where the rasterizer stores the page as 1-bit), the
        // corner is white.
        assert!(
            pics[0]
                .rgb
                .chunks_exact(3)
                .any(|px| px[0] < 60 && px[1] < 60)
        );
        assert_eq!(&pics[0].rgb[..3], &[255, 255, 255]);
        let one = PreviewLimits {
            max_images: 1,
            max_side: 64,
        };
        assert_eq!(thumbnails(&pdf, Kind::Pdf, &one, None).len(), 1);
    }

    #[test]
    fn images_scale_and_broken_input_gives_nothing() {
        let img = image::RgbImage::from_pixel(600, 300, image::Rgb([200, 10, 10]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let pics = thumbnails(&png, Kind::Image, &PreviewLimits::default(), None);
        assert_eq!(pics.len(), 1);
        assert_eq!((pics[0].width, pics[0].height), (320, 160));
        assert_eq!(&pics[0].rgb[..3], &[200, 10, 10]);
        assert!(
            thumbnails(
                b"%PDF-1.4 garbage",
                Kind::Pdf,
                &PreviewLimits::default(),
                None
            )
            .is_empty()
        );
        assert!(
            thumbnails(
                b"\x89PNG\r\n\x1a\nxx",
                Kind::Image,
                &PreviewLimits::default(),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn a_mail_shows_its_pdf_attachment() {
        let pdf = sanitized_pdf();
        let b64 = crate::mail::build::base64_string(&pdf);
        let mail = format!(
            "From: a@example.jp\r\nTo: b@example.jp\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        let pics = thumbnails(mail.as_bytes(), Kind::Mail, &PreviewLimits::default(), None);
        assert_eq!(pics.len(), 2);
        assert_eq!(pics[0].label, "r.pdf p.1");
    }
}
