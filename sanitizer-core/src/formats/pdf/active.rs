//! What counts as active content in a PDF, found by walking parsed objects (never raw stream
//! bytes, where `/JS` can occur by chance in compressed data).
//!
//! Shared by the structural cleaner (which removes what it finds), the rasterizer (which only
//! reports it: rasterizing removes everything by construction) and the residual re-check.
//! Names are compared after `#xx` decoding, which lopdf performs while parsing, so
//! `/J#61vaScript` is seen as `/JavaScript`.

use std::collections::BTreeSet;

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::threats as t;

/// Keys that are dangerous wherever they appear, and the threat each one means.
pub const DANGEROUS_KEYS: &[(&[u8], &str)] = &[
    (b"JS", t::PDF_JAVASCRIPT),
    (b"JavaScript", t::PDF_JAVASCRIPT),
    (b"OpenAction", t::PDF_OPEN_ACTION),
    (b"AA", t::PDF_ADDITIONAL_ACTIONS),
    (b"Launch", t::PDF_LAUNCH),
    (b"URI", t::PDF_URI),
    (b"EmbeddedFiles", t::PDF_EMBEDDED_FILE),
    (b"EmbeddedFile", t::PDF_EMBEDDED_FILE),
    (b"EF", t::PDF_EMBEDDED_FILE),
    (b"RichMedia", t::PDF_RICH_MEDIA),
    (b"RichMediaContent", t::PDF_RICH_MEDIA),
    (b"RichMediaSettings", t::PDF_RICH_MEDIA),
    (b"XFA", t::PDF_XFA),
    (b"3DD", t::PDF_3D),
];

/// Action types (`/S`) that are removed, and their threat.
pub const DANGEROUS_ACTIONS: &[(&[u8], &str)] = &[
    (b"JavaScript", t::PDF_JAVASCRIPT),
    (b"Launch", t::PDF_LAUNCH),
    (b"GoToR", t::PDF_REMOTE_GOTO),
    (b"GoToE", t::PDF_REMOTE_GOTO),
    (b"SubmitForm", t::PDF_SUBMIT_FORM),
    (b"ImportData", t::PDF_IMPORT_DATA),
    (b"URI", t::PDF_URI),
    (b"Rendition", t::PDF_RENDITION),
    (b"Sound", t::PDF_RENDITION),
    (b"Movie", t::PDF_RENDITION),
    (b"RichMediaExecute", t::PDF_RICH_MEDIA),
    (b"GoTo3DView", t::PDF_3D),
];

/// Annotation subtypes (and object types) that are removed, and their threat.
pub const DANGEROUS_SUBTYPES: &[(&[u8], &str)] = &[
    (b"FileAttachment", t::PDF_EMBEDDED_FILE),
    (b"EmbeddedFile", t::PDF_EMBEDDED_FILE),
    (b"RichMedia", t::PDF_RICH_MEDIA),
    (b"3D", t::PDF_3D),
    (b"Movie", t::PDF_RENDITION),
    (b"Sound", t::PDF_RENDITION),
    (b"Screen", t::PDF_RENDITION),
];

fn lookup(table: &[(&[u8], &'static str)], name: &[u8]) -> Option<&'static str> {
    table.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
}

fn name_of<'a>(dict: &'a Dictionary, key: &[u8]) -> Option<&'a [u8]> {
    match dict.get(key).ok()? {
        Object::Name(n) => Some(n.as_slice()),
        _ => None,
    }
}

/// Whether `dict` is itself dangerous as a whole (an action of a removed type, a file
/// attachment or multimedia annotation, an embedded file), and which threat it is.
pub fn dangerous_dict(dict: &Dictionary) -> Option<&'static str> {
    if let Some(s) = name_of(dict, b"S")
        && let Some(id) = lookup(DANGEROUS_ACTIONS, s)
    {
        return Some(id);
    }
    for key in [b"Subtype".as_slice(), b"Type".as_slice()] {
        if let Some(s) = name_of(dict, key)
            && let Some(id) = lookup(DANGEROUS_SUBTYPES, s)
        {
            return Some(id);
        }
    }
    None
}

