//! Legacy Office (doc/xls/ppt, OLE2 compound files): never passed as they are.
//!
//! By default (`office.convert_legacy`) the document is converted by LibreOffice, lent by the
//! caller as [`Context::converter`], to its OOXML equivalent (doc → docx, xls → xlsx,
//! ppt → pptx), and that is cleaned by the OOXML sanitizer: the report says `converted`, with
//! `{"converted_to": "docx"}`, and carries the OOXML findings. In Office rasterize mode the
//! document is converted to PDF and rendered by the PDF sanitizer instead. Without a converter,
//! with conversion disabled, or when LibreOffice fails, the document is removed (blocked at the
//! top level) with the reason.
//!
//! Before any conversion the compound file is read (the `cfb` crate, streams through
//! [`read_capped`]) and what it holds is reported whatever the converter then does:
//! - the type comes from the **root storage only** (`WordDocument` → doc, `Workbook`/`Book` →
//!   xls, `PowerPoint Document` → ppt): an embedded object's storage (`MBD…`, `ObjectPool/_…`)
//!   never decides it (a directory the `cfb` crate refuses is judged by its entry names
//!   instead, the first application stream deciding: LibreOffice regenerates it anyway);
//! - VBA projects (`Macros`, `_VBA_PROJECT_CUR`, `VBA` storages; PowerPoint's VBA info record),
//!   Excel 4 macro sheets (BOUNDSHEET records of macro type in the `Workbook` stream), embedded
//!   object storages, Equation Editor objects (`Equation Native`) and OLE1 packages
//!   (`\x01Ole10Native`) are each named in the report (`ole2.*` ids);
//! - encryption is `office.encrypted`, as for encrypted OOXML (an OLE2 file holding
//!   `EncryptionInfo`/`EncryptedPackage`): Word's FIB `fEncrypted` bit, a FILEPASS record in the
//!   workbook globals (also Excel's default "VelvetSweatshop" password, which LibreOffice
//!   opens), PowerPoint's `EncryptedSummary` stream or CryptSession10Container record.
//!
//! After conversion, the sheets that were Excel 4 macro sheets in the original are removed from
//! the workbook (LibreOffice turns them into ordinary sheets full of `#NAME?` formulas), and
//! the OOXML sanitizer drops auto-run defined names (`Excel_BuiltIn_Auto_Open`, ...).

use std::io::{Cursor, Read};
use std::path::Path;

use cfb::CompoundFile;
use quick_xml::events::{BytesStart, Event};

use crate::error::SanitizeError;
use crate::formats::office::xml::{self, Guard};
use crate::formats::office::{Package, PackageWriter};
use crate::formats::ooxml;
use crate::limits::{Budget, read_capped};
use crate::pipeline::{Context, FormatSanitizer, Rebuilt};
use crate::report::{Action, Kind};
use crate::threats;

/// Sanitizes legacy Office compound files by conversion.
#[derive(Debug, Clone, Copy)]
pub struct Ole2Sanitizer;

/// Which Office application wrote a compound file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Word,
    Excel,
    PowerPoint,
}

impl App {
    /// (input extension, OOXML extension).
    fn exts(self) -> (&'static str, &'static str) {
        match self {
            App::Word => ("doc", "docx"),
            App::Excel => ("xls", "xlsx"),
            App::PowerPoint => ("ppt", "pptx"),
        }
    }
}

/// What a compound file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Inspection {
    app: Option<App>,
    vba: bool,
    encrypted: bool,
    /// Names of Excel 4 macro sheets.
    macro_sheets: Vec<String>,
    /// Paths of embedded object storages.
    embedded: Vec<String>,
    equation: bool,
    ole10_native: bool,
}

type Cfb<'a> = CompoundFile<Cursor<&'a [u8]>>;

fn malformed(e: std::io::Error) -> SanitizeError {
    SanitizeError::Malformed(format!("OLE2 compound file: {e}"))
}

/// Reads a stream whole, charged to the budget.
fn stream(cf: &mut Cfb<'_>, path: &Path, budget: &mut Budget) -> Result<Vec<u8>, SanitizeError> {
    let s = cf.open_stream(path).map_err(malformed)?;
    read_capped(s, budget)
}

/// Reads the first `n` bytes of a stream (or fewer, if it is shorter).
fn stream_head(cf: &mut Cfb<'_>, path: &Path, n: u64) -> Result<Vec<u8>, SanitizeError> {
    let s = cf.open_stream(path).map_err(malformed)?;
    let mut out = Vec::new();
    s.take(n).read_to_end(&mut out).map_err(malformed)?;
    Ok(out)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let x = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*x.first()?, *x.get(1)?]))
}

