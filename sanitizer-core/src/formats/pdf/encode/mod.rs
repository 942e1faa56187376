//! Per-page image encoding: the choice that makes rasterized PDFs small enough for mail.
//!
//! A rendered page (RGBA over an opaque white background) is analysed once on a grid of
//! [`TILE`]-pixel tiles (all-white 16-pixel spans cost one vectorised comparison). A tile is a
//! *picture* tile when many of its pixels are colour or mid-tones (photographs, fills,
//! coloured plots) rather than black glyphs with anti-aliased edges. Picture tiles are grouped
//! into a few rectangles (`regions.rs`), and the page becomes one of:
//! - **bilevel** (no picture region): thresholded to 1 bit and CCITT G4 compressed
//!   (`g4.rs`, fed changing elements, not pixels), 10–30× smaller than 8-bit grey;
//! - **mixed raster content** (`mrc`): each picture rectangle as its own image (few colours →
//!   grey or indexed Flate, else JPEG), white elsewhere, and the text of the rest of the page as
//!   one G4 `/ImageMask` stencil painted black over them;
//! - **one picture** when the rectangles cover most of the page: the whole page as grey/indexed
//!   Flate or JPEG as above.
//!
//! Colours are never transformed beyond what the format needs: Flate and indexed images keep
//! the rendered RGB exactly, JPEG keeps RGB (no CMYK, no colour profile), and grey is only chosen
//! when the pixels are grey already or (JPEG) almost all are.
//!
//! Flate runs at a fast level ([`FLATE_LEVEL`]): encoding, not rendering, dominates the
//! pipeline, and level 9 buys little on rendered pixels.

mod g4;
mod regions;

use std::io::Write;

use pdf_writer::{Content, Filter, Name, Pdf, Ref};

use crate::error::SanitizeError;

use super::rasterize::RefAlloc;
use regions::{Rect, TileMap};

/// Flate level for page images: fast, most of the gain of level 9.
pub const FLATE_LEVEL: u32 = 6;
/// JPEG quality for photographic pages.
pub const JPEG_QUALITY: u8 = 75;
/// Side of the square analysis tile in pixels (16 RGBA pixels = one 64-byte span).
pub const TILE: usize = 16;
/// Luminance below which a pixel of a text-like page becomes black.
const BILEVEL_THRESHOLD: u8 = 150;
/// Share of the page (in 1/1000) above which picture regions make the page one picture.
const WHOLE_PAGE_PERMILLE: u64 = 600;
/// Most separate picture regions on one page (the re-check allows `Im0` … `Im8`).
pub const MAX_REGIONS: usize = 8;

/// How the image data of a [`Layer`] is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageImage {
    /// 1 bit per pixel, CCITT G4 (`/CCITTFaxDecode`, `K -1`), DeviceGray, black = 0.
    BilevelG4,
    /// 1-bit `/ImageMask` stencil, CCITT G4: black pixels are painted in black, the others
    /// leave what is below.
    StencilG4,
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
            PageImage::StencilG4 => "stencil",
            PageImage::GreyFlate => "grey",
            PageImage::IndexedFlate(_) => "indexed",
            PageImage::GreyJpeg => "grey_jpeg",
            PageImage::RgbJpeg => "jpeg",
        }
    }
}

/// One image of a page, placed at a pixel rectangle (origin top left, like the rendering).
#[derive(Debug, Clone)]
pub struct Layer {
    /// Left edge in pixels.
    pub x: u32,
    /// Top edge in pixels.
    pub y: u32,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// Storage kind.
    pub image: PageImage,
    /// The encoded stream.
    pub data: Vec<u8>,
}

/// One page, encoded and ready to be written: its layers, painted in order.
#[derive(Debug, Clone)]
pub struct EncodedPage {
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// Images painted in order (pictures first, then the text stencil).
    pub layers: Vec<Layer>,
    label: &'static str,
}

impl EncodedPage {
    /// Bytes of encoded image data, for the output budget.
    pub fn byte_len(&self) -> usize {
        self.layers.iter().map(|l| l.data.len()).sum()
    }

