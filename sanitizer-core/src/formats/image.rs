//! Raster images: decoded to pixels and re-encoded with no metadata.
//!
//! Every format the `image` crate decodes with the enabled features (PNG, JPEG, GIF, BMP, WebP,
//! TIFF, ICO). Before anything is decoded:
//! - the file structure is walked by hand (PNG chunks, JPEG segments, GIF blocks) to read the
//!   dimensions, count GIF/APNG frames, find metadata (EXIF, XMP, IPTC, ICC, text chunks,
//!   comments) and data after the image's end (a JPEG+ZIP polyglot);
//! - the dimensions are charged to the pixel budget and the frame count checked, so a header
//!   claiming 100000 x 100000 pixels is refused without allocating; the `image` crate's own
//!   `Limits` (`max_alloc`) are set as a second fence.
//!
//! Then the first frame is decoded, the EXIF orientation applied (so the photo looks the same
//! without its EXIF), and it is re-encoded: PNG stays PNG, JPEG stays JPEG (quality
//! `images.jpeg_quality`, `jpeg-encoder`), everything else becomes PNG. Only pixels survive.
//! An animated GIF or APNG keeps its first frame only (the action is then `converted`, since the
//! animation is lost); a multi-page TIFF keeps its first page.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::error::SanitizeError;
use crate::limits::LimitKind;
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// What a walk over the file's structure found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Width and height from the header, when the walker knows the format.
    pub dimensions: Option<(u32, u32)>,
    /// Number of frames (GIF image descriptors, APNG `acTL`); 1 for still images.
    pub frames: u64,
    /// Kinds of metadata present (`EXIF`, `XMP`, `tEXt`, `comment`, ...).
    pub metadata: Vec<&'static str>,
    /// Bytes after the image's end marker (PNG IEND, JPEG EOI, GIF trailer).
    pub trailing: u64,
}

impl Scan {
    fn note(&mut self, what: &'static str) {
        if !self.metadata.contains(&what) {
            self.metadata.push(what);
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Walks PNG chunks. Stops at IEND or at the first truncated chunk (the decoder judges those).
pub fn scan_png(b: &[u8]) -> Scan {
    let mut s = Scan {
        frames: 1,
        ..Scan::default()
    };
    let mut pos: usize = 8;
    while let (Some(len), Some(kind)) = (be32(b, pos), b.get(pos + 4..pos + 8)) {
        let data = pos + 8;
        let Some(end) = data
            .checked_add(len as usize)
            .and_then(|e| e.checked_add(4))
        else {
            break;
        };
        match kind {
            b"IHDR" => {
                if let (Some(w), Some(h)) = (be32(b, data), be32(b, data + 4)) {
                    s.dimensions = Some((w, h));
                }
            }
            b"acTL" => s.frames = u64::from(be32(b, data).unwrap_or(1)).max(1),
            b"tEXt" | b"zTXt" | b"iTXt" => s.note("text chunk"),
            b"eXIf" => s.note("EXIF"),
            b"iCCP" => s.note("ICC profile"),
            b"tIME" => s.note("timestamp"),
            b"IEND" => {
                s.trailing = (b.len() as u64).saturating_sub(end as u64);
                break;
            }
            _ => {}
        }
        if end > b.len() {
            break;
        }
        pos = end;
    }
    s
}

/// Walks JPEG segments (and over entropy-coded data) up to EOI.
pub fn scan_jpeg(b: &[u8]) -> Scan {
    let mut s = Scan {
        frames: 1,
        ..Scan::default()
    };
    let mut pos: usize = 2;
    loop {
        if b.get(pos) != Some(&0xFF) {
            break;
        }
        // Fill bytes.
        while b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = b.get(pos + 1) else {
            break;
        };
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            0xD9 => {
                s.trailing = (b.len() as u64).saturating_sub((pos + 2) as u64);
                break;
            }
            _ => {}
        }
        let Some(len) = be16(b, pos + 2) else {
            break;
        };
        let data = pos + 4;
        let seg = b
            .get(data..(pos + 2).saturating_add(len as usize))
            .unwrap_or_default();
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if let (Some(h), Some(w)) = (be16(seg, 1), be16(seg, 3)) {
                    s.dimensions = Some((u32::from(w), u32::from(h)));
                }
            }
            0xE1 if seg.starts_with(b"Exif\0") => s.note("EXIF"),
            0xE1 if seg.starts_with(b"http://ns.adobe.com/") => s.note("XMP"),
            0xE2 if seg.starts_with(b"ICC_PROFILE") => s.note("ICC profile"),
            0xED => s.note("IPTC"),
            0xFE => s.note("comment"),
            // APP0 (JFIF) and APP14 (Adobe colour transform) are part of the codec.
            0xE0 | 0xEE => {}
            0xE1..=0xEF => s.note("application segment"),
            _ => {}
        }
        pos = (pos + 2).saturating_add(len as usize);
        if marker == 0xDA {
            // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a
            // restart marker.
            let mut p = pos;
            loop {
                match (b.get(p), b.get(p + 1)) {
                    (Some(0xFF), Some(m)) if *m != 0x00 && !(0xD0..=0xD7).contains(m) => break,
                    (Some(_), Some(_)) => p += 1,
                    _ => return s,
                }
            }
            pos = p;
        }
    }
    s
}