/// The BIFF records of a workbook's globals substream (up to its EOF record): FILEPASS means
/// encrypted; BOUNDSHEET records of type 1 are Excel 4 macro sheets, type 6 VBA modules.
fn inspect_workbook(wb: &[u8], found: &mut Inspection) {
    let mut at = 0usize;
    let mut biff8 = false;
    while let (Some(typ), Some(len)) = (u16_at(wb, at), u16_at(wb, at.saturating_add(2))) {
        let start = at.saturating_add(4);
        let end = start.saturating_add(usize::from(len));
        let data = wb.get(start..end.min(wb.len())).unwrap_or_default();
        match typ {
            0x0809 => biff8 = u16_at(data, 0) == Some(0x0600),
            0x002F => found.encrypted = true,
            0x0085 => match data.get(5) {
                Some(1) => {
                    let cch = usize::from(data.get(6).copied().unwrap_or(0));
                    let name = if biff8 {
                        let high = data.get(7).is_some_and(|f| f & 1 == 1);
                        let chars = data.get(8..).unwrap_or_default();
                        if high {
                            let units: Vec<u16> = chars
                                .chunks_exact(2)
                                .take(cch)
                                .map(|c| match c {
                                    [a, b] => u16::from_le_bytes([*a, *b]),
                                    _ => 0,
                                })
                                .collect();
                            String::from_utf16_lossy(&units)
                        } else {
                            chars.iter().take(cch).map(|&c| char::from(c)).collect()
                        }
                    } else {
                        let chars = data.get(7..).unwrap_or_default();
                        chars.iter().take(cch).map(|&c| char::from(c)).collect()
                    };
                    found.macro_sheets.push(name);
                }
                Some(6) => found.vba = true,
                _ => {}
            },
            0x000A => break,
            _ => {}
        }
        at = end;
    }
}

fn utf16_entry(name: &str) -> Vec<u8> {
    let mut v: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&[0, 0]);
    v
}

/// For a compound file whose directory the `cfb` crate refuses (LibreOffice may still read it,
/// and converting regenerates the document anyway): the directory entry names anywhere in the
/// bytes. The application is the one whose stream name comes first (the main stream is created
/// before any embedded storage); macros and encryption are judged by name alone.
fn inspect_names(b: &[u8]) -> Inspection {
    let at = |n: &str| memchr::memmem::find(b, &utf16_entry(n));
    let has = |n: &str| at(n).is_some();
    let app = [
        ("WordDocument", App::Word),
        ("Workbook", App::Excel),
        ("Book", App::Excel),
        ("PowerPoint Document", App::PowerPoint),
    ]
    .iter()
    .filter_map(|(n, app)| at(n).map(|pos| (pos, *app)))
    .min_by_key(|(pos, _)| *pos)
    .map(|(_, app)| app);
    Inspection {
        app,
        vba: ["_VBA_PROJECT_CUR", "Macros", "VBA", "_VBA_PROJECT"]
            .iter()
            .any(|n| has(n)),
        encrypted: has("EncryptedPackage") || has("EncryptionInfo") || has("EncryptedSummary"),
        equation: has("Equation Native"),
        ole10_native: has("\u{1}Ole10Native"),
        ..Inspection::default()
    }
}

