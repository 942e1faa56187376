//! Bounded, DTD-free XML reading on top of quick-xml.

use std::time::Instant;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::SanitizeError;
use crate::limits::LimitKind;

/// Deepest element nesting accepted in one XML part (Word tables nest deeply, but not this).
pub const MAX_XML_DEPTH: u32 = 256;

/// How many events are read between two deadline checks.
const DEADLINE_EVERY: u32 = 4096;

/// A reader over `bytes` that checks end names and keeps whitespace.
pub fn reader(bytes: &[u8]) -> Reader<&[u8]> {
    let mut r = Reader::from_reader(bytes);
    let c = r.config_mut();
    c.check_end_names = true;
    c.trim_text(false);
    c.expand_empty_elements = false;
    r
}

/// Tracks nesting and time while a part is read; every event passes through [`Guard::check`].
#[derive(Debug)]
pub struct Guard {
    depth: u32,
    events: u32,
    deadline: Instant,
    part: String,
}

impl Guard {
    /// A guard for the part named `part`, giving up at `deadline`.
    pub fn new(part: &str, deadline: Instant) -> Guard {
        Guard {
            depth: 0,
            events: 0,
            deadline,
            part: part.to_owned(),
        }
    }

    /// Current element depth (0 outside the root element).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Checks one event: no DTD, nesting within [`MAX_XML_DEPTH`], deadline; undefined entity
    /// references are refused.
    pub fn check(&mut self, ev: &Event<'_>) -> Result<(), SanitizeError> {
        self.events = self.events.wrapping_add(1);
        if self.events.is_multiple_of(DEADLINE_EVERY) && Instant::now() >= self.deadline {
            return Err(SanitizeError::limit(
                LimitKind::Deadline,
                format!("deadline passed while reading {}", self.part),
            ));
        }
        match ev {
            Event::DocType(_) => {
                return Err(SanitizeError::Malformed(format!(
                    "{}: a DTD is not allowed in an Office package",
                    self.part
                )));
            }
            Event::Start(_) => {
                self.depth = self.depth.saturating_add(1);
                if self.depth > MAX_XML_DEPTH {
                    return Err(SanitizeError::limit(
                        LimitKind::Depth,
                        format!("{}: XML nested deeper than {MAX_XML_DEPTH}", self.part),
                    ));
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            Event::GeneralRef(r) => {
                entity_text(r)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Wraps a quick-xml error with the part name.
    pub fn err(&self, e: impl std::fmt::Display) -> SanitizeError {
        SanitizeError::Malformed(format!("{}: {e}", self.part))
    }
}

/// The text an entity reference stands for: a character reference or one of the five
/// predefined entities. Anything else would need a DTD: refused.
pub fn entity_text(r: &quick_xml::events::BytesRef<'_>) -> Result<String, SanitizeError> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Ok(c.to_string());
    }
    let name = r
        .decode()
        .map_err(|e| SanitizeError::Malformed(format!("entity reference: {e}")))?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| SanitizeError::Malformed(format!("undefined entity &{name};")))
}

/// The text of a Text, CData or GeneralRef event (empty for others).
pub fn event_text(ev: &Event<'_>) -> Result<String, SanitizeError> {
    let bad = |e: &dyn std::fmt::Display| SanitizeError::Malformed(format!("XML text: {e}"));
    Ok(match ev {
        Event::Text(t) => t.xml_content().map_err(|e| bad(&e))?.into_owned(),
        Event::CData(t) => t.xml_content().map_err(|e| bad(&e))?.into_owned(),
        Event::GeneralRef(r) => entity_text(r)?,
        _ => String::new(),
    })
}

/// The local part of a qualified name (`w:instr` → `instr`).
pub fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b':') {
        Some(i) => name.get(i.saturating_add(1)..).unwrap_or_default(),
        None => name,
    }
}

/// The unescaped value of the first attribute whose local name is `key`.
pub fn attr(e: &BytesStart<'_>, key: &[u8]) -> Result<Option<String>, SanitizeError> {
    for a in e.attributes() {
        let a = a.map_err(|err| SanitizeError::Malformed(format!("XML attribute: {err}")))?;
        if local(a.key.as_ref()) == key {
            let v = a
                .unescape_value()
                .map_err(|err| SanitizeError::Malformed(format!("XML attribute value: {err}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Every attribute of `e` as (qualified name, unescaped value).
pub fn attrs(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, SanitizeError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| SanitizeError::Malformed(format!("XML attribute: {err}")))?;
        let k = String::from_utf8(a.key.as_ref().to_vec())
            .map_err(|_| SanitizeError::Malformed("XML attribute name is not UTF-8".into()))?;
        let v = a
            .unescape_value()
            .map_err(|err| SanitizeError::Malformed(format!("XML attribute value: {err}")))?;
        out.push((k, v.into_owned()));
    }
    Ok(out)
}

/// A start tag named `name` with `attrs` (values escaped on write).
pub fn start_with(
    name: &[u8],
    attrs: &[(String, String)],
) -> Result<BytesStart<'static>, SanitizeError> {
    let name = std::str::from_utf8(name)
        .map_err(|_| SanitizeError::Malformed("XML element name is not UTF-8".into()))?;
    let mut s = BytesStart::new(name.to_owned());
    for (k, v) in attrs {
        s.push_attribute((k.as_str(), v.as_str()));
    }
    Ok(s)
}

/// Escapes text for XML content or attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(xml: &str) -> Result<u32, SanitizeError> {
        let mut r = reader(xml.as_bytes());
        let mut g = Guard::new("t.xml", Instant::now() + std::time::Duration::from_secs(5));
        let mut max = 0;
        loop {
            let ev = r.read_event().map_err(|e| g.err(e))?;
            g.check(&ev)?;
            max = max.max(g.depth());
            if matches!(ev, Event::Eof) {
                return Ok(max);
            }
        }
    }

    #[test]
    fn dtd_and_custom_entities_are_refused() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"xxxx\">]><a>&x;</a>";
        assert!(matches!(read_all(bomb), Err(SanitizeError::Malformed(_))));
        assert!(matches!(
            read_all("<a>&x;</a>"),
            Err(SanitizeError::Malformed(_))
        ));
        assert!(read_all("<a>&amp;&#x41;</a>").is_ok());
    }

    #[test]
    fn depth_limit_trips() {
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        assert!(matches!(
            read_all(&deep),
            Err(SanitizeError::Limit {
                kind: LimitKind::Depth,
                ..
            })
        ));
        let ok = "<a>".repeat(200) + &"</a>".repeat(200);
        assert_eq!(read_all(&ok).unwrap(), 200);
    }

    #[test]
    fn mismatched_end_tags_are_malformed() {
        assert!(read_all("<a><b></a>").is_err());
    }
}