/// Skips GIF data sub-blocks starting at `p`; returns the position after the terminator.
fn skip_sub_blocks(b: &[u8], mut p: usize) -> Option<usize> {
    loop {
        let size = *b.get(p)? as usize;
        p = p.checked_add(1 + size)?;
        if size == 0 {
            return Some(p);
        }
    }
}

/// Walks GIF blocks: counts frames, finds comments and application extensions (XMP).
pub fn scan_gif(b: &[u8]) -> Scan {
    let mut s = Scan::default();
    let (Some(w), Some(h), Some(&packed)) = (le16(b, 6), le16(b, 8), b.get(10)) else {
        return s;
    };
    let (mut max_w, mut max_h) = (u32::from(w), u32::from(h));
    let table = |packed: u8| {
        if packed & 0x80 != 0 {
            3usize << ((packed & 7) + 1)
        } else {
            0
        }
    };
    let mut pos = 13 + table(packed);
    loop {
        match b.get(pos) {
            Some(0x21) => {
                match b.get(pos + 1) {
                    Some(0xFE) => s.note("comment"),
                    Some(0xFF) => {
                        let id = b.get(pos + 3..pos + 14).unwrap_or_default();
                        if id != b"NETSCAPE2.0" && id != b"ANIMEXTS1.0" {
                            s.note("application extension");
                        }
                    }
                    _ => {}
                }
                match skip_sub_blocks(b, pos + 2) {
                    Some(p) => pos = p,
                    None => break,
                }
            }
            Some(0x2C) => {
                s.frames += 1;
                if let (Some(fw), Some(fh)) = (le16(b, pos + 5), le16(b, pos + 7)) {
                    max_w = max_w.max(u32::from(fw));
                    max_h = max_h.max(u32::from(fh));
                }
                let lct = b.get(pos + 9).map_or(0, |p| table(*p));
                match skip_sub_blocks(b, pos + 10 + lct + 1) {
                    Some(p) => pos = p,
                    None => break,
                }
            }
            Some(0x3B) => {
                s.trailing = (b.len() as u64).saturating_sub((pos + 1) as u64);
                break;
            }
            _ => break,
        }
    }
    s.dimensions = Some((max_w, max_h));
    s
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(3)?)?;
    Some(u32::from_le_bytes([*s.first()?, *s.get(1)?, *s.get(2)?, 0]))
}

