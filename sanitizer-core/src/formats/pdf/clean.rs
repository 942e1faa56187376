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
        Err(lopdf::Error::Decryption(e)) => Err(SanitizeError::Encrypted(format!(
            "encrypted PDF that cannot be opened without a password ({e})"
        ))),
        Err(e) => {
            let msg = e.to_string();
            if msg.to_ascii_lowercase().contains("password") || msg.contains("ecrypt") {
                Err(SanitizeError::Encrypted(format!("encrypted PDF: {msg}")))
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

/// Cleans `input`; returns the new file and the threats removed.
pub fn clean(
    input: &[u8],
    budget: &mut Budget,
) -> Result<(Vec<u8>, Vec<&'static str>), SanitizeError> {
    let mut doc = load(input, budget)?;
    if doc.is_encrypted() {
        return Err(SanitizeError::Encrypted("encrypted PDF".into()));
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
    budget.check_deadline()?;

    let mut out = Vec::with_capacity(input.len());
    doc.save_to(&mut out)
        .map_err(|e| SanitizeError::Internal(format!("writing the cleaned PDF failed: {e}")))?;
    Ok((out, found.into_iter().collect()))
}
