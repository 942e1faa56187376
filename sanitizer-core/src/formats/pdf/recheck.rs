//! The residual re-check: our own output is parsed again, by a code path other than the one
//! that wrote it, and must contain nothing active; otherwise the file is blocked
//! ([`SanitizeError::Recheck`]).
//!
//! - Rasterize output (written by pdf-writer) is parsed by lopdf and must consist of exactly the
//!   expected structure: catalog, page tree, pages, image XObjects (one, or on mixed pages one
//!   per picture region and a 1-bit stencil) and one content stream per page, with an allow-list
//!   of keys for each; plus, when the page has a text layer, exactly
//!   our font ([`super::text::font`]: one Type0 font `/Identity-H` over one `CIDFontType2`
//!   whose program is byte for byte the generated glyph-less font) and content streams with
//!   only the operators that paint the image and show invisible text in that font.
//! - Clean output (written by lopdf's writer) is parsed afresh from its bytes by lopdf's parser
//!   (object streams expanded, `#xx` names decoded) and walked for every dangerous key, action
//!   and annotation type.

use lopdf::{Document, LoadOptions, Object};

use crate::error::SanitizeError;
use crate::policy::PdfMode;

use super::active;
use super::text::font::{FONT_NAME, RESOURCE_NAME, glyphless_truetype};

/// Largest single stream the re-check decodes (object streams of our own output are small).
const MAX_STREAM: usize = 64 * 1024 * 1024;

/// Keys allowed in the rasterize output, by the kind of object they appear in.
const CATALOG_KEYS: &[&[u8]] = &[b"Type", b"Pages"];
const PAGES_KEYS: &[&[u8]] = &[b"Type", b"Kids", b"Count"];
const PAGE_KEYS: &[&[u8]] = &[b"Type", b"Parent", b"MediaBox", b"Contents", b"Resources"];
const IMAGE_KEYS: &[&[u8]] = &[
    b"Type",
    b"Subtype",
    b"Width",
    b"Height",
    b"ColorSpace",
    b"BitsPerComponent",
    b"Filter",
    b"DecodeParms",
    b"Length",
    // A 1-bit stencil (the text layer of a mixed page), painted in the fill colour.
    b"ImageMask",
];
const CONTENT_KEYS: &[&[u8]] = &[b"Length", b"Filter"];
/// The layer's font program, CID-to-GID map and ToUnicode streams.
const FONT_STREAM_KEYS: &[&[u8]] = &[b"Length", b"Filter", b"Length1"];
const TYPE0_KEYS: &[&[u8]] = &[
    b"Type",
    b"Subtype",
    b"BaseFont",
    b"Encoding",
    b"DescendantFonts",
    b"ToUnicode",
];
const CIDFONT_KEYS: &[&[u8]] = &[
    b"Type",
    b"Subtype",
    b"BaseFont",
    b"CIDSystemInfo",
    b"FontDescriptor",
    b"DW",
    b"CIDToGIDMap",
];
const DESCRIPTOR_KEYS: &[&[u8]] = &[
    b"Type",
    b"FontName",
    b"Flags",
    b"FontBBox",
    b"ItalicAngle",
    b"Ascent",
    b"Descent",
    b"CapHeight",
    b"StemV",
    b"FontFile2",
];
/// Operators allowed in page content: the image painting (`g`: the black fill of a mixed
/// page's 1-bit stencil) and invisible text in our font.
const CONTENT_OPS: &[&str] = &[
    "q", "Q", "cm", "g", "Do", "BT", "ET", "Tr", "Tf", "Tz", "Tm", "Tj",
];
/// Keys of dictionaries nested in the above (Resources, its XObject map, DecodeParms).
const NESTED_KEYS: &[&[u8]] = &[
    b"XObject",
    // One image per picture region plus the text stencil (`encode::MAX_REGIONS` + 1).
    b"Im0",
    b"Im1",
    b"Im2",
    b"Im3",
    b"Im4",
    b"Im5",
    b"Im6",
    b"Im7",
    b"Im8",
    b"K",
    b"Columns",
    b"Rows",
    b"BlackIs1",
    b"EndOfBlock",
    b"Font",
    b"T0",
    b"Registry",
    b"Ordering",
    b"Supplement",
];
const TRAILER_KEYS: &[&[u8]] = &[b"Root", b"Size", b"ID"];

fn fail(msg: impl Into<String>) -> SanitizeError {
    SanitizeError::Recheck(msg.into())
}

