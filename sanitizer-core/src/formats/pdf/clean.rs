//! Structural mode: active content removed with lopdf, text stays selectable.
//!
//! Steps: load with size-limited decompression (object streams are expanded on load), charge
//! every Flate stream's decoded size to the budget (a bomb trips `limit.decoded_bytes` instead
//! of reaching the recipient's viewer), remove every construct listed in THREATS.md, rebuild the
//! trailer with `/Root` only (no `/Info`, no incremental history), drop the catalog's XMP
//! metadata, prune every object not reachable from the new root, and write a fresh file.

use std::io::Read;

use lopdf::{Document, LoadOptions, Object};

use crate::error::SanitizeError;
use crate::limits::Budget;
use crate::threats as t;

use super::active;

/// Ceiling for any single stream lopdf decodes while loading (object and xref streams).
const MAX_LOAD_STREAM: usize = 64 * 1024 * 1024;

/// Loads untrusted bytes with lopdf. Encrypted files without the empty password are refused.
pub fn load(input: &[u8], budget: &Budget) -> Result<Document, SanitizeError> {
    let cap = usize::try_from(budget.decoded_remaining())
        .unwrap_or(usize::MAX)
        .min(MAX_LOAD_STREAM);
    let options = LoadOptions {
        max_decompressed_size: Some(cap),
        ..LoadOptions::default()
    };
    match Document::load_mem_with_options(input, options) {
        Ok(doc) => Ok(doc),
        Err(lopdf::Error::Decryption(e)) => Err(SanitizeError::encrypted(
            t::PDF_ENCRYPTED,
            format!("encrypted PDF that cannot be opened without a password ({e})"),
        )),
        Err(e) => {
            let msg = e.to_string();
            if msg.to_ascii_lowercase().contains("password") || msg.contains("ecrypt") {
                Err(SanitizeError::encrypted(
                    t::PDF_ENCRYPTED,
                    format!("encrypted PDF: {msg}"),
                ))
            } else {
                Err(SanitizeError::Malformed(format!(
                    "PDF could not be parsed: {msg}"
                )))
            }
        }
    }
}

/// Charges the decoded size of every Flate stream without keeping the decoded bytes. Chains of
/// Flate filters (`[/FlateDecode /FlateDecode]`, a cheap way to build a bomb) are decoded through
/// in one streaming pass, so memory stays constant whatever the declared or real size.
pub fn charge_streams(doc: &Document, budget: &mut Budget) -> Result<(), SanitizeError> {
    for obj in doc.objects.values() {
        budget.check_deadline()?;
        let Object::Stream(stream) = obj else {
            continue;
        };
        let flate_layers = stream
            .filters()
            .map(|f| {
                f.iter()
                    .take_while(|n| **n == b"FlateDecode".as_slice())
                    .count()
            })
            .unwrap_or(0);
        if flate_layers == 0 {
            continue;
        }
        let mut reader: Box<dyn Read + '_> = Box::new(stream.content.as_slice());
        // Each layer is one decoder; a dozen layers is already absurd.
        for _ in 0..flate_layers.min(16) {
            reader = Box::new(flate2::read::ZlibDecoder::new(reader));
        }
        let remaining = budget.decoded_remaining();
        // A corrupt stream counts what it produced before failing; a viewer sees no more.
        let n = std::io::copy(
            &mut reader.take(remaining.saturating_add(1)),
            &mut std::io::sink(),
        )
        .unwrap_or(0);
        budget.charge_decoded(n)?;
    }
    Ok(())
}

/// Warning id: the PDF was encrypted with an empty user password (it opens without one); it was
/// decrypted and processed like any other.
pub const WARN_ENCRYPTED_EMPTY_PASSWORD: &str = "pdf.encrypted_empty_password";
/// Warning id: the PDF had no usable page tree; one was rebuilt from its page objects.
pub const WARN_PAGE_TREE_REBUILT: &str = "pdf.page_tree_rebuilt";

/// What cleaning produced: the new file, the threats removed, the warnings.
#[derive(Debug)]
pub struct Cleaned {
    /// The new PDF.
    pub bytes: Vec<u8>,
    /// Threat ids removed.
    pub threats: Vec<&'static str>,
    /// Warning ids ([`WARN_ENCRYPTED_EMPTY_PASSWORD`], [`WARN_PAGE_TREE_REBUILT`]).
    pub warnings: Vec<&'static str>,
}