/// Walks WebP RIFF chunks: canvas size, animation frames (`ANMF`), metadata, data after the
/// RIFF container.
pub fn scan_webp(b: &[u8]) -> Scan {
    let mut s = Scan::default();
    let Some(riff) = le32(b, 4) else {
        return s;
    };
    let end = (riff as usize).saturating_add(8);
    s.trailing = (b.len() as u64).saturating_sub(end as u64);
    let mut pos: usize = 12;
    while let (Some(kind), Some(len)) = (b.get(pos..pos + 4), le32(b, pos + 4)) {
        let data = pos + 8;
        match kind {
            b"VP8X" => {
                if let (Some(w), Some(h)) = (le24(b, data + 4), le24(b, data + 7)) {
                    s.dimensions = Some((w.saturating_add(1), h.saturating_add(1)));
                }
            }
            b"VP8 " if s.dimensions.is_none() => {
                if let (Some(w), Some(h)) = (le16(b, data + 6), le16(b, data + 8)) {
                    s.dimensions = Some((u32::from(w & 0x3FFF), u32::from(h & 0x3FFF)));
                }
            }
            b"VP8L" if s.dimensions.is_none() => {
                if let Some(bits) = le32(b, data + 1) {
                    s.dimensions = Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1));
                }
            }
            b"ANMF" => s.frames += 1,
            b"EXIF" => s.note("EXIF"),
            b"XMP " => s.note("XMP"),
            b"ICCP" => s.note("ICC profile"),
            _ => {}
        }
        // Chunks are padded to an even length.
        let Some(next) = data.checked_add(len as usize).map(|n| n + (n & 1)) else {
            break;
        };
        if next > end.min(b.len()) {
            break;
        }
        pos = next;
    }
    s.frames = s.frames.max(1);
    s
}

fn malformed(e: image::ImageError) -> SanitizeError {
    match e {
        image::ImageError::Limits(l) => SanitizeError::limit(LimitKind::Pixels, l.to_string()),
        other => SanitizeError::Malformed(format!("image: {other}")),
    }
}

fn ext_of(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::WebP => "webp",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Ico => "ico",
        _ => "image",
    }
}

/// Re-encodes `img` as PNG with no ancillary chunks.
pub(crate) fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, SanitizeError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    no_empty_canvas(img)?;
    let img: std::borrow::Cow<'_, DynamicImage> = match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => std::borrow::Cow::Borrowed(img),
        other => std::borrow::Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8())),
    };
    let mut out = Vec::new();
    let enc =
        PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive);
    img.write_with_encoder(enc)
        .map_err(|e| SanitizeError::Internal(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// A decoded image without pixels (a GIF whose screen is 0 high): nothing to re-encode, and
/// the encoders refuse it. A malformed input, not an internal error.
fn no_empty_canvas(img: &DynamicImage) -> Result<(), SanitizeError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(SanitizeError::Malformed(format!(
            "image of {} x {} pixels has nothing to show",
            img.width(),
            img.height()
        )));
    }
    Ok(())
}

fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, SanitizeError> {
    no_empty_canvas(img)?;
    let (w, h) = (img.width(), img.height());
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(SanitizeError::limit(
            LimitKind::Pixels,
            format!("{w}x{h} is too large for JPEG"),
        ));
    };
    let mut out = Vec::new();
    let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    let result = if img.color().has_color() {
        enc.encode(
            img.to_rgb8().as_raw(),
            w16,
            h16,
            jpeg_encoder::ColorType::Rgb,
        )
    } else {
        enc.encode(
            img.to_luma8().as_raw(),
            w16,
            h16,
            jpeg_encoder::ColorType::Luma,
        )
    };
    result.map_err(|e| SanitizeError::Internal(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// An image decoded under the budget, its orientation applied, and what its structure held.
pub(crate) struct DecodedImage {
    /// The pixels (first frame), upright.
    pub image: DynamicImage,
    /// The source format.
    pub format: ImageFormat,
    /// What the structure walk found (metadata also includes what the decoder reported).
    pub scan: Scan,
}

/// Decodes `input` under the item's budget: dimensions and frames checked before decoding.
pub(crate) fn decode_checked(
    input: &[u8],
    cx: &mut Context<'_>,
) -> Result<DecodedImage, SanitizeError> {
    let format = image::guess_format(input)
        .map_err(|_| SanitizeError::Unsupported("image format not recognised".into()))?;
    let mut scan = match format {
        ImageFormat::Png => scan_png(input),
        ImageFormat::Jpeg => scan_jpeg(input),
        ImageFormat::Gif => scan_gif(input),
        ImageFormat::WebP => scan_webp(input),
        ImageFormat::Bmp | ImageFormat::Tiff | ImageFormat::Ico => Scan {
            frames: 1,
            ..Scan::default()
        },
        other => {
            // Named by its file extension, not by the decoder library's enum variant.
            let ext = other.extensions_str().first().copied().unwrap_or("unknown");
            return Err(SanitizeError::Unsupported(format!(
                "image format .{ext} is not decoded"
            )));
        }
    };
    // Checked from the header alone, before the decoder allocates anything.
    cx.budget().check_frames(scan.frames)?;
    if let Some((w, h)) = scan.dimensions {
        cx.budget().charge_pixels(u64::from(w), u64::from(h))?;
    }
    cx.budget().check_deadline()?;

    let max_pixels = cx.budget().limits().max_pixels_per_image;
    let mut limits = image::Limits::default();
    // 16-bit RGBA is the widest buffer a decoder makes: 8 bytes per pixel.
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(8)
            .min(cx.budget().decoded_remaining().max(1)),
    );
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(malformed)?;
    let (w, h) = decoder.dimensions();
    if scan.dimensions.is_none() {
        cx.budget().charge_pixels(u64::from(w), u64::from(h))?;
        scan.dimensions = Some((w, h));
    } else if scan.dimensions != Some((w, h)) {
        // The decoder read other dimensions than the header we charged: charge those too.
        cx.budget().charge_pixels(u64::from(w), u64::from(h))?;
    }
    cx.budget().charge_decoded(decoder.total_bytes())?;
    if decoder.exif_metadata().ok().flatten().is_some() {
        scan.note("EXIF");
    }
    if decoder.xmp_metadata().ok().flatten().is_some() {
        scan.note("XMP");
    }
    if decoder.iptc_metadata().ok().flatten().is_some() {
        scan.note("IPTC");
    }
    if decoder.icc_profile().ok().flatten().is_some() {
        scan.note("ICC profile");
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(malformed)?;
    image.apply_orientation(orientation);
    cx.budget().check_deadline()?;
    Ok(DecodedImage {
        image,
        format,
        scan,
    })
}

/// Raster images are decoded and re-encoded with no metadata.
#[derive(Debug, Clone, Copy)]
pub struct ImageSanitizer;

impl FormatSanitizer for ImageSanitizer {
    fn name(&self) -> &'static str {
        "image"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let DecodedImage {
            image,
            format,
            scan,
        } = decode_checked(input, cx)?;
        let (bytes, mime, ext) = match format {
            ImageFormat::Jpeg => (
                encode_jpeg(&image, cx.policy().images.jpeg_quality)?,
                "image/jpeg",
                None,
            ),
            ImageFormat::Png => (encode_png(&image)?, "image/png", None),
            _ => (encode_png(&image)?, "image/png", Some("png")),
        };
        let mut found = Vec::new();
        if !scan.metadata.is_empty() {
            found.push(threats::IMAGE_METADATA);
        }
        if scan.trailing > 0 {
            found.push(threats::IMAGE_TRAILING_DATA);
        }
        let mut detail = serde_json::Map::new();
        detail.insert("format".into(), ext_of(format).into());
        detail.insert("width".into(), image.width().into());
        detail.insert("height".into(), image.height().into());
        if let Some(e) = ext {
            detail.insert("converted_to".into(), e.into());
        }
        if !scan.metadata.is_empty() {
            detail.insert("metadata_removed".into(), scan.metadata.clone().into());
        }
        if scan.trailing > 0 {
            detail.insert("trailing_bytes".into(), scan.trailing.into());
        }
        let mut reason = format!(
            "{} image decoded and re-encoded as {}; only pixels kept",
            ext_of(format).to_ascii_uppercase(),
            if mime == "image/jpeg" { "JPEG" } else { "PNG" }
        );
        let action = if scan.frames > 1 {
            detail.insert(
                "frames_dropped".into(),
                scan.frames.saturating_sub(1).into(),
            );
            reason.push_str(&format!(
                "; animation of {} frames reduced to its first frame",
                scan.frames
            ));
            Action::Converted
        } else {
            Action::Reencoded
        };
        if scan.trailing > 0 {
            reason.push_str(&format!(
                "; {} bytes after the image end removed",
                scan.trailing
            ));
        }
        let mut rebuilt = Rebuilt::new(bytes, action, Kind::Image, mime)
            .with_threats(found)
            .with_reason(reason)
            .with_detail(serde_json::Value::Object(detail));
        if let Some(e) = ext {
            rebuilt = rebuilt.with_extension(e);
        }
        Ok(rebuilt)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::report::Verdict;
    use crate::sanitize_file;

    /// A PNG chunk with its CRC.
    pub(crate) fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend((data.len() as u32).to_be_bytes());
        c.extend(kind);
        c.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend(crc.sum().to_be_bytes());
        c
    }

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        png.extend(chunk(b"IHDR", &ihdr));
        png
    }

    fn small_rgb(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 30) as u8, 128])
        }))
    }

    #[test]
    fn pixel_bomb_header_is_blocked_without_decoding() {
        let mut png = png_header(100_000, 100_000);
        png.extend(chunk(b"IEND", b""));
        let out = sanitize_file(&png, Some("bomb.png"), &Policy::default());
        assert!(out.output.is_none());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(out.report.threats().contains(&threats::LIMIT_PIXELS));
    }

    #[test]
    fn png_text_chunk_and_trailing_zip_are_removed() {
        let mut png = encode_png(&small_rgb(4, 3)).unwrap();
        // Insert a tEXt chunk after IHDR (8 + 25 bytes) and a ZIP after IEND.
        let text = chunk(b"tEXt", b"Comment\0secret author data");
        png.splice(33..33, text);
        png.extend(b"PK\x03\x04payload-that-must-go");
        let scan = scan_png(&png);
        assert_eq!(scan.metadata, vec!["text chunk"]);
        assert_eq!(scan.trailing, 24);

        let out = sanitize_file(&png, Some("a.png"), &Policy::default());
        let t = out.report.threats();
        assert!(t.contains(&threats::IMAGE_METADATA));
        assert!(t.contains(&threats::IMAGE_TRAILING_DATA));
        let file = out.output.unwrap();
        let bytes = file.bytes.as_slice();
        assert!(!bytes.windows(4).any(|w| w == b"tEXt" || w == b"PK\x03\x04"));
        assert_eq!(file.name, "a.png");
        let back = image::load_from_memory(bytes).unwrap();
        assert_eq!(back.to_rgb8(), small_rgb(4, 3).to_rgb8());
    }

    #[test]
    fn clean_png_is_clean() {
        let png = encode_png(&small_rgb(5, 5)).unwrap();
        let out = sanitize_file(&png, Some("c.png"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Clean);
        assert_eq!(out.report.items[0].action, Action::Reencoded);
    }

    /// A JPEG with an EXIF APP1 (orientation 6 = rotate 90° clockwise, plus a GPS-ish marker
    /// string) and a comment.
    fn jpeg_with_exif(img: &DynamicImage) -> Vec<u8> {
        let plain = encode_jpeg(img, 90).unwrap();
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend(1u16.to_be_bytes()); // one IFD entry
        tiff.extend(0x0112u16.to_be_bytes()); // Orientation
        tiff.extend(3u16.to_be_bytes()); // SHORT
        tiff.extend(1u32.to_be_bytes());
        tiff.extend([0, 6, 0, 0]);
        tiff.extend(0u32.to_be_bytes());
        tiff.extend(b"GPSLatitude 35.6895N secret");
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend(((app1.len() + 2) as u16).to_be_bytes());
        seg.extend(app1);
        let com = b"\xFF\xFE\x00\x0cmy comment";
        let mut out = plain[..2].to_vec();
        out.extend(seg);
        out.extend(com);
        out.extend(&plain[2..]);
        out
    }

    #[test]
    fn jpeg_exif_is_removed_and_orientation_applied() {
        let jpeg = jpeg_with_exif(&small_rgb(16, 8));
        let scan = scan_jpeg(&jpeg);
        assert_eq!(scan.dimensions, Some((16, 8)));
        assert!(scan.metadata.contains(&"EXIF") && scan.metadata.contains(&"comment"));
        assert_eq!(scan.trailing, 0);

        let out = sanitize_file(&jpeg, Some("photo.jpg"), &Policy::default());
        assert!(out.report.threats().contains(&threats::IMAGE_METADATA));
        let file = out.output.unwrap();
        let bytes = file.bytes.as_slice();
        for needle in [&b"Exif"[..], b"GPS", b"my comment"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        assert_eq!(file.name, "photo.jpg");
        assert_eq!(file.mime, "image/jpeg");
        // Rotated by the orientation: 8 wide, 16 high now.
        let back = image::load_from_memory(bytes).unwrap();
        assert_eq!((back.width(), back.height()), (8, 16));
    }

    #[test]
    fn jpeg_polyglot_trailing_data() {
        let mut jpeg = encode_jpeg(&small_rgb(8, 8), 80).unwrap();
        jpeg.extend(b"PK\x03\x04zip after EOI");
        let scan = scan_jpeg(&jpeg);
        assert_eq!(scan.trailing, 17);
        let out = sanitize_file(&jpeg, Some("p.jpg"), &Policy::default());
        assert!(out.report.threats().contains(&threats::IMAGE_TRAILING_DATA));
        assert!(!out.output.unwrap().bytes.as_slice().ends_with(b"EOI"));
    }

    fn gif(frames: usize) -> Vec<u8> {
        let mut g = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
        g.extend(b"\x21\xfe\x05hello\x00"); // comment
        for _ in 0..frames {
            g.extend(b"\x21\xf9\x04\x00\x0a\x00\x00\x00");
            g.extend(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
        }
        g.push(0x3B);
        g
    }

    #[test]
    fn gif_frames_are_counted_and_limited() {
        let scan = scan_gif(&gif(3));
        assert_eq!(scan.frames, 3);
        assert_eq!(scan.metadata, vec!["comment"]);
        assert_eq!(scan.dimensions, Some((1, 1)));

        let out = sanitize_file(&gif(3), Some("anim.gif"), &Policy::default());
        let file = out.output.unwrap();
        assert_eq!(file.name, "anim.png");
        assert_eq!(out.report.items[0].action, Action::Converted);

        let out = sanitize_file(&gif(201), Some("many.gif"), &Policy::default());
        assert!(out.output.is_none());
        assert!(out.report.threats().contains(&threats::LIMIT_FRAMES));
    }

    #[test]
    fn bmp_becomes_png() {
        let mut bmp = Vec::new();
        small_rgb(3, 3)
            .write_to(&mut Cursor::new(&mut bmp), ImageFormat::Bmp)
            .unwrap();
        let out = sanitize_file(&bmp, Some("scan.bmp"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Clean);
        let file = out.output.unwrap();
        assert_eq!(file.name, "scan.png");
        assert!(file.bytes.as_slice().starts_with(b"\x89PNG"));
    }

    #[test]
    fn webp_is_scanned_and_becomes_png() {
        let mut webp = Vec::new();
        small_rgb(6, 4)
            .write_to(&mut Cursor::new(&mut webp), ImageFormat::WebP)
            .unwrap();
        let scan = scan_webp(&webp);
        assert_eq!(
            (scan.dimensions, scan.frames, scan.trailing),
            (Some((6, 4)), 1, 0)
        );
        webp.extend(b"PK\x03\x04");
        let out = sanitize_file(&webp, Some("w.webp"), &Policy::default());
        assert!(out.report.threats().contains(&threats::IMAGE_TRAILING_DATA));
        let file = out.output.unwrap();
        assert_eq!(file.name, "w.png");
        let back = image::load_from_memory(file.bytes.as_slice()).unwrap();
        assert_eq!(back.to_rgb8(), small_rgb(6, 4).to_rgb8());
    }

    #[test]
    fn truncated_image_is_blocked() {
        let png = encode_png(&small_rgb(5, 5)).unwrap();
        let out = sanitize_file(&png[..40], Some("t.png"), &Policy::default());
        assert!(out.output.is_none());
    }

    #[test]
    fn zero_height_gif_is_malformed_not_an_internal_error() {
        // Found by the `image` fuzz target (fuzz/regressions/image-gif-zero-height.gif).
        let gif = include_bytes!("../../../fuzz/regressions/image-gif-zero-height.gif");
        let out = crate::sanitize_file(gif, Some("a.gif"), &crate::Policy::default());
        assert_eq!(out.report.verdict, crate::Verdict::Blocked);
        assert_eq!(
            out.report.threats(),
            vec!["parse.failed"],
            "{:?}",
            out.report
        );
    }
}