fn as_dict(obj: &Object) -> Option<&Dictionary> {
    match obj {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

fn as_dict_mut(obj: &mut Object) -> Option<&mut Dictionary> {
    match obj {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&mut s.dict),
        _ => None,
    }
}

/// Ids of the indirect objects that are dangerous as a whole.
fn dangerous_ids(doc: &Document, found: &mut BTreeSet<&'static str>) -> BTreeSet<ObjectId> {
    let mut ids = BTreeSet::new();
    for (id, obj) in &doc.objects {
        if let Some(threat) = as_dict(obj).and_then(dangerous_dict) {
            found.insert(threat);
            ids.insert(*id);
        }
    }
    ids
}

/// Whether a value must go: a reference to a dangerous object or an inline dangerous dict.
fn value_is_dangerous(
    v: &Object,
    ids: &BTreeSet<ObjectId>,
    found: &mut BTreeSet<&'static str>,
) -> bool {
    match v {
        Object::Reference(r) => ids.contains(r),
        Object::Dictionary(d) => match dangerous_dict(d) {
            Some(threat) => {
                found.insert(threat);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Records the threats in an inline value (references are judged as objects of their own).
fn collect_inline(v: &Object, found: &mut BTreeSet<&'static str>, depth: u32) {
    if depth > 64 {
        return;
    }
    match v {
        Object::Array(items) => items
            .iter()
            .for_each(|i| collect_inline(i, found, depth + 1)),
        Object::Dictionary(d) => {
            if let Some(th) = dangerous_dict(d) {
                found.insert(th);
            }
            for (k, v) in d.iter() {
                if let Some(th) = lookup(DANGEROUS_KEYS, k) {
                    found.insert(th);
                }
                collect_inline(v, found, depth + 1);
            }
        }
        _ => {}
    }
}

/// Removes dangerous keys and values from `obj` and everything nested inside it.
fn strip(
    obj: &mut Object,
    ids: &BTreeSet<ObjectId>,
    found: &mut BTreeSet<&'static str>,
    depth: u32,
) {
    if depth > 64 {
        // Deeper nesting than any real PDF: drop the content rather than recurse further.
        *obj = Object::Null;
        return;
    }
    match obj {
        Object::Array(items) => {
            items.retain(|v| !value_is_dangerous(v, ids, found));
            for v in items.iter_mut() {
                strip(v, ids, found, depth + 1);
            }
        }
        Object::Dictionary(_) | Object::Stream(_) => {
            let Some(dict) = as_dict_mut(obj) else { return };
            let keys: Vec<Vec<u8>> = dict.iter().map(|(k, _)| k.clone()).collect();
            for key in keys {
                let key_threat = lookup(DANGEROUS_KEYS, &key);
                let drop = match dict.get(&key) {
                    Ok(v) => value_is_dangerous(v, ids, found) || key_threat.is_some(),
                    Err(_) => false,
                };
                if drop {
                    if let Some(th) = key_threat {
                        found.insert(th);
                    }
                    if let Some(removed) = dict.remove(&key) {
                        // Name what the removed value held too (a script inside /AA).
                        collect_inline(&removed, found, depth);
                    }
                }
            }
            for (_, v) in dict.iter_mut() {
                strip(v, ids, found, depth + 1);
            }
        }
        _ => {}
    }
}

/// Removes every active construct from `doc` in place and returns the threats found. Dangerous
/// objects themselves are emptied; unreachable ones go when the document is pruned.
pub fn remove_active(doc: &mut Document) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    let ids = dangerous_ids(doc, &mut found);
    for id in &ids {
        if let Some(obj) = doc.objects.get_mut(id) {
            *obj = Object::Null;
        }
    }
    for obj in doc.objects.values_mut() {
        strip(obj, &ids, &mut found, 0);
    }
    let mut trailer = Object::Dictionary(std::mem::take(&mut doc.trailer));
    strip(&mut trailer, &ids, &mut found, 0);
    if let Object::Dictionary(d) = trailer {
        doc.trailer = d;
    }
    found
}

/// Every dangerous construct in `doc`, without changing it (used by the re-check).
pub fn find_active(doc: &Document) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    let _ = dangerous_ids(doc, &mut found);
    let mut stack: Vec<(&Object, u32)> = doc.objects.values().map(|o| (o, 0)).collect();
    let trailer = Object::Dictionary(doc.trailer.clone());
    stack.push((&trailer, 0));
    while let Some((obj, depth)) = stack.pop() {
        if depth > 64 {
            found.insert(t::PDF_OBFUSCATED_NAME);
            continue;
        }
        match obj {
            Object::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Object::Dictionary(_) | Object::Stream(_) => {
                if let Some(d) = as_dict(obj) {
                    if let Some(th) = dangerous_dict(d) {
                        found.insert(th);
                    }
                    for (k, v) in d.iter() {
                        if let Some(th) = lookup(DANGEROUS_KEYS, k) {
                            found.insert(th);
                        }
                        stack.push((v, depth + 1));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Whether the raw file spells a dangerous name with `#xx` escapes (`/J#61vaScript`), a trick
/// to slip past keyword scanners.
pub fn has_obfuscated_names(raw: &[u8]) -> bool {
    let mut i = 0usize;
    while let Some(rest) = raw.get(i..) {
        let Some(pos) = rest.iter().position(|b| *b == b'/') else {
            break;
        };
        let start = i + pos + 1;
        let mut end = start;
        while let Some(b) = raw.get(end) {
            if b.is_ascii_whitespace() || b"/()<>[]{}%".contains(b) {
                break;
            }
            end += 1;
        }
        i = end.max(start);
        let Some(name) = raw.get(start..end) else {
            break;
        };
        if !name.contains(&b'#') || name.len() > 64 {
            continue;
        }
        let decoded = decode_name(name);
        if lookup(DANGEROUS_KEYS, &decoded).is_some()
            || lookup(DANGEROUS_ACTIONS, &decoded).is_some()
            || lookup(DANGEROUS_SUBTYPES, &decoded).is_some()
        {
            return true;
        }
    }
    false
}

fn decode_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut it = name.iter().copied();
    while let Some(b) = it.next() {
        if b == b'#' {
            let hi = it.next();
            let lo = it.next();
            let hex = [hi.unwrap_or(b'0'), lo.unwrap_or(b'0')];
            match std::str::from_utf8(&hex)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
            {
                Some(v) => out.push(v),
                None => out.extend_from_slice(&hex),
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// Whether the file carries incremental updates (more than one cross-reference section; a
/// linearized file's two sections do not count).
pub fn has_incremental_update(raw: &[u8]) -> bool {
    let count = raw.windows(9).filter(|w| *w == b"startxref").count();
    let linearized = raw
        .get(..raw.len().min(1024))
        .is_some_and(|head| head.windows(11).any(|w| w == b"/Linearized"));
    count > if linearized { 2 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obfuscated_names_are_decoded() {
        assert!(has_obfuscated_names(b"<< /S /J#61vaScript /JS (x) >>"));
        assert!(has_obfuscated_names(b"<</#4F#70enAction 3 0 R>>"));
        assert!(!has_obfuscated_names(b"<< /Type /Page /Font#20Name 1 >>"));
        assert!(!has_obfuscated_names(b"no names here"));
    }

    #[test]
    fn incremental_updates_are_counted() {
        assert!(!has_incremental_update(
            b"%PDF-1.4\n...startxref\n9\n%%EOF\n"
        ));
        assert!(has_incremental_update(
            b"%PDF-1.4\nstartxref\n9\n%%EOF\nmore startxref\n99\n%%EOF\n"
        ));
    }
}