/// Reads the compound file's directory and the few stream headers that matter.
fn inspect(b: &[u8], budget: &mut Budget) -> Result<Inspection, SanitizeError> {
    let Ok(mut cf) = CompoundFile::open(Cursor::new(b)) else {
        return Ok(inspect_names(b));
    };
    let mut found = Inspection::default();
    let root: Vec<(String, bool)> = cf
        .read_root_storage()
        .map(|e| (e.name().to_owned(), e.is_stream()))
        .collect();
    let has_stream = |n: &str| root.iter().any(|(name, st)| *st && name == n);
    let has = |n: &str| root.iter().any(|(name, _)| name == n);
    found.app = if has_stream("WordDocument") {
        Some(App::Word)
    } else if has_stream("Workbook") || has_stream("Book") {
        Some(App::Excel)
    } else if has_stream("PowerPoint Document") {
        Some(App::PowerPoint)
    } else {
        None
    };
    found.encrypted = has("EncryptedPackage") || has("EncryptionInfo") || has("EncryptedSummary");
    found.vba = has("Macros") || has("_VBA_PROJECT_CUR") || has("VBA");
    let entries: Vec<(String, String, bool, usize)> = cf
        .walk()
        .map(|e| {
            (
                e.path().to_string_lossy().into_owned(),
                e.name().to_owned(),
                e.is_storage(),
                e.path().components().count(),
            )
        })
        .collect();
    for (path, name, storage, depth) in &entries {
        if *storage
            && (name.starts_with("MBD")
                || (path.starts_with("/ObjectPool/") && *depth == 3)
                || (name.starts_with('_')
                    && *depth == 2
                    && name.chars().skip(1).all(|c| c.is_ascii_digit())
                    && name.len() > 1))
        {
            found.embedded.push(path.clone());
        }
        if name == "Equation Native" {
            found.equation = true;
        }
        if name == "\u{1}Ole10Native" {
            found.ole10_native = true;
        }
    }
    match found.app {
        Some(App::Word) => {
            let fib = stream_head(&mut cf, Path::new("/WordDocument"), 32)?;
            // FibBase flags at offset 0x0A: fEncrypted (bit 8) or fObfuscated (bit 15).
            if u16_at(&fib, 0x0A).is_some_and(|f| f & 0x8100 != 0) {
                found.encrypted = true;
            }
        }
        Some(App::Excel) => {
            let path = if has_stream("Workbook") {
                "/Workbook"
            } else {
                "/Book"
            };
            let wb = stream(&mut cf, Path::new(path), budget)?;
            inspect_workbook(&wb, &mut found);
        }
        Some(App::PowerPoint) => {
            let ppt = stream(&mut cf, Path::new("/PowerPoint Document"), budget)?;
            let has_record = |ty: u16| {
                let [lo, hi] = ty.to_le_bytes();
                let needle = [0x0F, 0x00, lo, hi];
                memchr::memmem::find(&ppt, &needle).is_some()
            };
            // CryptSession10Container, VBAInfoContainer, ExOleEmbedContainer.
            if has_record(0x2F14) {
                found.encrypted = true;
            }
            if has_record(0x03FF) {
                found.vba = true;
            }
            if has_record(0x0FCC) {
                found.embedded.push("PowerPoint Document/ExOleEmbed".into());
            }
        }
        None => {}
    }
    Ok(found)
}

impl Inspection {
    /// What the original holds that never reaches the output, as (what, threat, reason).
    fn removals(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        if self.vba {
            out.push((
                "VBA".to_owned(),
                threats::OLE2_VBA_MACRO,
                "VBA macro project removed".to_owned(),
            ));
        }
        for s in &self.macro_sheets {
            out.push((
                s.clone(),
                threats::OLE2_XLM_MACRO,
                format!("Excel 4 macro sheet {s:?} removed"),
            ));
        }
        for e in &self.embedded {
            out.push((
                e.trim_start_matches('/').to_owned(),
                threats::OLE2_EMBEDDED_OBJECT,
                "embedded object removed".to_owned(),
            ));
        }
        if self.equation {
            out.push((
                "Equation Native".to_owned(),
                threats::OLE2_EQUATION_EDITOR,
                "Equation Editor object removed".to_owned(),
            ));
        }
        if self.ole10_native {
            out.push((
                "Ole10Native".to_owned(),
                threats::OLE2_OLE10_NATIVE,
                "OLE1 packaged object removed".to_owned(),
            ));
        }
        out
    }
}

