//! Per-page image encoding: the choice that makes rasterized PDFs small enough for mail.
//!
//! A rendered page (RGBA over an opaque white background) is classified in one pass:
//! - **text-like** (mostly not colour, few adjacent mid-tones, i.e. anti-aliased glyph edges rather than
//!   photographs or gradients) → thresholded to 1 bit and CCITT G4 compressed, 10–30× smaller
//!   than 8-bit grey;
//! - **few colours** (at most 256: diagrams, forms, slides) → 8-bit grey or indexed, Flate;
//! - **photographic** → JPEG (`jpeg-encoder`; grey or RGB).
//!
//! Flate runs at a fast level ([`FLATE_LEVEL`]): encoding, not rendering, dominates the
//! pipeline, and level 9 buys little on rendered pixels.

use std::io::Write;

use pdf_writer::{Content, Filter, Name, Pdf, Ref};

use crate::error::SanitizeError;

use super::rasterize::RefAlloc;

/// Flate level for page images: fast, most of the gain of level 9.
pub const FLATE_LEVEL: u32 = 6;
/// JPEG quality for photographic pages.
pub const JPEG_QUALITY: u8 = 75;
/// Luminance below which a pixel of a text-like page becomes black.
const BILEVEL_THRESHOLD: u8 = 150;

/// How the image data of an [`EncodedPage`] is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageImage {
    /// 1 bit per pixel, CCITT G4 (`/CCITTFaxDecode`, `K -1`), black = 0.
    BilevelG4,
    /// 8-bit grey, Flate.
    GreyFlate,
    /// 8-bit indexed RGB with this palette (3 bytes per entry), Flate.
    IndexedFlate(Vec<u8>),
    /// 8-bit grey JPEG.
    GreyJpeg,
    /// RGB JPEG.
    RgbJpeg,
}

impl PageImage {
    /// Short name for statistics and the report detail.
    pub fn label(&self) -> &'static str {
        match self {
            PageImage::BilevelG4 => "g4",
            PageImage::GreyFlate => "grey",
            PageImage::IndexedFlate(_) => "indexed",
            PageImage::GreyJpeg => "grey_jpeg",
            PageImage::RgbJpeg => "jpeg",
        }
    }
}

/// One page, encoded and ready to be written.
#[derive(Debug, Clone)]
pub struct EncodedPage {
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// Storage kind.
    pub image: PageImage,
    /// The encoded stream.
    pub data: Vec<u8>,
}

impl EncodedPage {
    /// Bytes of encoded image data, for the output budget.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Short name of the encoding for statistics.
    pub fn label(&self) -> &'static str {
        self.image.label()
    }
}

/// Writes the image XObject(s) of `page` and paints them into `content` over the whole page
/// (`width_pt` x `height_pt`). Returns the resource names and objects to list on the page.
pub fn write_images(
    out: &mut Pdf,
    alloc: &mut RefAlloc,
    page: &EncodedPage,
    width_pt: f32,
    height_pt: f32,
    content: &mut Content,
) -> Result<Vec<(String, Ref)>, SanitizeError> {
    let image_ref = alloc.bump()?;
    let w = i32::try_from(page.width).map_err(|_| SanitizeError::Internal("width".into()))?;
    let h = i32::try_from(page.height).map_err(|_| SanitizeError::Internal("height".into()))?;
    {
        let mut image = out.image_xobject(image_ref, &page.data);
        image.width(w).height(h);
        match &page.image {
            PageImage::BilevelG4 => {
                image.filter(Filter::CcittFaxDecode);
                image.color_space().device_gray();
                image.bits_per_component(1);
                image.decode_parms().k(-1).columns(w).rows(h);
            }
            PageImage::GreyFlate => {
                image.filter(Filter::FlateDecode);
                image.color_space().device_gray();
                image.bits_per_component(8);
            }
            PageImage::IndexedFlate(palette) => {
                image.filter(Filter::FlateDecode);
                let hival = i32::try_from((palette.len() / 3).saturating_sub(1))
                    .map_err(|_| SanitizeError::Internal("palette".into()))?;
                image
                    .color_space()
                    .indexed(Name(b"DeviceRGB"), hival, palette);
                image.bits_per_component(8);
            }
            PageImage::GreyJpeg => {
                image.filter(Filter::DctDecode);
                image.color_space().device_gray();
                image.bits_per_component(8);
            }
            PageImage::RgbJpeg => {
                image.filter(Filter::DctDecode);
                image.color_space().device_rgb();
                image.bits_per_component(8);
            }
        }
    }
    content.save_state();
    content.transform([width_pt, 0.0, 0.0, height_pt, 0.0, 0.0]);
    content.x_object(Name(b"Im0"));
    content.restore_state();
    Ok(vec![("Im0".to_owned(), image_ref)])
}