    /// Short name of the encoding for statistics: the single image's kind, or `mrc`.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

fn int(n: u32, what: &str) -> Result<i32, SanitizeError> {
    i32::try_from(n).map_err(|_| SanitizeError::Internal(what.into()))
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
    let sx = width_pt / page.width.max(1) as f32;
    let sy = height_pt / page.height.max(1) as f32;
    let mut names = Vec::with_capacity(page.layers.len());
    for (i, layer) in page.layers.iter().enumerate() {
        let image_ref = alloc.bump()?;
        let w = int(layer.width, "width")?;
        let h = int(layer.height, "height")?;
        {
            let mut image = out.image_xobject(image_ref, &layer.data);
            image.width(w).height(h);
            match &layer.image {
                PageImage::BilevelG4 => {
                    image.filter(Filter::CcittFaxDecode);
                    image.color_space().device_gray();
                    image.bits_per_component(1);
                    image.decode_parms().k(-1).columns(w).rows(h);
                }
                PageImage::StencilG4 => {
                    image.filter(Filter::CcittFaxDecode);
                    image.image_mask(true);
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
        let name = format!("Im{i}");
        let bottom = page
            .height
            .saturating_sub(layer.y.saturating_add(layer.height));
        content.save_state();
        if layer.image == PageImage::StencilG4 {
            content.set_fill_gray(0.0);
        }
        content.transform([
            layer.width as f32 * sx,
            0.0,
            0.0,
            layer.height as f32 * sy,
            layer.x as f32 * sx,
            bottom as f32 * sy,
        ]);
        content.x_object(Name(name.as_bytes()));
        content.restore_state();
        names.push((name, image_ref));
    }
    Ok(names)
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

/// A tile is a picture tile when at least this many of its 256 pixels are mid-tones…
const PICTURE_MIDTONES: u16 = 100;
/// … or at least this many are colour (coloured text covers far less of its tiles).
const PICTURE_COLOUR: u16 = 100;

/// Mid-tone count, colour count and black bits of one span of up to 16 RGBA pixels.
#[inline]
fn span_stats(span: &[u8]) -> (u16, u16, u16) {
    let (mut m, mut c, mut bits) = (0u16, 0u16, 0u16);
    for (i, px) in span.chunks_exact(4).enumerate() {
        if let [r, g, b, _] = *px {
            c += u16::from(r.max(g).max(b) - r.min(g).min(b) > 24);
            let l = luma(r, g, b);
            // 48..=207 as one unsigned comparison.
            m += u16::from(l.wrapping_sub(48) < 160);
            bits |= u16::from(l < BILEVEL_THRESHOLD) << i;
        }
    }
    (m, c, bits)
}

/// What the one pass over the pixels found.
struct Analysis {
    /// Which tiles look like pictures.
    map: TileMap,
    /// The page thresholded to 1 bit: one `u16` per 16-pixel span (`map.tw` per row), bit `i`
    /// set when pixel `i` of the span is black (luminance below [`BILEVEL_THRESHOLD`]).
    ink: Vec<u16>,
}

/// One pass over the pixels: picture tiles and the 1-bit page. All-white spans (most of a
/// text page) cost one vectorised comparison and leave their zeroed words untouched.
fn analyse(rgba: &[u8], width: usize, height: usize) -> Analysis {
    let tw = width.div_ceil(TILE);
    let th = height.div_ceil(TILE);
    let mut mid = vec![0u16; tw * th];
    let mut colour = vec![0u16; tw * th];
    let mut ink = vec![0u16; tw * height];
    for (y, row) in rgba.chunks_exact(width * 4).enumerate() {
        let base = (y / TILE) * tw;
        for (tx, span) in row.chunks(TILE * 4).enumerate() {
            if all_white(span) {
                continue;
            }
            let (m, c, bits) = span_stats(span);
            if let Some(t) = mid.get_mut(base + tx) {
                *t += m;
            }
            if let Some(t) = colour.get_mut(base + tx) {
                *t += c;
            }
            if let Some(t) = ink.get_mut(y * tw + tx) {
                *t = bits;
            }
        }
    }
    let picture = mid
        .iter()
        .zip(&colour)
        .map(|(&m, &c)| m >= PICTURE_MIDTONES || c >= PICTURE_COLOUR)
        .collect();
    Analysis {
        map: TileMap { tw, th, picture },
        ink,
    }
}

/// G4-codes the 1-bit page `ink` (`width` pixels, `tw` words a row) with the tile rectangles
/// `holes` left white. Returns the stream and whether any black pixel was coded.
fn bilevel(ink: &[u16], width: usize, tw: usize, holes: &[Rect]) -> (Vec<u8>, bool) {
    let mut enc = g4::G4Encoder::new(width as u32);
    let mut changes: Vec<u32> = Vec::with_capacity(256);
    let mut words: Vec<u16> = vec![0; tw];
    let mut any_black = false;
    for (y, row) in ink.chunks_exact(tw.max(1)).enumerate() {
        changes.clear();
        let mut src = row;
        let ty = y / TILE;
        if holes.iter().any(|r| r.y0 <= ty && ty < r.y1) {
            words.copy_from_slice(row);
            for r in holes.iter().filter(|r| r.y0 <= ty && ty < r.y1) {
                for w in words.iter_mut().take(r.x1).skip(r.x0) {
                    *w = 0;
                }
            }
            src = &words;
        }
        // A change is where a bit differs from the one before it (the row starts white):
        // `w ^ (w << 1 | carry)`, then one `trailing_zeros` per change.
        let mut carry = 0u32;
        for (i, &w) in src.iter().enumerate() {
            let w = u32::from(w);
            let mut diff = (w ^ ((w << 1) | carry)) & 0xffff;
            carry = w >> 15;
            while diff != 0 {
                let bit = diff.trailing_zeros();
                changes.push((i * TILE) as u32 + bit);
                diff &= diff - 1;
            }
        }
        // The last span may be partial: pixels past the width are white in `ink`, so a
        // change at the width (black running into the edge) is dropped by the encoder.
        any_black |= !changes.is_empty();
        enc.row(&changes);
    }
    (enc.finish(), any_black)
}

/// The palette of the image if it has at most 256 colours (RGB triples), else `None`.
fn palette(rgba: &[u8]) -> Option<Vec<[u8; 3]>> {
    let mut colours: Vec<[u8; 3]> = Vec::new();
    let mut last: Option<[u8; 3]> = None;
    for px in rgba.chunks_exact(4) {
        let c = match *px {
            [r, g, b, _] => [r, g, b],
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

/// Encodes a picture (`rgba` is `w` x `h`, opaque): few colours → grey or indexed Flate,
/// almost no colour → grey JPEG, else RGB JPEG.
fn encode_picture(rgba: &[u8], w: u16, h: u16) -> Result<(PageImage, Vec<u8>), SanitizeError> {
    if let Some(pal) = palette(rgba) {
        if pal.iter().all(|[r, g, b]| r == g && g == b) {
            let plane: Vec<u8> = rgba
                .chunks_exact(4)
                .map(|px| px.first().copied().unwrap_or(255))
                .collect();
            return Ok((PageImage::GreyFlate, flate(&plane)?));
        }
        let mut index: Vec<u8> = Vec::with_capacity(rgba.len() / 4);
        let mut last: Option<([u8; 3], u8)> = None;
        for px in rgba.chunks_exact(4) {
            let c = match *px {
                [r, g, b, _] => [r, g, b],
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
        return Ok((PageImage::IndexedFlate(flat), flate(&index)?));
    }
    let pixels = rgba.len() / 4;
    let colourful = rgba
        .chunks_exact(4)
        .filter(|px| match **px {
            [r, g, b, _] => r.max(g).max(b) - r.min(g).min(b) > 24,
            _ => false,
        })
        .count();
    if colourful * 500 < pixels {
        let plane: Vec<u8> = rgba
            .chunks_exact(4)
            .map(|px| match *px {
                [r, g, b, _] => luma(r, g, b),
                _ => 255,
            })
            .collect();
        Ok((
            PageImage::GreyJpeg,
            jpeg(&plane, w, h, jpeg_encoder::ColorType::Luma)?,
        ))
    } else {
        Ok((
            PageImage::RgbJpeg,
            jpeg(rgba, w, h, jpeg_encoder::ColorType::Rgba)?,
        ))
    }
}

/// Copies the pixel rectangle `r` (tile units, clipped to the page) out of `rgba`.
fn crop(rgba: &[u8], width: usize, height: usize, r: &Rect) -> Option<(Vec<u8>, [usize; 4])> {
    let x0 = (r.x0 * TILE).min(width);
    let x1 = (r.x1 * TILE).min(width);
    let y0 = (r.y0 * TILE).min(height);
    let y1 = (r.y1 * TILE).min(height);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let mut out = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
    for row in rgba.chunks_exact(width * 4).skip(y0).take(y1 - y0) {
        out.extend_from_slice(row.get(x0 * 4..x1 * 4)?);
    }
    Some((out, [x0, y0, x1 - x0, y1 - y0]))
}

/// Encodes one rendered page: `rgba` is `width` x `height` RGBA, opaque.
pub fn encode_page(rgba: &[u8], width: u32, height: u32) -> Result<EncodedPage, SanitizeError> {
    let w16 = u16::try_from(width).map_err(|_| SanitizeError::Internal("page too wide".into()))?;
    let h16 = u16::try_from(height).map_err(|_| SanitizeError::Internal("page too tall".into()))?;
    let (w, h) = (usize::from(w16), usize::from(h16));
    if rgba.len() != w.saturating_mul(h).saturating_mul(4) || w == 0 || h == 0 {
        return Err(SanitizeError::Internal("pixmap size mismatch".into()));
    }
    let Analysis { map, ink } = analyse(rgba, w, h);
    let rects = map.rects(MAX_REGIONS);
    let whole = |image: PageImage, data: Vec<u8>| Layer {
        x: 0,
        y: 0,
        width,
        height,
        image,
        data,
    };
    if rects.is_empty() {
        let (data, _) = bilevel(&ink, w, map.tw, &[]);
        return Ok(EncodedPage {
            width,
            height,
            layers: vec![whole(PageImage::BilevelG4, data)],
            label: "g4",
        });
    }
    let tiles: usize = rects.iter().map(|r| (r.x1 - r.x0) * (r.y1 - r.y0)).sum();
    if (tiles as u64) * 1000 > (map.tw * map.th) as u64 * WHOLE_PAGE_PERMILLE {
        let (image, data) = encode_picture(rgba, w16, h16)?;
        let label = image.label();
        return Ok(EncodedPage {
            width,
            height,
            layers: vec![whole(image, data)],
            label,
        });
    }
    let mut layers = Vec::with_capacity(rects.len() + 1);
    for r in &rects {
        let Some((pixels, [x, y, cw, ch])) = crop(rgba, w, h, r) else {
            continue;
        };
        let (image, data) = encode_picture(&pixels, cw as u16, ch as u16)?;
        layers.push(Layer {
            x: x as u32,
            y: y as u32,
            width: cw as u32,
            height: ch as u32,
            image,
            data,
        });
    }
    let (data, any_black) = bilevel(&ink, w, map.tw, &rects);
    if any_black {
        layers.push(whole(PageImage::StencilG4, data));
    }
    Ok(EncodedPage {
        width,
        height,
        layers,
        label: "mrc",
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

    /// Black text-like bars on white.
    fn text(x: usize, y: usize) -> [u8; 3] {
        if x % 10 < 2 && y % 20 < 12 {
            [0; 3]
        } else {
            [255; 3]
        }
    }

    #[test]
    fn classification_follows_content() {
        let t = page(400, 300, text);
        let enc = encode_page(&t, 400, 300).unwrap();
        assert_eq!(enc.label(), "g4");
        assert_eq!(enc.layers.len(), 1);
        // A smooth colour gradient over the whole page: one JPEG.
        let photo = page(400, 300, |x, y| [x as u8, y as u8, 128]);
        assert_eq!(encode_page(&photo, 400, 300).unwrap().label(), "jpeg");
        // Flat colour blocks over the whole page: indexed.
        let chart = page(400, 300, |x, _| {
            if x < 200 {
                [200, 30, 30]
            } else {
                [30, 30, 200]
            }
        });
        assert_eq!(encode_page(&chart, 400, 300).unwrap().label(), "indexed");
        // Wrong buffer size is an error, not a panic.
        assert!(encode_page(&t, 401, 300).is_err());
    }

    #[test]
    fn a_figure_among_text_becomes_a_picture_region_under_a_text_stencil() {
        // Text everywhere, a 96 x 64 gradient at (160, 96).
        let figure = |x: usize, y: usize| (160..256).contains(&x) && (96..160).contains(&y);
        let mixed = page(400, 300, |x, y| {
            if figure(x, y) {
                [x as u8, (y * 3) as u8, 90]
            } else {
                text(x, y)
            }
        });
        let enc = encode_page(&mixed, 400, 300).unwrap();
        assert_eq!(enc.label(), "mrc");
        let (pictures, stencils): (Vec<&Layer>, Vec<&Layer>) = enc
            .layers
            .iter()
            .partition(|l| l.image != PageImage::StencilG4);
        assert_eq!(stencils.len(), 1);
        assert_eq!(pictures.len(), 1);
        let p = pictures[0];
        // The region covers the figure (padded by a tile) and little else.
        assert!(p.x <= 160 && p.y <= 96 && p.x + p.width >= 256 && p.y + p.height >= 160);
        assert!(p.width * p.height < 3 * 96 * 64);
        assert_eq!(p.image, PageImage::RgbJpeg);
        // The stencil still holds the text outside the region and is far smaller than the
        // page as a JPEG.
        let whole = encode_picture(&mixed, 400, 300).unwrap().1;
        assert!(enc.byte_len() < whole.len());
    }

    #[test]
    fn text_layer_decodes_to_the_thresholded_page_with_the_region_left_white() {
        struct Rows(Vec<Vec<u32>>);
        impl hayro_ccitt::Decoder for Rows {
            fn push_row(&mut self, changes: &[u32]) {
                self.0.push(changes.to_vec());
            }
        }
        let (w, h) = (100usize, 40usize);
        // A grey ramp (some pixels below the threshold, some above) with a black bar.
        let px = page(w, h, |x, y| {
            if y == 5 {
                [0; 3]
            } else {
                [(x * 2 + y) as u8; 3]
            }
        });
        let Analysis { map, ink } = analyse(&px, w, h);
        assert_eq!((map.tw, map.th), (7, 3));
        // Tile units: pixels 16..32 of rows 0..16.
        let hole = Rect {
            x0: 1,
            y0: 0,
            x1: 2,
            y1: 1,
        };
        let (data, any_black) = bilevel(&ink, w, map.tw, &[hole]);
        assert!(any_black);
        let mut ctx = hayro_ccitt::DecoderContext::new(hayro_ccitt::DecodeSettings {
            columns: w as u32,
            rows: h as u32,
            end_of_block: true,
            end_of_line: false,
            rows_are_byte_aligned: false,
            encoding: hayro_ccitt::EncodingMode::Group4,
            strict: true,
        });
        let mut rows = Rows(Vec::new());
        hayro_ccitt::decode(&data, &mut rows, &mut ctx).unwrap();
        for (y, changes) in rows.0.iter().enumerate() {
            let mut black = false;
            let mut next = changes.iter().peekable();
            for x in 0..w {
                while next.peek().is_some_and(|&&c| c as usize == x) {
                    black = !black;
                    next.next();
                }
                let [r, g, b] = [
                    px[(y * w + x) * 4],
                    px[(y * w + x) * 4 + 1],
                    px[(y * w + x) * 4 + 2],
                ];
                let in_hole = (16..32).contains(&x) && y < 16;
                let want = !in_hole && luma(r, g, b) < BILEVEL_THRESHOLD;
                assert_eq!(black, want, "pixel {x},{y}");
            }
        }
    }
}