impl FormatSanitizer for Ole2Sanitizer {
    fn name(&self) -> &'static str {
        "ole2"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let found = inspect(input, cx.budget())?;
        // The refusal names the macro when there is one, so the report shows it either way.
        let refuse = |reason: String| {
            if found.vba || !found.macro_sheets.is_empty() {
                SanitizeError::Forbidden {
                    threat: if found.vba {
                        threats::OLE2_VBA_MACRO
                    } else {
                        threats::OLE2_XLM_MACRO
                    },
                    reason: format!("{reason} (the document contains macros)"),
                }
            } else {
                SanitizeError::Unsupported(reason)
            }
        };
        if found.encrypted {
            let what = match found.app {
                Some(app) => format!(".{} document", app.exts().0),
                None => "Office document".to_owned(),
            };
            return Err(SanitizeError::encrypted(
                threats::OFFICE_ENCRYPTED,
                format!("password-protected {what}: it cannot be inspected"),
            ));
        }
        let Some(app) = found.app else {
            return Err(refuse(
                "OLE2 compound file that is not a Word, Excel or PowerPoint document".into(),
            ));
        };
        let (from, to) = app.exts();
        if !cx.policy().office.convert_legacy {
            return Err(refuse(format!(
                "legacy .{from} documents are removed: conversion is disabled by policy"
            )));
        }
        let Some(converter) = cx.converter() else {
            return Err(refuse(format!(
                "legacy .{from} documents need LibreOffice to be converted, and it is not available"
            )));
        };
        let removals = found.removals();
        let threats_found: Vec<&'static str> = removals.iter().map(|(_, t, _)| *t).collect();
        if cx.policy().office.rasterize {
            crate::formats::office::record_removals(cx, Kind::Ole2, &removals);
            return crate::formats::office::rasterize(input, from, threats_found, cx);
        }
        let deadline = cx.budget().deadline();
        let converted = converter.convert(input, from, to, deadline).map_err(|e| {
            refuse(format!(
                "LibreOffice could not convert the .{from} document: {e}"
            ))
        })?;
        cx.budget().charge_decoded(converted.len() as u64)?;
        let converted = if found.macro_sheets.is_empty() {
            converted
        } else {
            drop_sheets(&converted, &found.macro_sheets, cx)?
        };
        crate::formats::office::record_removals(cx, Kind::Ole2, &removals);
        let mut rebuilt = ooxml::rebuild(&converted, cx)?;
        rebuilt.action = Action::Converted;
        let reason = if removals.is_empty() {
            format!(
                "legacy .{from} converted to .{to} by LibreOffice, then {}",
                rebuilt.reason
            )
        } else {
            format!(
                "legacy .{from} converted to .{to} by LibreOffice ({} item(s) of the original \
                 not carried over), then {}",
                removals.len(),
                rebuilt.reason
            )
        };
        Ok(rebuilt
            .with_extension(to)
            .with_threats(threats_found)
            .with_reason(reason)
            .with_detail(serde_json::json!({"converted_to": to})))
    }
}

/// Relationship type that the OOXML rebuild removes as an Excel 4 macro sheet.
const MACROSHEET_REL: &str = "http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet";

/// Marks the sheets named `names` in a converted workbook as macro sheets, so that the OOXML
/// rebuild removes them (their `<sheet>` entries go with their relationships), and drops the
/// defined names that point into them.
fn drop_sheets(
    xlsx: &[u8],
    names: &[String],
    cx: &mut Context<'_>,
) -> Result<Vec<u8>, SanitizeError> {
    let deadline = cx.budget().deadline();
    let pkg = Package::read(xlsx, cx.budget())?;
    let Some(wb) = pkg.get("xl/workbook.xml") else {
        return Ok(xlsx.to_vec());
    };
    // Pass 1: the relationship ids of the sheets to remove.
    let mut ids: Vec<String> = Vec::new();
    let mut removed_idx: Vec<usize> = Vec::new();
    let mut index = 0usize;
    let mut r = xml::reader(&wb.bytes);
    let mut g = Guard::new("xl/workbook.xml", deadline);
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) if xml::local(e.name().as_ref()) == b"sheet" => {
                let name = xml::attr(e, b"name")?.unwrap_or_default();
                if names.iter().any(|n| n.eq_ignore_ascii_case(&name))
                    && let Some((_, id)) = xml::attrs(e)?
                        .into_iter()
                        .find(|(k, _)| xml::local(k.as_bytes()) == b"id")
                {
                    ids.push(id);
                    removed_idx.push(index);
                }
                index = index.saturating_add(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let refs: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("{n}!"), format!("'{}'!", n.replace('\'', "''"))])
        .map(|s| s.to_lowercase())
        .collect();
    let new_wb = drop_names_into(&wb.bytes, &refs, &removed_idx, deadline)?;
    let mut w = PackageWriter::new();
    for m in pkg.members() {
        let lower = m.name.to_ascii_lowercase();
        if lower == "xl/_rels/workbook.xml.rels" {
            w.deflated(&m.name, &retype_rels(&m.bytes, &ids, deadline)?)?;
        } else if lower == "xl/workbook.xml" {
            w.deflated(&m.name, &new_wb)?;
        } else {
            w.deflated(&m.name, &m.bytes)?;
        }
    }
    w.finish()
}