/// What one pass over the pixels found.
#[derive(Debug, Default)]
struct Stats {
    colourful: u64,
    adjacent_midtones: u64,
    pixels: u64,
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    // Rec. 601 weights in 8-bit fixed point (77 + 150 + 29 = 256): no division in the hot loop.
    let l = (u32::from(r) * 77 + u32::from(g) * 150 + u32::from(b) * 29) >> 8;
    u8::try_from(l).unwrap_or(u8::MAX)
}

/// Whether every byte is 255. A branch-free AND reduction, which the compiler vectorises (an
/// early-exit `all` runs byte by byte and was the hottest loop of the encoder).
#[inline]
fn all_white(bytes: &[u8]) -> bool {
    bytes.iter().fold(255u8, |acc, b| acc & b) == 255
}

fn analyse(rgba: &[u8], width: usize) -> Stats {
    let mut s = Stats::default();
    for row in rgba.chunks_exact(width.saturating_mul(4).max(4)) {
        let mut prev_mid = false;
        // 16 pixels at a time: an all-white block (most of a text page) is one vectorised
        // comparison instead of 16 luma computations.
        let blocks = row.chunks_exact(64);
        let tail = blocks.remainder();
        for block in blocks {
            s.pixels += 16;
            if all_white(block) {
                prev_mid = false;
                continue;
            }
            for px in block.chunks_exact(4) {
                pixel(px, &mut s, &mut prev_mid);
            }
        }
        for px in tail.chunks_exact(4) {
            s.pixels += 1;
            pixel(px, &mut s, &mut prev_mid);
        }
    }
    s
}

/// Adds one non-block pixel to the statistics (`pixels` is counted by the caller).
#[inline]
fn pixel(px: &[u8], s: &mut Stats, prev_mid: &mut bool) {
    let (r, g, b) = match px {
        [r, g, b, _] => (*r, *g, *b),
        _ => return,
    };
    if r == 255 && g == 255 && b == 255 {
        *prev_mid = false;
        return;
    }
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max - min > 24 {
        s.colourful += 1;
    }
    let mid = (48..=207).contains(&luma(r, g, b));
    if mid && *prev_mid {
        s.adjacent_midtones += 1;
    }
    *prev_mid = mid;
}

/// The palette of the page if it has at most 256 colours (RGB triples), else `None`.
fn palette(rgba: &[u8]) -> Option<Vec<[u8; 3]>> {
    let mut colours: Vec<[u8; 3]> = Vec::new();
    let mut last: Option<[u8; 3]> = None;
    for px in rgba.chunks_exact(4) {
        let c = match px {
            [r, g, b, _] => [*r, *g, *b],
            _ => continue,
        };
        if last == Some(c) {
            continue;
        }
        last = Some(c);
        if !colours.contains(&c) {
            if colours.len() == 256 {
                return None;
            }
            colours.push(c);
        }
    }
    Some(colours)
}

fn flate(data: &[u8]) -> Result<Vec<u8>, SanitizeError> {
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::new(FLATE_LEVEL),
    );
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .map_err(|e| SanitizeError::Internal(format!("flate: {e}")))
}

fn jpeg(
    data: &[u8],
    w: u16,
    h: u16,
    ct: jpeg_encoder::ColorType,
) -> Result<Vec<u8>, SanitizeError> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(data, w, h, ct)
        .map_err(|e| SanitizeError::Internal(format!("jpeg: {e}")))?;
    Ok(out)
}

fn g4(rgba: &[u8], width: usize, w16: u16) -> Result<Vec<u8>, SanitizeError> {
    use fax::{Color, VecWriter, encoder::Encoder};
    let mut enc = Encoder::new(VecWriter::new());
    for row in rgba.chunks_exact(width.saturating_mul(4).max(4)) {
        let encoded = if all_white(row) {
            enc.encode_line(std::iter::repeat_n(Color::White, width), w16)
        } else {
            let pels = row.chunks_exact(4).map(|px| match px {
                [255, 255, 255, _] => Color::White,
                [r, g, b, _] if luma(*r, *g, *b) < BILEVEL_THRESHOLD => Color::Black,
                _ => Color::White,
            });
            enc.encode_line(pels, w16)
        };
        encoded.map_err(|_| SanitizeError::Internal("g4 encoder failed".into()))?;
    }
    let writer = enc
        .finish()
        .map_err(|_| SanitizeError::Internal("g4 encoder failed".into()))?;
    Ok(writer.finish())
}