/// Re-checks a sanitized PDF produced in `mode`. `Ok` means nothing active was found.
pub fn recheck(bytes: &[u8], mode: PdfMode) -> Result<(), SanitizeError> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_STREAM),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options)
        .map_err(|e| fail(format!("output does not parse: {e}")))?;
    if doc.is_encrypted() {
        return Err(fail("output is encrypted"));
    }
    let found = active::find_active(&doc);
    if !found.is_empty() {
        let ids: Vec<&str> = found.into_iter().collect();
        return Err(fail(format!(
            "active content in output: {}",
            ids.join(", ")
        )));
    }
    if active::has_obfuscated_names(bytes) {
        return Err(fail("hex-escaped dangerous name in output"));
    }
    if mode == PdfMode::Rasterize {
        check_image_only(&doc)?;
    }
    Ok(())
}

fn check_keys(
    kind: &str,
    dict: &lopdf::Dictionary,
    allowed: &[&[u8]],
) -> Result<(), SanitizeError> {
    for (k, v) in dict.iter() {
        if !allowed.contains(&k.as_slice()) {
            return Err(fail(format!(
                "unexpected /{} in {kind}",
                String::from_utf8_lossy(k)
            )));
        }
        check_nested(v, 0)?;
    }
    Ok(())
}

fn check_nested(v: &Object, depth: u32) -> Result<(), SanitizeError> {
    if depth > 8 {
        return Err(fail("unexpectedly deep nesting"));
    }
    match v {
        Object::Dictionary(d) => {
            for (k, v) in d.iter() {
                if !NESTED_KEYS.contains(&k.as_slice()) {
                    return Err(fail(format!(
                        "unexpected /{} in a nested dictionary",
                        String::from_utf8_lossy(k)
                    )));
                }
                check_nested(v, depth + 1)?;
            }
            Ok(())
        }
        Object::Array(items) => items.iter().try_for_each(|i| check_nested(i, depth + 1)),
        Object::Stream(_) => Err(fail("unexpected inline stream")),
        _ => Ok(()),
    }
}

fn type_of(d: &lopdf::Dictionary, key: &[u8]) -> Option<Vec<u8>> {
    match d.get(key).ok()? {
        Object::Name(n) => Some(n.clone()),
        _ => None,
    }
}

fn expect_name(d: &lopdf::Dictionary, key: &[u8], want: &[u8]) -> Result<(), SanitizeError> {
    match d.get(key) {
        Ok(Object::Name(n)) if n.as_slice() == want => Ok(()),
        _ => Err(fail(format!(
            "/{} is not /{}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(want)
        ))),
    }
}

/// A font object must be one of the text layer's; at most one of each kind.
fn check_font(d: &lopdf::Dictionary, seen: &mut [usize; 2]) -> Result<(), SanitizeError> {
    let slot = match type_of(d, b"Subtype").as_deref() {
        Some(b"Type0") => {
            check_keys("layer font", d, TYPE0_KEYS)?;
            expect_name(d, b"Encoding", b"Identity-H")?;
            0
        }
        Some(b"CIDFontType2") => {
            check_keys("layer CID font", d, CIDFONT_KEYS)?;
            1
        }
        _ => return Err(fail("font other than the text layer's")),
    };
    expect_name(d, b"BaseFont", FONT_NAME)?;
    if let Some(n) = seen.get_mut(slot) {
        *n += 1;
        if *n > 1 {
            return Err(fail("more than one text layer font"));
        }
    }
    Ok(())
}

/// The font program referenced by the layer's descriptor must be the one we generate.
fn check_font_program(doc: &Document, d: &lopdf::Dictionary) -> Result<(), SanitizeError> {
    let id = d
        .get(b"FontFile2")
        .and_then(Object::as_reference)
        .map_err(|_| fail("font descriptor without a font program"))?;
    let stream = doc
        .get_object(id)
        .and_then(Object::as_stream)
        .map_err(|_| fail("font program is not a stream"))?;
    let program = stream
        .decompressed_content()
        .map_err(|_| fail("font program does not decode"))?;
    if program != glyphless_truetype() {
        return Err(fail("font program is not the text layer's"));
    }
    Ok(())
}