/// Rewrites a relationships part: the relationships with the given ids become macro sheets.
fn retype_rels(
    bytes: &[u8],
    ids: &[String],
    deadline: std::time::Instant,
) -> Result<Vec<u8>, SanitizeError> {
    rewrite(bytes, "xl/_rels/workbook.xml.rels", deadline, |e| {
        let attrs = xml::attrs(e)?;
        if xml::local(e.name().as_ref()) != b"Relationship"
            || !attrs.iter().any(|(k, v)| k == "Id" && ids.contains(v))
        {
            return Ok(None);
        }
        let new: Vec<(String, String)> = attrs
            .into_iter()
            .map(|(k, v)| {
                if k == "Type" {
                    (k, MACROSHEET_REL.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        Ok(Some(xml::start_with(e.name().as_ref(), &new)?))
    })
}

/// Drops `definedName` elements whose formula refers to one of `refs` (`sheet!`, lower case)
/// or that are local to a removed sheet (by index), and renumbers the other local names.
fn drop_names_into(
    bytes: &[u8],
    refs: &[String],
    removed_idx: &[usize],
    deadline: std::time::Instant,
) -> Result<Vec<u8>, SanitizeError> {
    let mut r = xml::reader(bytes);
    let mut g = Guard::new("xl/workbook.xml", deadline);
    let mut w = quick_xml::Writer::new(Vec::with_capacity(bytes.len()));
    let werr = |e: std::io::Error| SanitizeError::Internal(format!("writing XML: {e}"));
    let mut pending: Option<Vec<Event<'static>>> = None;
    let mut text = String::new();
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        if let Event::Eof = ev {
            break;
        }
        if let Event::Start(e) = &ev
            && xml::local(e.name().as_ref()) == b"definedName"
        {
            let local = xml::attr(e, b"localSheetId")?.and_then(|v| v.parse::<usize>().ok());
            let start = match local {
                Some(i) if removed_idx.contains(&i) => {
                    r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                    g.check(&Event::End(quick_xml::events::BytesEnd::new("")))?;
                    continue;
                }
                Some(i) => {
                    let below = removed_idx.iter().filter(|r| **r < i).count();
                    let attrs: Vec<(String, String)> = xml::attrs(e)?
                        .into_iter()
                        .map(|(k, v)| {
                            if k == "localSheetId" {
                                (k, (i - below).to_string())
                            } else {
                                (k, v)
                            }
                        })
                        .collect();
                    Event::Start(xml::start_with(e.name().as_ref(), &attrs)?)
                }
                None => ev.clone().into_owned(),
            };
            pending = Some(vec![start]);
            text.clear();
            continue;
        }
        if let Some(buf) = pending.as_mut() {
            if matches!(ev, Event::Text(_) | Event::GeneralRef(_) | Event::CData(_)) {
                text.push_str(&xml::event_text(&ev)?);
            }
            let end =
                matches!(&ev, Event::End(e) if xml::local(e.name().as_ref()) == b"definedName");
            buf.push(ev.into_owned());
            if end {
                let lower = text.to_lowercase();
                // Auto-run names are left to the OOXML rebuild, which removes and reports them.
                let auto_run = matches!(events_name(&buf[..]), Some(n) if ooxml::auto_run_name(&n));
                let drop = !auto_run && refs.iter().any(|r| lower.contains(r.as_str()));
                if let Some(events) = pending.take()
                    && !drop
                {
                    for e in events {
                        w.write_event(e)
                            .map_err(|e| werr(std::io::Error::other(e)))?;
                    }
                }
            }
            continue;
        }
        w.write_event(ev.into_owned())
            .map_err(|e| werr(std::io::Error::other(e)))?;
    }
    Ok(w.into_inner())
}

/// The `name` attribute of the buffered `definedName` start tag.
fn events_name(events: &[Event<'static>]) -> Option<String> {
    match events.first() {
        Some(Event::Start(e)) => xml::attr(e, b"name").ok().flatten(),
        _ => None,
    }
}

/// Re-serialises an XML part, replacing the start tags `f` returns a replacement for.
fn rewrite(
    bytes: &[u8],
    part: &str,
    deadline: std::time::Instant,
    mut f: impl FnMut(&BytesStart<'_>) -> Result<Option<BytesStart<'static>>, SanitizeError>,
) -> Result<Vec<u8>, SanitizeError> {
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(part, deadline);
    let mut w = quick_xml::Writer::new(Vec::with_capacity(bytes.len()));
    let werr = |e: std::io::Error| SanitizeError::Internal(format!("writing XML: {e}"));
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        let out = match ev {
            Event::Eof => break,
            Event::Start(ref e) => match f(e)? {
                Some(n) => Event::Start(n),
                None => ev.into_owned(),
            },
            Event::Empty(ref e) => match f(e)? {
                Some(n) => Event::Empty(n),
                None => ev.into_owned(),
            },
            other => other.into_owned(),
        };
        w.write_event(out)
            .map_err(|e| werr(std::io::Error::other(e)))?;
    }
    Ok(w.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Converter, Services};
    use crate::policy::Policy;
    use crate::{Verdict, sanitize_file, sanitize_file_with};
    use std::io::Write;

    /// A real compound file: `path` ending in `/` is a storage, anything else a stream.
    fn ole(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut cf = CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for (path, bytes) in entries {
            if let Some(storage) = path.strip_suffix('/') {
                cf.create_storage_all(storage).unwrap();
            } else {
                if let Some(parent) = Path::new(path).parent()
                    && parent != Path::new("/")
                {
                    cf.create_storage_all(parent).unwrap();
                }
                cf.create_stream(path).unwrap().write_all(bytes).unwrap();
            }
        }
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    }

    fn record(typ: u16, data: &[u8]) -> Vec<u8> {
        let mut r = typ.to_le_bytes().to_vec();
        r.extend((data.len() as u16).to_le_bytes());
        r.extend(data);
        r
    }

    /// A BIFF8 workbook globals substream: BOF, extra records, BOUNDSHEETs, EOF.
    fn workbook(extra: &[Vec<u8>], sheets: &[(&str, u8)]) -> Vec<u8> {
        let mut b = record(
            0x0809,
            &[0x00, 0x06, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        for r in extra {
            b.extend(r);
        }
        for (name, dt) in sheets {
            let mut d = vec![0, 0, 0, 0, 0, *dt, name.len() as u8, 0];
            d.extend(name.as_bytes());
            b.extend(record(0x0085, &d));
        }
        b.extend(record(0x000A, &[]));
        b
    }

    fn word_fib(flags: u16) -> Vec<u8> {
        let mut fib = vec![0xEC, 0xA5, 0xC1, 0x00];
        fib.resize(0x0A, 0);
        fib.extend(flags.to_le_bytes());
        fib.resize(64, 0);
        fib
    }

    fn inspected(b: &[u8]) -> Inspection {
        inspect(b, &mut Budget::new(&crate::limits::Limits::default())).unwrap()
    }

    /// Stands in for LibreOffice: returns a fixed package, or fails.
    struct Fake(Option<Vec<u8>>, &'static str);

    impl Converter for Fake {
        fn convert(
            &self,
            _: &[u8],
            from: &str,
            to: &str,
            _: std::time::Instant,
        ) -> Result<Vec<u8>, String> {
            assert_eq!(from, self.1);
            assert!(to.starts_with(&from[..2]) || to == "pdf", "{from} -> {to}");
            self.0.clone().ok_or_else(|| "soffice exited 1".to_owned())
        }
    }

    fn docx() -> Vec<u8> {
        let mut w = PackageWriter::new();
        w.deflated(
            "[Content_Types].xml",
            br#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
        )
        .unwrap();
        w.deflated("_rels/.rels", br#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#).unwrap();
        w.deflated(
            "word/document.xml",
            "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>旧文書</w:t></w:r></w:p></w:body></w:document>".as_bytes(),
        )
        .unwrap();
        w.finish().unwrap()
    }

    /// What LibreOffice makes of a workbook with an Excel 4 macro sheet: an ordinary sheet
    /// `Macro1` and an auto-open name pointing into it.
    fn converted_xlsx() -> Vec<u8> {
        const S: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
        const R: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
        let sheet = |f: &str| {
            format!(
                r#"<worksheet xmlns="{S}"><sheetData><row r="1"><c r="A1"><f>{f}</f><v>0</v></c></row></sheetData></worksheet>"#
            )
        };
        let mut w = PackageWriter::new();
        w.deflated("[Content_Types].xml", br#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/worksheets/sheet2.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#).unwrap();
        w.deflated("_rels/.rels", format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{R}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#).as_bytes()).unwrap();
        w.deflated("xl/workbook.xml", format!(r#"<workbook xmlns="{S}" xmlns:r="{R}"><sheets><sheet name="Macro1" sheetId="1" r:id="rId1"/><sheet name="Data" sheetId="2" r:id="rId2"/></sheets><definedNames><definedName name="Excel_BuiltIn_Auto_Open">Macro1!$A$1</definedName><definedName name="Other">Macro1!$B$1</definedName><definedName name="_xlnm.Print_Area" localSheetId="1">Data!$A$1:$B$2</definedName></definedNames></workbook>"#).as_bytes()).unwrap();
        w.deflated("xl/_rels/workbook.xml.rels", format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{R}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{R}/worksheet" Target="worksheets/sheet2.xml"/></Relationships>"#).as_bytes()).unwrap();
        w.deflated(
            "xl/worksheets/sheet1.xml",
            sheet("_xlfn.EXEC(&quot;calc.exe&quot;)").as_bytes(),
        )
        .unwrap();
        w.deflated("xl/worksheets/sheet2.xml", sheet("SUM(1,2)").as_bytes())
            .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn type_comes_from_the_root_storage_only() {
        // A workbook holding an embedded Word document (`MBD…/WordDocument`) is a workbook.
        let xls = ole(&[
            ("/Workbook", &workbook(&[], &[("Sheet1", 0)])),
            ("/MBD0001A2B3/WordDocument", &word_fib(0)),
            ("/MBD0001A2B3/\u{1}Ole10Native", b"x"),
            // An embedded Outlook message does not make the workbook a .msg either.
            ("/MBD0004/__substg1.0_0037001F", b"s\0"),
        ]);
        let i = inspected(&xls);
        assert_eq!(i.app, Some(App::Excel));
        let mut embedded = i.embedded.clone();
        embedded.sort();
        assert_eq!(embedded, ["/MBD0001A2B3", "/MBD0004"]);
        assert!(i.ole10_native && !i.vba && !i.encrypted);
        assert_eq!(crate::sniff::sniff(&xls), crate::Kind::Ole2);

        let doc = ole(&[
            ("/WordDocument", &word_fib(0)),
            ("/Macros/VBA/dir", b"x"),
            ("/ObjectPool/_1234/Equation Native", b"eq"),
        ]);
        let i = inspected(&doc);
        assert_eq!(i.app, Some(App::Word));
        assert!(i.vba && i.equation);
        assert_eq!(i.embedded, vec!["/ObjectPool/_1234".to_owned()]);
    }

    #[test]
    fn an_unreadable_directory_falls_back_to_entry_names() {
        // Not a valid compound file (cfb refuses it), but the names are there: the first
        // application stream decides, macros and encryption are still seen.
        let mut b = bytes::header();
        for n in ["Workbook", "MBD0001", "WordDocument", "_VBA_PROJECT_CUR"] {
            b.extend(utf16_entry(n));
            b.resize(b.len() + 64, 0);
        }
        let i = inspected(&b);
        assert_eq!(i.app, Some(App::Excel));
        assert!(i.vba && !i.encrypted);
        b.extend(utf16_entry("EncryptionInfo"));
        assert!(inspected(&b).encrypted);
    }

    mod bytes {
        /// A compound-file signature and a header the `cfb` crate refuses (bad sector shift).
        pub fn header() -> Vec<u8> {
            let mut b = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
            b.resize(30, 0);
            b.extend([0x0F, 0x00]);
            b.resize(512, 0);
            b
        }
    }

    #[test]
    fn macro_sheets_and_encryption_are_read_from_the_streams() {
        let i = inspected(&ole(&[(
            "/Workbook",
            &workbook(&[], &[("Sheet1", 0), ("Macro1", 1), ("Module1", 6)]),
        )]));
        assert_eq!(i.macro_sheets, vec!["Macro1".to_owned()]);
        assert!(i.vba && !i.encrypted);
        let filepass = record(0x002F, &[0, 0, 1, 0, 1, 0]);
        assert!(inspected(&ole(&[("/Workbook", &workbook(&[filepass], &[]))])).encrypted);
        assert!(inspected(&ole(&[("/WordDocument", &word_fib(0x0100))])).encrypted);
        assert!(!inspected(&ole(&[("/WordDocument", &word_fib(0x0200))])).encrypted);
        let ppt = ole(&[
            (
                "/PowerPoint Document",
                &[0x0F, 0x00, 0x14, 0x2F, 0, 0, 0, 0],
            ),
            ("/EncryptedSummary", b"x"),
        ]);
        assert!(inspected(&ppt).encrypted);
        let ppt_vba = ole(&[(
            "/PowerPoint Document",
            &[1, 2, 0x0F, 0x00, 0xFF, 0x03, 0, 0],
        )]);
        let i = inspected(&ppt_vba);
        assert_eq!(i.app, Some(App::PowerPoint));
        assert!(i.vba && !i.encrypted);
    }

    #[test]
    fn encrypted_legacy_and_ooxml_are_blocked_alike() {
        for (b, name) in [
            (
                ole(&[("/Workbook", &workbook(&[record(0x002F, &[0; 6])], &[]))]),
                "a.xls",
            ),
            (ole(&[("/WordDocument", &word_fib(0x0100))]), "a.doc"),
            (
                ole(&[("/EncryptionInfo", b"x"), ("/EncryptedPackage", b"y")]),
                "a.xlsx",
            ),
            (
                ole(&[("/EncryptionInfo", b"x"), ("/EncryptedPackage", b"y")]),
                "a.xlsb",
            ),
        ] {
            let fake = Fake(Some(docx()), "doc");
            let services = Services {
                converter: Some(&fake),
                fonts: None,
                archive_password: None,
                ocr: None,
            };
            let out = sanitize_file_with(&b, Some(name), &Policy::default(), services);
            assert_eq!(out.report.verdict, Verdict::Blocked, "{name}");
            let threats = out.report.threats();
            assert!(
                threats.contains(&"office.encrypted"),
                "{name}: {:?}",
                out.report
            );
            assert!(!threats.contains(&"content.encrypted"), "{name}");
            assert!(
                out.report.items[0]
                    .reason
                    .starts_with("encrypted: password-protected")
            );
        }
    }

    #[test]
    fn converted_when_a_converter_is_lent_and_removals_are_named() {
        let input = ole(&[
            ("/WordDocument", &word_fib(0)),
            ("/Macros/VBA/dir", b"x"),
            ("/ObjectPool/_99/Equation Native", b"eq"),
        ]);
        let fake = Fake(Some(docx()), "doc");
        let services = Services {
            converter: Some(&fake),
            fonts: None,
            archive_password: None,
            ocr: None,
        };
        let out = sanitize_file_with(&input, Some("旧.doc"), &Policy::default(), services);
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        let item = &out.report.items[0];
        assert_eq!(item.action, Action::Converted);
        assert_eq!(
            item.detail,
            Some(serde_json::json!({"converted_to": "docx"}))
        );
        let threats = out.report.threats();
        for t in [
            "ole2.vba_macro",
            "ole2.embedded_object",
            "ole2.equation_editor",
        ] {
            assert!(threats.contains(&t), "{t}: {:?}", out.report);
        }
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.path == "旧.doc/ObjectPool/_99" && i.action == Action::Removed),
            "{:?}",
            out.report.items
        );
        let file = out.output.unwrap();
        assert_eq!(file.name, "旧.docx");
        assert_eq!(file.kind, crate::Kind::Ooxml);
    }

    #[test]
    fn macro_sheets_and_auto_open_names_leave_the_converted_workbook() {
        let input = ole(&[("/Workbook", &workbook(&[], &[("Macro1", 1), ("Data", 0)]))]);
        let fake = Fake(Some(converted_xlsx()), "xls");
        let services = Services {
            converter: Some(&fake),
            fonts: None,
            archive_password: None,
            ocr: None,
        };
        let out = sanitize_file_with(&input, Some("帳票.xls"), &Policy::default(), services);
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        let threats = out.report.threats();
        for t in ["ole2.xlm_macro", "ooxml.xlm_macro", "ooxml.auto_run_name"] {
            assert!(threats.contains(&t), "{t}: {:?}", out.report);
        }
        let file = out.output.unwrap();
        let pkg = Package::read(
            file.bytes.as_slice(),
            &mut Budget::new(&crate::limits::Limits::default()),
        )
        .unwrap();
        assert!(pkg.get("xl/worksheets/sheet1.xml").is_none());
        let wb = String::from_utf8(pkg.get("xl/workbook.xml").unwrap().bytes.clone()).unwrap();
        assert!(!wb.contains("Macro1") && !wb.contains("Auto_Open"), "{wb}");
        assert!(wb.contains(r#"localSheetId="0""#), "{wb}");
    }

    #[test]
    fn removed_without_converter_or_when_conversion_fails() {
        let plain = ole(&[("/WordDocument", &word_fib(0))]);
        let out = sanitize_file(&plain, Some("a.doc"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.threats().contains(&"format.unsupported"),
            "{:?}",
            out.report
        );

        let macro_doc = ole(&[("/WordDocument", &word_fib(0)), ("/Macros/VBA/dir", b"x")]);
        let out = sanitize_file(&macro_doc, Some("a.doc"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.threats().contains(&"ole2.vba_macro"),
            "{:?}",
            out.report
        );

        let failing = Fake(None, "doc");
        let services = Services {
            converter: Some(&failing),
            fonts: None,
            archive_password: None,
            ocr: None,
        };
        let out = sanitize_file_with(&plain, Some("a.doc"), &Policy::default(), services);
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.items[0].reason.contains("soffice exited 1"),
            "{:?}",
            out.report
        );

        let policy = Policy::from_toml("[office]\nconvert_legacy = false\n").unwrap();
        let ok = Fake(Some(docx()), "doc");
        let services = Services {
            converter: Some(&ok),
            fonts: None,
            archive_password: None,
            ocr: None,
        };
        let out = sanitize_file_with(&plain, Some("a.doc"), &policy, services);
        assert_eq!(out.report.verdict, Verdict::Blocked);
        assert!(
            out.report.items[0].reason.contains("disabled"),
            "{:?}",
            out.report
        );
    }
}