/// Encodes one rendered page: `rgba` is `width` x `height` RGBA, opaque.
pub fn encode_page(rgba: &[u8], width: u32, height: u32) -> Result<EncodedPage, SanitizeError> {
    let w16 = u16::try_from(width).map_err(|_| SanitizeError::Internal("page too wide".into()))?;
    let h16 = u16::try_from(height).map_err(|_| SanitizeError::Internal("page too tall".into()))?;
    let w = usize::from(w16);
    let expected = w.saturating_mul(usize::from(h16)).saturating_mul(4);
    if rgba.len() != expected || w == 0 || h16 == 0 {
        return Err(SanitizeError::Internal("pixmap size mismatch".into()));
    }
    let s = analyse(rgba, w);
    let pixels = s.pixels.max(1);
    // Text: mid-tones only as isolated anti-aliasing edges (photographs and gradients have long
    // runs of them) and not mostly colour. Light tints (shaded boxes) and link colours do not
    // survive the threshold: the text does, at a fraction of the size.
    let text_like = s.adjacent_midtones * 40 < pixels && s.colourful * 4 < pixels;
    let (image, data) = if text_like {
        (PageImage::BilevelG4, g4(rgba, w, w16)?)
    } else if let Some(pal) = palette(rgba) {
        let grey = pal.iter().all(|[r, g, b]| r == g && g == b);
        if grey {
            let plane: Vec<u8> = rgba
                .chunks_exact(4)
                .map(|px| px.first().copied().unwrap_or(255))
                .collect();
            (PageImage::GreyFlate, flate(&plane)?)
        } else {
            let mut index: Vec<u8> = Vec::with_capacity(rgba.len() / 4);
            let mut last: Option<([u8; 3], u8)> = None;
            for px in rgba.chunks_exact(4) {
                let c = match px {
                    [r, g, b, _] => [*r, *g, *b],
                    _ => [255; 3],
                };
                let i = match last {
                    Some((lc, li)) if lc == c => li,
                    _ => {
                        let found = pal.iter().position(|p| *p == c).unwrap_or(0);
                        u8::try_from(found).unwrap_or(0)
                    }
                };
                last = Some((c, i));
                index.push(i);
            }
            let flat: Vec<u8> = pal.iter().flatten().copied().collect();
            (PageImage::IndexedFlate(flat), flate(&index)?)
        }
    } else if s.colourful * 500 < pixels {
        let plane: Vec<u8> = rgba
            .chunks_exact(4)
            .map(|px| match px {
                [r, g, b, _] => luma(*r, *g, *b),
                _ => 255,
            })
            .collect();
        (
            PageImage::GreyJpeg,
            jpeg(&plane, w16, h16, jpeg_encoder::ColorType::Luma)?,
        )
    } else {
        (
            PageImage::RgbJpeg,
            jpeg(rgba, w16, h16, jpeg_encoder::ColorType::Rgba)?,
        )
    };
    Ok(EncodedPage {
        width,
        height,
        image,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = f(x, y);
                v.extend_from_slice(&[r, g, b, 255]);
            }
        }
        v
    }

    #[test]
    fn classification_follows_content() {
        // Black text-like bars on white: bilevel.
        let text = page(200, 100, |x, y| {
            if x % 10 < 2 && y % 20 < 12 {
                [0; 3]
            } else {
                [255; 3]
            }
        });
        assert_eq!(
            encode_page(&text, 200, 100).unwrap().image,
            PageImage::BilevelG4
        );
        // A smooth colour gradient: JPEG.
        let photo = page(200, 100, |x, y| [x as u8, y as u8 * 2, 128]);
        assert_eq!(
            encode_page(&photo, 200, 100).unwrap().image,
            PageImage::RgbJpeg
        );
        // Flat colour blocks: indexed.
        let chart = page(200, 100, |x, _| {
            if x < 100 {
                [200, 30, 30]
            } else {
                [30, 30, 200]
            }
        });
        assert!(matches!(
            encode_page(&chart, 200, 100).unwrap().image,
            PageImage::IndexedFlate(_)
        ));
        // Wrong buffer size is an error, not a panic.
        assert!(encode_page(&text, 201, 100).is_err());
    }
}
