//! The residual re-check: our own output is parsed again, by a code path other than the one
//! that wrote it, and must contain nothing active; otherwise the file is blocked
//! ([`SanitizeError::Recheck`]).
//!
//! - Rasterize output (written by pdf-writer) is parsed by lopdf and must consist of exactly the
//!   expected structure: catalog, page tree, pages, image XObjects (one, or on mixed pages one per
//!   picture region and a stencil) and one content stream per page, with an allow-list of keys for each.
//! - Clean output (written by lopdf's writer) is parsed afresh from its bytes by lopdf's parser
//!   (object streams expanded, `#xx` names decoded) and walked for every dangerous key, action
//!   and annotation type.

use lopdf::{Document, LoadOptions, Object};

use crate::error::SanitizeError;
use crate::policy::PdfMode;

use super::active;

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

/// The rasterize output may contain nothing but the page/image structure.
fn check_image_only(doc: &Document) -> Result<(), SanitizeError> {
    check_keys("trailer", &doc.trailer, TRAILER_KEYS)?;
    for obj in doc.objects.values() {
        match obj {
            Object::Dictionary(d) => match type_of(d, b"Type").as_deref() {
                Some(b"Catalog") => check_keys("catalog", d, CATALOG_KEYS)?,
                Some(b"Pages") => check_keys("page tree", d, PAGES_KEYS)?,
                Some(b"Page") => check_keys("page", d, PAGE_KEYS)?,
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
                } else {
                    check_keys("content stream", &s.dict, CONTENT_KEYS)?;
                }
            }
            _ => return Err(fail("unexpected non-dictionary object")),
        }
    }
    Ok(())
}