/// The page objects (`/Type /Page`) of a document, in object number order, for a document
/// whose page tree is missing or empty.
fn page_objects(doc: &Document) -> Vec<lopdf::ObjectId> {
    doc.objects
        .iter()
        .filter(|(_, o)| {
            o.as_dict()
                .ok()
                .and_then(|d| d.get(b"Type").ok())
                .and_then(|t| t.as_name().ok())
                == Some(b"Page".as_slice())
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Rebuilds the page tree of a document that has none (or an empty one) from its page
/// objects, as viewers do; returns whether it did. A document with neither stays as it is.
pub fn recover_page_tree(doc: &mut Document) -> bool {
    if !doc.get_pages().is_empty() {
        return false;
    }
    let pages = page_objects(doc);
    if pages.is_empty() {
        return false;
    }
    let Some(root) = doc
        .trailer
        .get(b"Root")
        .ok()
        .and_then(|r| r.as_reference().ok())
    else {
        return false;
    };
    let Ok(tree_id) = doc.try_new_object_id() else {
        return false;
    };
    let mut tree = lopdf::Dictionary::new();
    tree.set("Type", Object::Name(b"Pages".to_vec()));
    tree.set(
        "Kids",
        Object::Array(pages.iter().map(|p| Object::Reference(*p)).collect()),
    );
    tree.set("Count", Object::Integer(pages.len() as i64));
    for p in &pages {
        if let Some(Object::Dictionary(d)) = doc.objects.get_mut(p) {
            d.set("Parent", Object::Reference(tree_id));
        }
    }
    doc.objects.insert(tree_id, Object::Dictionary(tree));
    match doc.objects.get_mut(&root) {
        Some(Object::Dictionary(catalog)) => {
            catalog.set("Pages", Object::Reference(tree_id));
            true
        }
        _ => false,
    }
}

/// Cleans `input`: the new file, the threats removed and the warnings.
pub fn clean(input: &[u8], budget: &mut Budget) -> Result<Cleaned, SanitizeError> {
    let mut doc = load(input, budget)?;
    let mut warnings = Vec::new();
    // lopdf decrypts on load when the empty user password opens the file (owner-password
    // "restrictions" only, or an encrypted attachment): processed like any PDF, with a
    // warning. Anything else needs a password we do not have.
    if doc.was_encrypted() {
        warnings.push(WARN_ENCRYPTED_EMPTY_PASSWORD);
    } else if doc.is_encrypted() {
        return Err(SanitizeError::encrypted(
            t::PDF_ENCRYPTED,
            "encrypted PDF that cannot be opened without a password",
        ));
    }
    if recover_page_tree(&mut doc) {
        warnings.push(WARN_PAGE_TREE_REBUILT);
    }
    let pages = doc.get_pages().len() as u64;
    budget.check_pages(pages)?;
    if pages == 0 {
        return Err(SanitizeError::Malformed("PDF without pages".into()));
    }
    charge_streams(&doc, budget)?;
    budget.check_deadline()?;

    let mut found = active::remove_active(&mut doc);
    if active::has_obfuscated_names(input) {
        found.insert(t::PDF_OBFUSCATED_NAME);
    }
    if active::has_incremental_update(input) {
        found.insert(t::PDF_INCREMENTAL_UPDATE);
    }

    // Fresh trailer: the catalog only. Everything else (Info, Prev, Encrypt, XRefStm) goes.
    let root = doc
        .trailer
        .get(b"Root")
        .ok()
        .and_then(|r| r.as_reference().ok())
        .ok_or_else(|| SanitizeError::Malformed("PDF without a catalog".into()))?;
    let mut trailer = lopdf::Dictionary::new();
    trailer.set("Root", Object::Reference(root));
    doc.trailer = trailer;
    if let Some(Object::Dictionary(catalog)) = doc.objects.get_mut(&root) {
        catalog.remove(b"Metadata");
        catalog.remove(b"PieceInfo");
    }
    doc.prune_objects();
    // The trailer's /Size is written from `max_id`, which still counts the pruned objects (or
    // misses ones loaded from object streams): make it one plus the highest object number.
    doc.max_id = doc.objects.keys().map(|(id, _)| *id).max().unwrap_or(0);
    budget.check_deadline()?;

    let mut out = Vec::with_capacity(input.len());
    doc.save_to(&mut out)
        .map_err(|e| SanitizeError::Internal(format!("writing the cleaned PDF failed: {e}")))?;
    Ok(Cleaned {
        bytes: out,
        threats: found.into_iter().collect(),
        warnings,
    })
}

/// A copy of a PDF for the rasterizer, when it needs one: decrypted if it opens with the empty
/// user password (the rasterizer does not decrypt every security handler itself), with its
/// page tree rebuilt if it had none. `None` when the input can be rendered as it is.
pub fn repaired_copy(input: &[u8], budget: &Budget) -> Option<Vec<u8>> {
    let mut doc = load(input, budget).ok()?;
    let rebuilt = recover_page_tree(&mut doc);
    if !doc.was_encrypted() && !rebuilt {
        return None;
    }
    doc.trailer.remove(b"Encrypt");
    doc.max_id = doc.objects.keys().map(|(id, _)| *id).max().unwrap_or(0);
    let mut out = Vec::with_capacity(input.len());
    doc.save_to(&mut out).ok()?;
    Some(out)
}