/// Page content may only paint images and show invisible text in the layer font.
fn check_content(doc: &Document, page: lopdf::ObjectId) -> Result<(), SanitizeError> {
    let dict = doc
        .get_dictionary(page)
        .map_err(|_| fail("page is not a dictionary"))?;
    let refs: Vec<lopdf::ObjectId> = match dict.get(b"Contents") {
        Ok(Object::Reference(r)) => vec![*r],
        Ok(Object::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_reference()
                    .map_err(|_| fail("page content is not a reference"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(fail("page without content")),
    };
    let mut bytes = Vec::new();
    for r in refs {
        let stream = doc
            .get_object(r)
            .and_then(Object::as_stream)
            .map_err(|_| fail("page content is not a stream"))?;
        let data = if stream.dict.has(b"Filter") {
            stream
                .decompressed_content()
                .map_err(|_| fail("page content does not decode"))?
        } else {
            stream.content.clone()
        };
        bytes.extend_from_slice(&data);
        bytes.push(b'\n');
    }
    let content =
        lopdf::content::Content::decode(&bytes).map_err(|_| fail("page content does not parse"))?;
    let mut in_text = false;
    for op in &content.operations {
        let name = op.operator.as_str();
        if !CONTENT_OPS.contains(&name) {
            return Err(fail(format!("operator {name} in page content")));
        }
        match name {
            "BT" if in_text => return Err(fail("nested BT")),
            "BT" => in_text = true,
            "ET" if !in_text => return Err(fail("ET without BT")),
            "ET" => in_text = false,
            "Tr" | "Tf" | "Tz" | "Tm" | "Tj" if !in_text => {
                return Err(fail(format!("{name} outside a text object")));
            }
            "q" | "Q" | "cm" | "Do" if in_text => {
                return Err(fail(format!("{name} inside a text object")));
            }
            _ => {}
        }
        match (name, op.operands.as_slice()) {
            ("Tr", [mode]) if mode.as_i64().ok() == Some(3) => {}
            ("Tr", _) => return Err(fail("text that is not invisible")),
            ("Tf", [Object::Name(font), _]) if font.as_slice() == RESOURCE_NAME => {}
            ("Tf", _) => return Err(fail("text in a font other than the layer's")),
            ("Tj", [Object::String(..)]) => {}
            ("Tj", _) => return Err(fail("malformed Tj")),
            ("Do", [Object::Name(n)]) if n.starts_with(b"Im") => {}
            ("Do", _) => return Err(fail("XObject other than a page image")),
            _ => {}
        }
    }
    if in_text {
        return Err(fail("BT without ET"));
    }
    Ok(())
}

/// The rasterize output may contain nothing but the page/image structure and the text layer.
fn check_image_only(doc: &Document) -> Result<(), SanitizeError> {
    check_keys("trailer", &doc.trailer, TRAILER_KEYS)?;
    let mut fonts_seen = [0usize; 2];
    for obj in doc.objects.values() {
        match obj {
            Object::Dictionary(d) => match type_of(d, b"Type").as_deref() {
                Some(b"Catalog") => check_keys("catalog", d, CATALOG_KEYS)?,
                Some(b"Pages") => check_keys("page tree", d, PAGES_KEYS)?,
                Some(b"Page") => check_keys("page", d, PAGE_KEYS)?,
                Some(b"Font") => check_font(d, &mut fonts_seen)?,
                Some(b"FontDescriptor") => {
                    check_keys("font descriptor", d, DESCRIPTOR_KEYS)?;
                    expect_name(d, b"FontName", FONT_NAME)?;
                    check_font_program(doc, d)?;
                }
                other => {
                    return Err(fail(format!(
                        "unexpected object of type {:?}",
                        other.map(|o| String::from_utf8_lossy(o).into_owned())
                    )));
                }
            },
            Object::Stream(s) => {
                if type_of(&s.dict, b"Subtype").as_deref() == Some(b"Image") {
                    check_keys("image", &s.dict, IMAGE_KEYS)?;
                } else if s.dict.has(b"Length1") {
                    check_keys("font program", &s.dict, FONT_STREAM_KEYS)?;
                } else {
                    check_keys("content stream", &s.dict, CONTENT_KEYS)?;
                }
                if s.dict.has(b"Filter")
                    && type_of(&s.dict, b"Subtype").as_deref() != Some(b"Image")
                {
                    expect_name(&s.dict, b"Filter", b"FlateDecode")?;
                }
            }
            _ => return Err(fail("unexpected non-dictionary object")),
        }
    }
    for page in doc.get_pages().values() {
        check_content(doc, *page)?;
    }
    Ok(())
}
