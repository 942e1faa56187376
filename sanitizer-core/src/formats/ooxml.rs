//! Office Open XML (docx/xlsx/pptx and the macro-enabled docm/xlsm/pptm): the package is rebuilt
//! from an allow-list of relationship types, following relationships from the package root
//! (mat2's approach). Anything not reached through an allowed relationship is left behind.
//!
//! What is removed, each with its threat id: VBA projects (`ooxml.vba_macro`), ActiveX controls
//! (`ooxml.activex`), OLE objects and embedded packages, Equation Editor included
//! (`ooxml.ole_object`), customUI ribbons and their callbacks (`ooxml.custom_ui`), attached
//! templates (`ooxml.attached_template`), every external relationship except hyperlinks
//! (`ooxml.external_relationship`), external links, data connections, mail-merge sources and
//! include fields (`ooxml.external_link`), DDE fields and DDE formulas (`ooxml.dde`), parts of any
//! other type (`ooxml.unknown_part`). Hyperlink targets follow the link policy (defanged by
//! default). A macro-enabled main part gets the macro-free content type and the file its
//! macro-free extension (`ooxml.macro_enabled_type`).
//!
//! Images: every image part whose bytes sniff as a raster image goes through
//! [`Context::sanitize_child`] and is replaced by its re-encoded form (or removed); EMF/WMF/SVG
//! and anything else are removed. No image bytes are ever kept as they came. Every kept XML part is re-serialised by a bounded, DTD-free streaming filter.
//!
//! The written package is then checked again by [`recheck`], an independent pass over the output
//! bytes; any hit is [`SanitizeError::Recheck`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

use crate::error::SanitizeError;
use crate::formats::office::formula::{FormulaRisk, formula_risk};
use crate::formats::office::xml::{self, Guard};
use crate::formats::office::{Package, PackageWriter};
use crate::links::rewrite_url;
use crate::pipeline::{Context, FormatSanitizer, PartInput, PartOutcome, Rebuilt};
use crate::policy::LinkMode;
use crate::report::{Action, Kind};
use crate::sniff;
use crate::threats;

/// Sanitizes OOXML packages.
#[derive(Debug, Clone, Copy)]
pub struct OoxmlSanitizer;

impl FormatSanitizer for OoxmlSanitizer {
    fn name(&self) -> &'static str {
        "ooxml"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        // Office XML that arrived as one XML file (Flat OPC, Word/Excel 2003 XML).
        let flat = (!input.starts_with(b"PK"))
            .then(|| sniff::disguise(input).and_then(|d| d.office_xml))
            .flatten();
        let rebuilt = match flat {
            Some(dialect) => super::office_xml::sanitize(input, dialect, cx)?,
            None => rebuild(input, cx)?,
        };
        if rebuilt.kind != Kind::Ooxml {
            return Ok(rebuilt);
        }
        if cx.policy().office.rasterize {
            let ext = match rebuilt.mime.as_str() {
                m if m.contains("spreadsheetml") => "xlsx",
                m if m.contains("presentationml") => "pptx",
                _ => "docx",
            };
            let threats = rebuilt.threats.clone();
            return super::office::rasterize(&rebuilt.bytes, ext, threats, cx);
        }
        Ok(rebuilt)
    }
}

const REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const CT_NS: &str = "http://schemas.openxmlformats.org/package/2006/content-types";
const REL_TYPE_HYPERLINK: &str =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink";

/// The main-part content types we accept: (input type, output type, output extension,
/// macro-enabled).
const MAIN_TYPES: &[(&str, &str, &str, bool)] = &[
    (WORD_MAIN, WORD_MAIN, "docx", false),
    (
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        WORD_MAIN,
        "docx",
        true,
    ),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        WORD_MAIN,
        "docx",
        false,
    ),
    (
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
        WORD_MAIN,
        "docx",
        true,
    ),
    (SHEET_MAIN, SHEET_MAIN, "xlsx", false),
    (
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        SHEET_MAIN,
        "xlsx",
        true,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
        SHEET_MAIN,
        "xlsx",
        false,
    ),
    (
        "application/vnd.ms-excel.template.macroEnabled.main+xml",
        SHEET_MAIN,
        "xlsx",
        true,
    ),
    (
        "application/vnd.ms-excel.addin.macroEnabled.main+xml",
        SHEET_MAIN,
        "xlsx",
        true,
    ),
    (SLIDES_MAIN, SLIDES_MAIN, "pptx", false),
    (
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
        SLIDES_MAIN,
        "pptx",
        true,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
        SLIDES_MAIN,
        "pptx",
        false,
    ),
    (
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
        SLIDES_MAIN,
        "pptx",
        true,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
        SLIDES_MAIN,
        "pptx",
        false,
    ),
    (
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
        SLIDES_MAIN,
        "pptx",
        true,
    ),
    (
        "application/vnd.ms-powerpoint.addin.macroEnabled.main+xml",
        SLIDES_MAIN,
        "pptx",
        true,
    ),
];
const WORD_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
const SHEET_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml";
const SLIDES_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml";

/// Relationship types (the part after `/relationships/`) whose targets are kept.
const ALLOWED_TYPES: &[&str] = &[
    "officeDocument",
    "metadata/core-properties",
    "extended-properties",
    "custom-properties",
    "styles",
    "stylesWithEffects",
    "numbering",
    "settings",
    "webSettings",
    "fontTable",
    "theme",
    "themeOverride",
    "footnotes",
    "endnotes",
    "comments",
    "commentsExtended",
    "commentsIds",
    "commentsExtensible",
    "people",
    "person",
    "header",
    "footer",
    "image",
    "hdphoto",
    "glossaryDocument",
    "worksheet",
    "sharedStrings",
    "chartsheet",
    "drawing",
    "chart",
    "chartUserShapes",
    "chartStyle",
    "chartColorStyle",
    "table",
    "tableSingleCells",
    "pivotTable",
    "pivotCacheDefinition",
    "pivotCacheRecords",
    "volatileDependencies",
    "sheetMetadata",
    "vmlDrawing",
    "threadedComment",
    "slide",
    "slideLayout",
    "slideMaster",
    "notesSlide",
    "notesMaster",
    "handoutMaster",
    "presProps",
    "viewProps",
    "tableStyles",
    "tags",
    "commentAuthors",
    "diagramData",
    "diagramLayout",
    "diagramQuickStyle",
    "diagramColors",
    "diagramDrawing",
];

/// Relationship types that are dropped without a threat: not needed to read the document.
const QUIET_DROP_TYPES: &[&str] = &[
    // A cache Excel rebuilds; it would name cells whose dropped formulas are gone.
    "calcChain",
    "printerSettings",
    "metadata/thumbnail",
    "customXml",
    "customXmlProps",
    "digital-signature/origin",
    "digital-signature/signature",
];

/// The threat a denied relationship type carries.
fn denied_threat(short: &str) -> &'static str {
    match short {
        "vbaProject"
        | "wordVbaData"
        | "vbaProjectSignature"
        | "vbaProjectSignatureAgile"
        | "vbaProjectSignatureV3"
        | "keyMapCustomizations" => threats::OOXML_VBA_MACRO,
        "xlMacrosheet" | "xlIntlMacrosheet" | "macrosheet" | "dialogsheet" => {
            threats::OOXML_XLM_MACRO
        }
        "control" | "activeXControl" | "activeXControlBinary" => threats::OOXML_ACTIVEX,
        "oleObject" | "package" | "oleObjectEmbedding" => threats::OOXML_OLE_OBJECT,
        "ui/extensibility" | "ui/customUI" => threats::OOXML_CUSTOM_UI,
        "attachedTemplate" => threats::OOXML_ATTACHED_TEMPLATE,
        "externalLink"
        | "externalLinkPath"
        | "externalData"
        | "connections"
        | "queryTable"
        | "subDocument"
        | "frame"
        | "mailMergeSource"
        | "mailMergeHeaderSource"
        | "recipientData"
        | "aFChunk"
        | "dataSource" => threats::OOXML_EXTERNAL_LINK,
        _ => threats::OOXML_UNKNOWN_PART,
    }
}

/// Elements removed wherever they appear, with their subtree.
fn always_dropped(local: &[u8]) -> Option<&'static str> {
    Some(match local {
        b"attachedTemplate" => threats::OOXML_ATTACHED_TEMPLATE,
        b"mailMerge" | b"externalReferences" => threats::OOXML_EXTERNAL_LINK,
        b"oleObjects" => threats::OOXML_OLE_OBJECT,
        b"controls" => threats::OOXML_ACTIVEX,
        _ => return None,
    })
}

/// The part of a relationship type after `/relationships/`, when the type is in one of the
/// namespaces Office uses.
fn short_type(ty: &str) -> Option<&str> {
    const HOSTS: [&str; 3] = [
        "http://schemas.openxmlformats.org/",
        "http://purl.oclc.org/ooxml/",
        "http://schemas.microsoft.com/office/",
    ];
    if !HOSTS.iter().any(|h| ty.starts_with(h)) {
        return None;
    }
    ty.find("/relationships/")
        .and_then(|i| ty.get(i.saturating_add("/relationships/".len())..))
}

/// One relationship as read from a `.rels` part.
#[derive(Debug, Clone)]
struct Rel {
    id: String,
    ty: String,
    target: String,
    external: bool,
}

/// `[Content_Types].xml`.
#[derive(Debug, Default)]
struct ContentTypes {
    defaults: HashMap<String, String>,
    overrides: HashMap<String, String>,
}

impl ContentTypes {
    fn parse(bytes: &[u8], deadline: Instant) -> Result<ContentTypes, SanitizeError> {
        let mut ct = ContentTypes::default();
        let mut r = xml::reader(bytes);
        let mut g = Guard::new("[Content_Types].xml", deadline);
        loop {
            let ev = r.read_event().map_err(|e| g.err(e))?;
            g.check(&ev)?;
            match &ev {
                Event::Start(e) | Event::Empty(e) => match xml::local(e.name().as_ref()) {
                    b"Default" => {
                        if let (Some(ext), Some(t)) =
                            (xml::attr(e, b"Extension")?, xml::attr(e, b"ContentType")?)
                        {
                            ct.defaults.insert(ext.to_ascii_lowercase(), t);
                        }
                    }
                    b"Override" => {
                        if let (Some(p), Some(t)) =
                            (xml::attr(e, b"PartName")?, xml::attr(e, b"ContentType")?)
                        {
                            let p = percent_decode(p.trim_start_matches('/'));
                            ct.overrides.insert(p.to_ascii_lowercase(), t);
                        }
                    }
                    _ => {}
                },
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(ct)
    }

    fn of(&self, part: &str) -> Option<&str> {
        let key = part.to_ascii_lowercase();
        if let Some(t) = self.overrides.get(&key) {
            return Some(t);
        }
        let ext = key.rsplit_once('.').map(|(_, e)| e)?;
        if key
            .rsplit_once('/')
            .map_or(key.as_str(), |(_, b)| b)
            .contains('.')
        {
            self.defaults.get(ext).map(String::as_str)
        } else {
            None
        }
    }
}

fn parse_rels(bytes: &[u8], name: &str, deadline: Instant) -> Result<Vec<Rel>, SanitizeError> {
    let mut out = Vec::new();
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e)
                if xml::local(e.name().as_ref()) == b"Relationship" =>
            {
                let (Some(id), Some(ty), Some(target)) = (
                    xml::attr(e, b"Id")?,
                    xml::attr(e, b"Type")?,
                    xml::attr(e, b"Target")?,
                ) else {
                    return Err(SanitizeError::Malformed(format!(
                        "{name}: relationship without Id, Type or Target"
                    )));
                };
                let mode = xml::attr(e, b"TargetMode")?.unwrap_or_default();
                let external = mode.eq_ignore_ascii_case("External") || looks_external(&target);
                out.push(Rel {
                    id,
                    ty,
                    target,
                    external,
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// A target that names something outside the package even without `TargetMode="External"`.
fn looks_external(target: &str) -> bool {
    let t = target.trim().to_ascii_lowercase();
    t.contains("://") || t.starts_with("\\\\") || t.starts_with("//") || {
        // `scheme:` (mailto:, file:, ms-word:...); a drive letter or a plain path has none.
        t.split_once(':').is_some_and(|(s, _)| {
            s.len() > 1
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
    }
}

/// `%20` → space in part names referenced from relationships.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(h) = b.get(i.saturating_add(1)..i.saturating_add(3))
            && let Ok(h) = std::str::from_utf8(h)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i = i.saturating_add(3);
            continue;
        }
        out.push(c);
        i = i.saturating_add(1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `.rels` part of `source` (`""` is the package root).
fn rels_name(source: &str) -> String {
    match source.rsplit_once('/') {
        Some((dir, base)) => format!("{dir}/_rels/{base}.rels"),
        None if source.is_empty() => "_rels/.rels".into(),
        None => format!("_rels/{source}.rels"),
    }
}

/// Resolves an internal target relative to `source`; `None` if it escapes the package.
fn resolve(source: &str, target: &str) -> Option<String> {
    let target = percent_decode(target.split('#').next().unwrap_or_default());
    let mut segs: Vec<&str> = Vec::new();
    if !target.starts_with('/')
        && let Some((dir, _)) = source.rsplit_once('/')
    {
        segs.extend(dir.split('/'));
    }
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => segs.push(s),
        }
    }
    if segs.is_empty() {
        return None;
    }
    Some(segs.join("/"))
}

/// What the package is, by its main part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Word,
    Sheet,
    Slides,
}

/// Findings collected while rebuilding, reported at the end.
#[derive(Debug, Default)]
struct Findings {
    threats: Vec<&'static str>,
    /// (part or relationship path, threat, reason) for the report.
    removals: Vec<(String, &'static str, String)>,
}

impl Findings {
    fn add(&mut self, what: String, threat: &'static str, reason: String) {
        if !self.threats.contains(&threat) {
            self.threats.push(threat);
        }
        self.removals.push((what, threat, reason));
    }
    fn threat(&mut self, t: &'static str) {
        if !self.threats.contains(&t) {
            self.threats.push(t);
        }
    }
}

/// A part that survives, with its output content type.
#[derive(Debug)]
struct KeptPart {
    name: String,
    content_type: String,
    /// Why it was kept: by relationship type (`image` parts are handled as images).
    image: bool,
}

/// Rebuilds an OOXML package. Used by the OOXML sanitizer and by the OLE2 converter path.
pub(crate) fn rebuild(input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
    let deadline = cx.budget().deadline();
    let pkg = Package::read(input, cx.budget())?;
    let mode = cx.policy().links.mode;
    let ct_bytes = pkg
        .get("[Content_Types].xml")
        .ok_or_else(|| SanitizeError::Malformed("no [Content_Types].xml".into()))?;
    let types = ContentTypes::parse(&ct_bytes.bytes, deadline)?;
    let mut found = Findings::default();

    // Walk the relationship graph from the root, breadth first.
    let mut kept: Vec<KeptPart> = Vec::new();
    let mut kept_names: HashSet<String> = HashSet::new();
    let mut out_rels: HashMap<String, Vec<Rel>> = HashMap::new();
    let mut dropped_ids: HashMap<String, HashSet<String>> = HashMap::new();
    let mut main: Option<(String, &'static str, &'static str, bool)> = None;
    let mut queue: VecDeque<String> = VecDeque::from([String::new()]);
    while let Some(source) = queue.pop_front() {
        cx.budget().check_deadline()?;
        let rname = rels_name(&source);
        let Some(rels_part) = pkg.get(&rname) else {
            continue;
        };
        let rels = parse_rels(&rels_part.bytes, &rname, deadline)?;
        let mut keep_rels = Vec::new();
        let mut dropped = HashSet::new();
        for rel in rels {
            let short = short_type(&rel.ty).unwrap_or("");
            if rel.external {
                if short == "hyperlink" {
                    let target = if already_defanged(&rel.target) {
                        rel.target.clone()
                    } else if !web_scheme(&rel.target) {
                        // file:, UNC paths, ms-* handlers, script: a click must not reach them.
                        found.add(
                            format!("{rname}#{}", rel.id),
                            threats::OOXML_EXTERNAL_RELATIONSHIP,
                            "hyperlink to a local file or protocol handler removed".into(),
                        );
                        "about:blank".to_owned()
                    } else {
                        match mode {
                            LinkMode::Keep => rel.target.clone(),
                            LinkMode::Defang => rewrite_url(&rel.target, LinkMode::Defang),
                            LinkMode::Remove => "about:blank".to_owned(),
                        }
                    };
                    if target != rel.target {
                        found.threat(threats::LINK_REWRITTEN);
                    }
                    keep_rels.push(Rel { target, ..rel });
                } else {
                    let specific = denied_threat(short);
                    found.threat(threats::OOXML_EXTERNAL_RELATIONSHIP);
                    let what = format!("{rname}#{}", rel.id);
                    let reason = format!(
                        "external relationship of type {} removed (target {})",
                        if short.is_empty() {
                            rel.ty.as_str()
                        } else {
                            short
                        },
                        rewrite_url(&rel.target, LinkMode::Defang)
                    );
                    let t = if specific == threats::OOXML_UNKNOWN_PART {
                        threats::OOXML_EXTERNAL_RELATIONSHIP
                    } else {
                        specific
                    };
                    found.add(what, t, reason);
                    dropped.insert(rel.id);
                }
                continue;
            }
            let target = resolve(&source, &rel.target);
            let member = target.as_deref().and_then(|t| pkg.get(t));
            let Some(member) = member else {
                // A dangling relationship: nothing to keep, nothing to report.
                dropped.insert(rel.id);
                continue;
            };
            let part = member.name.clone();
            if QUIET_DROP_TYPES.contains(&short) {
                dropped.insert(rel.id);
                continue;
            }
            if !ALLOWED_TYPES.contains(&short) {
                let t = denied_threat(short);
                let label = if short.is_empty() {
                    rel.ty.as_str()
                } else {
                    short
                };
                found.add(part.clone(), t, format!("{label} part removed"));
                dropped.insert(rel.id);
                continue;
            }
            let image = short == "image" || short == "hdphoto";
            let ct = types.of(&part).unwrap_or_default().to_owned();
            if short == "officeDocument" && source.is_empty() && ct.contains(".binary.") {
                return Err(SanitizeError::Unsupported(
                    "binary Excel workbook (.xlsb): not supported (no sanitizer rebuilds it)"
                        .into(),
                ));
            }
            if !image && !ct.ends_with("xml") {
                found.add(
                    part.clone(),
                    threats::OOXML_UNKNOWN_PART,
                    format!("{short} part with non-XML content type {ct:?} removed"),
                );
                dropped.insert(rel.id);
                continue;
            }
            let mut ct_out = ct.clone();
            if short == "officeDocument" && source.is_empty() {
                let Some((_, to, ext, macro_enabled)) =
                    MAIN_TYPES.iter().find(|(from, ..)| *from == ct)
                else {
                    return Err(SanitizeError::Unsupported(format!(
                        "OOXML main part of type {ct:?} (binary or unknown workbook format)"
                    )));
                };
                if main.is_some() {
                    return Err(SanitizeError::Malformed("two main document parts".into()));
                }
                ct_out = (*to).to_owned();
                main = Some((part.clone(), to, ext, *macro_enabled || ct != *to));
                if *macro_enabled {
                    found.add(
                        part.clone(),
                        threats::OOXML_MACRO_ENABLED_TYPE,
                        format!("macro-enabled document type changed to .{ext}"),
                    );
                }
            }
            if kept_names.insert(part.to_ascii_lowercase()) {
                kept.push(KeptPart {
                    name: part.clone(),
                    content_type: ct_out,
                    image,
                });
                if !image {
                    queue.push_back(part);
                }
            }
            keep_rels.push(rel);
        }
        out_rels.insert(source.clone(), keep_rels);
        dropped_ids.insert(source, dropped);
    }
    let Some((_, _, main_ext, type_changed)) = main else {
        return Err(SanitizeError::Malformed("no main document part".into()));
    };
    let flavor = match main_ext {
        "docx" => Flavor::Word,
        "xlsx" => Flavor::Sheet,
        _ => Flavor::Slides,
    };

    // Members that no allowed relationship reached, reported by what they look like.
    for m in pkg.members() {
        let lower = m.name.to_ascii_lowercase();
        if lower == "[content_types].xml" || lower.ends_with(".rels") || kept_names.contains(&lower)
        {
            continue;
        }
        if found
            .removals
            .iter()
            .any(|(w, ..)| w.eq_ignore_ascii_case(&m.name))
        {
            continue; // already reported with its relationship
        }
        if let Some(t) = name_threat(&lower) {
            found.add(m.name.clone(), t, "part removed".into());
        } else if !quiet_unreached(&lower) {
            found.add(
                m.name.clone(),
                threats::OOXML_UNKNOWN_PART,
                "part not reachable through an allowed relationship removed".into(),
            );
        }
    }

    // Images: re-encoded by the image sanitizer (never kept as they came).
    let mut out_bytes: HashMap<String, Vec<u8>> = HashMap::new();
    let mut removed_parts: HashSet<String> = HashSet::new();
    for part in &mut kept {
        cx.budget().check_deadline()?;
        let Some(member) = pkg.get(&part.name) else {
            continue;
        };
        if part.image {
            let sniffed = sniff::sniff(&member.bytes);
            if sniffed != Kind::Image {
                found.add(
                    part.name.clone(),
                    threats::OOXML_UNKNOWN_PART,
                    format!("image part of kind {sniffed} (EMF/WMF/SVG or other) removed"),
                );
                removed_parts.insert(part.name.to_ascii_lowercase());
                continue;
            }
            let outcome = cx.sanitize_child(
                &part.name,
                PartInput {
                    bytes: &member.bytes,
                    // The member's own file name: its folders are in the report path already.
                    name: Some(part.name.rsplit('/').next().unwrap_or(&part.name)),
                    declared_type: Some(&part.content_type),
                },
            );
            match outcome {
                PartOutcome::Kept(p) => {
                    part.content_type = p.mime.clone();
                    out_bytes.insert(part.name.clone(), p.bytes.into_vec());
                }
                PartOutcome::Removed(_) => {
                    removed_parts.insert(part.name.to_ascii_lowercase());
                }
            }
            continue;
        }
    }
    // Relationships to removed images go, and so do the elements that use them.
    if !removed_parts.is_empty() {
        kept.retain(|p| !removed_parts.contains(&p.name.to_ascii_lowercase()));
        for (source, rels) in &mut out_rels {
            rels.retain(|r| {
                let gone = !r.external
                    && resolve(source, &r.target)
                        .is_none_or(|t| removed_parts.contains(&t.to_ascii_lowercase()));
                if gone {
                    dropped_ids
                        .entry(source.clone())
                        .or_default()
                        .insert(r.id.clone());
                }
                !gone
            });
        }
    }
    for part in &kept {
        cx.budget().check_deadline()?;
        if part.image {
            continue;
        }
        let Some(member) = pkg.get(&part.name) else {
            continue;
        };
        let source_dropped = dropped_ids.get(&part.name).cloned().unwrap_or_default();
        let filtered = filter_part(
            &part.name,
            &member.bytes,
            &source_dropped,
            flavor,
            mode,
            deadline,
        )?;
        for (t, n, what) in filtered.counts {
            found.add(
                part.name.clone(),
                t,
                format!("{n} {what} removed or rewritten"),
            );
        }
        out_bytes.insert(part.name.clone(), filtered.bytes);
    }
    // Write the new package: [Content_Types].xml first, then the root relationships, then the
    // parts in their original order, each followed by its relationships.
    let mut w = PackageWriter::new();
    w.deflated("[Content_Types].xml", &content_types_xml(&kept))?;
    w.deflated(
        "_rels/.rels",
        &rels_xml(out_rels.get("").map_or(&[][..], Vec::as_slice)),
    )?;
    for part in &kept {
        let Some(bytes) = out_bytes.get(&part.name) else {
            continue;
        };
        w.deflated(&part.name, bytes)?;
        if let Some(rels) = out_rels.get(&part.name)
            && !rels.is_empty()
        {
            w.deflated(&rels_name(&part.name), &rels_xml(rels))?;
        }
    }
    let output = w.finish()?;
    recheck(&output, mode)?;

    crate::formats::office::record_removals(cx, Kind::Ooxml, &found.removals);
    let mime = match main_ext {
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    };
    let n = found.removals.len();
    let reason = if n == 0 {
        "package rebuilt from its allowed parts".to_owned()
    } else {
        format!("package rebuilt from its allowed parts; {n} item(s) removed or rewritten")
    };
    let mut rebuilt = Rebuilt::new(output, Action::Rebuilt, Kind::Ooxml, mime)
        .with_threats(found.threats)
        .with_reason(reason);
    if type_changed {
        rebuilt = rebuilt.with_extension(main_ext);
    }
    Ok(rebuilt)
}

/// The threat a member name alone suggests (for members no relationship reached).
fn name_threat(lower: &str) -> Option<&'static str> {
    if lower.contains("vbaproject") || lower.contains("vbadata") || lower.contains("macrosheet") {
        Some(threats::OOXML_VBA_MACRO)
    } else if lower.contains("activex") {
        Some(threats::OOXML_ACTIVEX)
    } else if lower.contains("embeddings/") || lower.contains("oleobject") {
        Some(threats::OOXML_OLE_OBJECT)
    } else if lower.starts_with("customui/") {
        Some(threats::OOXML_CUSTOM_UI)
    } else if lower.contains("externallink") {
        Some(threats::OOXML_EXTERNAL_LINK)
    } else {
        None
    }
}

/// Members that normal Office files carry unreferenced or only via quietly dropped types.
fn quiet_unreached(lower: &str) -> bool {
    lower.starts_with("customxml/")
        || lower.contains("printersettings")
        || lower.starts_with("docprops/thumbnail")
        || lower.starts_with("_xmlsignatures/")
}

fn content_types_xml(kept: &[KeptPart]) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Types xmlns=\"{CT_NS}\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>"
    );
    // Images by extension (LibreOffice looks images up by their Default), the rest by Override.
    let mut defaults: HashMap<String, String> = HashMap::new();
    for p in kept.iter().filter(|p| p.image) {
        if let Some((_, ext)) = p.name.rsplit_once('.') {
            let ext = ext.to_ascii_lowercase();
            if ext != "xml" && ext != "rels" {
                defaults
                    .entry(ext)
                    .or_insert_with(|| p.content_type.clone());
            }
        }
    }
    let mut exts: Vec<_> = defaults.iter().collect();
    exts.sort();
    for (ext, ct) in exts {
        s.push_str(&format!(
            "<Default Extension=\"{}\" ContentType=\"{}\"/>",
            xml::escape(ext),
            xml::escape(ct)
        ));
    }
    for p in kept {
        let by_default = p
            .name
            .rsplit_once('.')
            .and_then(|(_, e)| defaults.get(&e.to_ascii_lowercase()))
            .is_some_and(|d| *d == p.content_type);
        if !by_default {
            s.push_str(&format!(
                "<Override PartName=\"/{}\" ContentType=\"{}\"/>",
                xml::escape(&p.name),
                xml::escape(&p.content_type)
            ));
        }
    }
    s.push_str("</Types>");
    s.into_bytes()
}

fn rels_xml(rels: &[Rel]) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Relationships xmlns=\"{REL_NS}\">"
    );
    for r in rels {
        s.push_str(&format!(
            "<Relationship Id=\"{}\" Type=\"{}\" Target=\"{}\"{}/>",
            xml::escape(&r.id),
            xml::escape(&r.ty),
            xml::escape(&r.target),
            if r.external {
                " TargetMode=\"External\""
            } else {
                ""
            }
        ));
    }
    s.push_str("</Relationships>");
    s.into_bytes()
}

/// What a Word field instruction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Plain,
    Hyperlink,
    Dde,
    Include,
}

fn field_kind(instr: &str) -> FieldKind {
    let first = instr
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match first.as_str() {
        "DDE" | "DDEAUTO" => FieldKind::Dde,
        "INCLUDETEXT" | "INCLUDEPICTURE" | "INCLUDE" | "IMPORT" | "LINK" => FieldKind::Include,
        "HYPERLINK" => FieldKind::Hyperlink,
        _ => FieldKind::Plain,
    }
}

/// The target argument of a HYPERLINK (or INCLUDE*) instruction: its byte range in `instr`
/// (without quotes) and its text. `None` when the first argument is a switch (`\l "bookmark"`:
/// a place in the document itself).
fn field_target(instr: &str) -> Option<(std::ops::Range<usize>, &str)> {
    let lead = instr.len() - instr.trim_start().len();
    let after_kw = lead
        + instr
            .get(lead..)?
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(instr.len() - lead);
    let rest = instr.get(after_kw..)?;
    let skip = rest.len() - rest.trim_start().len();
    let start = after_kw + skip;
    let arg = instr.get(start..)?;
    if arg.starts_with('\\') && !arg.starts_with("\\\\") {
        return None;
    }
    let range = if let Some(q) = arg.strip_prefix('"') {
        let end = q.find('"').unwrap_or(q.len());
        start + 1..start + 1 + end
    } else {
        let end = arg.find(char::is_whitespace).unwrap_or(arg.len());
        start..start + end
    };
    let text = instr.get(range.clone())?;
    Some((range, text))
}

/// A HYPERLINK instruction with its target made inert by the link policy: web targets are
/// defanged (or removed, or kept by policy); anything else (a local file, a UNC path, a
/// protocol handler) goes nowhere (`about:blank`), as for hyperlink relationships. `None` when
/// nothing changes.
fn rewrite_field(instr: &str, mode: LinkMode) -> Option<String> {
    let (range, target) = field_target(instr)?;
    let t = target.trim();
    if t.is_empty() || already_defanged(t) || t == "about:blank" || t == "[link removed]" {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    let new = if web_scheme(t) || lower.starts_with("www.") {
        rewrite_url(t, mode)
    } else {
        "about:blank".to_owned()
    };
    if new == target {
        return None;
    }
    let mut out = String::with_capacity(instr.len() + 8);
    out.push_str(instr.get(..range.start)?);
    out.push_str(&new);
    out.push_str(instr.get(range.end..)?);
    Some(out)
}

/// Whether a defined name runs a macro when the workbook opens, closes or (de)activates: Excel
/// runs every name that *starts* with `Auto_Open` (and the others), with or without the
/// `_xlnm.` or LibreOffice's `Excel_BuiltIn_` prefix.
pub(crate) fn auto_run_name(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower
        .strip_prefix("_xlnm.")
        .or_else(|| lower.strip_prefix("excel_builtin_"))
        .unwrap_or(&lower);
    [
        "auto_open",
        "auto_close",
        "auto_activate",
        "auto_deactivate",
    ]
    .iter()
    .any(|p| bare.starts_with(p))
}

/// Stands for a nested field inside an instruction (its value is computed when Word opens it).
const NESTED_FIELD: char = '\u{1}';

/// First pass over a Word part: the instruction text of each complex field, in the order the
/// fields begin.
///
/// A field whose type is itself computed by a nested field (`{ {QUOTE 68 68 69 ...} c:\\... }`,
/// a known DDE obfuscation) cannot be judged statically: the document is refused as DDE.
fn word_fields(name: &str, bytes: &[u8], deadline: Instant) -> Result<Vec<String>, SanitizeError> {
    let mut fields: Vec<String> = Vec::new();
    let mut in_result: Vec<bool> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut in_instr = false;
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => match xml::local(e.name().as_ref()) {
                b"fldChar" => match xml::attr(e, b"fldCharType")?.as_deref() {
                    Some("begin") => {
                        if let Some(parent) = stack.last()
                            && !in_result.get(*parent).copied().unwrap_or(true)
                            && fields.get(*parent).is_some_and(|f| f.trim().is_empty())
                        {
                            return Err(SanitizeError::Forbidden {
                                threat: threats::OOXML_DDE,
                                reason: format!(
                                    "{name}: a field whose type is built by nested fields \
                                     (DDE obfuscation) cannot be judged"
                                ),
                            });
                        }
                        if let Some(parent) = stack.last()
                            && !in_result.get(*parent).copied().unwrap_or(true)
                            && let Some(f) = fields.get_mut(*parent)
                        {
                            f.push(NESTED_FIELD);
                        }
                        stack.push(fields.len());
                        fields.push(String::new());
                        in_result.push(false);
                    }
                    Some("separate") => {
                        if let Some(r) = stack.last().and_then(|i| in_result.get_mut(*i)) {
                            *r = true;
                        }
                    }
                    Some("end") => {
                        stack.pop();
                    }
                    _ => {}
                },
                b"instrText" => in_instr = matches!(ev, Event::Start(_)),
                _ => {}
            },
            Event::End(e) if xml::local(e.name().as_ref()) == b"instrText" => in_instr = false,
            Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) if in_instr => {
                if let Some(f) = stack.last().and_then(|i| fields.get_mut(*i)) {
                    f.push_str(&xml::event_text(&ev)?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(fields)
}

/// The instructions of every `w:fldSimple` in a part (for the re-check).
fn simple_fields(
    name: &str,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Vec<String>, SanitizeError> {
    let mut out = Vec::new();
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) if xml::local(e.name().as_ref()) == b"fldSimple" => {
                out.push(xml::attr(e, b"instr")?.unwrap_or_default());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// A filtered XML part.
struct Filtered {
    bytes: Vec<u8>,
    /// (threat, count, what) per kind of change.
    counts: Vec<(&'static str, usize, &'static str)>,
}

#[derive(Default)]
struct Counter(Vec<(&'static str, usize, &'static str)>);

impl Counter {
    fn bump(&mut self, t: &'static str, what: &'static str) {
        if let Some(e) = self.0.iter_mut().find(|(tt, _, w)| *tt == t && *w == what) {
            e.1 = e.1.saturating_add(1);
        } else {
            self.0.push((t, 1, what));
        }
    }
}

/// PowerPoint click actions that run a program, a macro or an OLE verb
/// (`a:hlinkClick action="ppaction://program"`).
fn click_action_threat(attrs: &[(String, String)]) -> Option<&'static str> {
    let (_, v) = attrs.iter().find(|(k, _)| k == "action")?;
    let v = v.trim().to_ascii_lowercase();
    if v.starts_with("ppaction://macro") {
        Some(threats::OOXML_VBA_MACRO)
    } else if v.starts_with("ppaction://ole") {
        Some(threats::OOXML_OLE_OBJECT)
    } else if v.starts_with("ppaction://program") {
        Some(threats::OOXML_EXTERNAL_RELATIONSHIP)
    } else {
        None
    }
}

/// Whether an attribute value points outside the document (remote image, UNC path).
fn external_value(v: &str) -> bool {
    let t = v.trim().to_ascii_lowercase();
    t.contains("://") || t.starts_with("\\\\") || t.starts_with("file:")
}

/// Re-serialises one XML part: elements that reference removed relationships go (hyperlinks
/// only lose the reference), always-dropped elements go, DDE and include fields lose their
/// instruction (their last result stays), DDE formulas go (the cached value stays), link-like
/// attributes and HYPERLINK fields/formulas follow the link policy.
fn filter_part(
    name: &str,
    bytes: &[u8],
    dropped: &HashSet<String>,
    flavor: Flavor,
    mode: LinkMode,
    deadline: Instant,
) -> Result<Filtered, SanitizeError> {
    let fields = if flavor == Flavor::Word && memfind(bytes, b"instrText") {
        word_fields(name, bytes, deadline)?
    } else {
        Vec::new()
    };
    // A HYPERLINK whose instruction holds a nested field has a computed target: it cannot be
    // judged, so it loses its instruction like an include field.
    let field_kinds: Vec<FieldKind> = fields
        .iter()
        .map(|f| match field_kind(f) {
            FieldKind::Hyperlink if f.contains(NESTED_FIELD) => FieldKind::Include,
            k => k,
        })
        .collect();
    let mut counter = Counter::default();
    let mut w = Writer::new(Vec::with_capacity(bytes.len()));
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    let mut unwrap_depths: Vec<u32> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut next_field = 0usize;
    let mut in_instr = false;
    let mut formula: Option<(BytesStart<'static>, String)> = None;
    let mut dropped_shared: HashSet<String> = HashSet::new();
    let mut rewritten_fields: HashSet<usize> = HashSet::new();
    let write_err = |e: std::io::Error| SanitizeError::Internal(format!("writing XML: {e}"));
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(ev, Event::Start(_));
                let qname = e.name().as_ref().to_vec();
                let ln = xml::local(&qname).to_vec();
                if let Some(t) = always_dropped(&ln) {
                    counter.bump(t, "element(s)");
                    if is_start {
                        r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                        g.check(&Event::End(BytesEnd::new("")))?;
                    }
                    continue;
                }
                let attrs = xml::attrs(e)?;
                if let Some(t) = click_action_threat(&attrs) {
                    counter.bump(t, "click action(s)");
                    if is_start {
                        r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                        g.check(&Event::End(BytesEnd::new("")))?;
                    }
                    continue;
                }
                let refs_dropped = attrs.iter().any(|(k, v)| {
                    k.contains(':') && !k.starts_with("xmlns") && dropped.contains(v)
                });
                let mut new_attrs: Option<Vec<(String, String)>> = None;
                if refs_dropped {
                    if matches!(ln.as_slice(), b"hyperlink" | b"hlinkClick" | b"hlinkHover") {
                        new_attrs = Some(
                            attrs
                                .iter()
                                .filter(|(k, v)| !(k.contains(':') && dropped.contains(v)))
                                .cloned()
                                .collect(),
                        );
                    } else {
                        if is_start {
                            r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                            g.check(&Event::End(BytesEnd::new("")))?;
                        }
                        continue;
                    }
                }
                if flavor == Flavor::Word {
                    match ln.as_slice() {
                        b"fldChar" => match xml::attr(e, b"fldCharType")?.as_deref() {
                            Some("begin") => {
                                stack.push(next_field);
                                next_field = next_field.saturating_add(1);
                            }
                            Some("end") => {
                                stack.pop();
                            }
                            _ => {}
                        },
                        b"instrText" => in_instr = is_start,
                        b"fldSimple" => {
                            let instr = xml::attr(e, b"instr")?.unwrap_or_default();
                            match field_kind(&instr) {
                                FieldKind::Dde | FieldKind::Include => {
                                    let t = if field_kind(&instr) == FieldKind::Dde {
                                        threats::OOXML_DDE
                                    } else {
                                        threats::OOXML_EXTERNAL_LINK
                                    };
                                    counter.bump(t, "field code(s)");
                                    if is_start {
                                        unwrap_depths.push(g.depth());
                                    }
                                    continue;
                                }
                                FieldKind::Hyperlink => {
                                    if let Some(text) = rewrite_field(&instr, mode) {
                                        counter.bump(threats::LINK_REWRITTEN, "hyperlink field(s)");
                                        let base = new_attrs.take().unwrap_or(attrs.clone());
                                        new_attrs = Some(
                                            base.into_iter()
                                                .map(|(k, v)| {
                                                    if xml::local(k.as_bytes()) == b"instr" {
                                                        (k, text.clone())
                                                    } else {
                                                        (k, v)
                                                    }
                                                })
                                                .collect(),
                                        );
                                    }
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                // Cell formulas, and chart series formulas (`c:f`) in every kind of document.
                if is_start && (ln == b"f" || (flavor == Flavor::Sheet && ln == b"definedName")) {
                    formula = Some((e.clone().into_owned(), String::new()));
                    continue;
                }
                // A cell sharing a dropped formula (`<f t="shared" si="0"/>`) loses it too.
                if flavor == Flavor::Sheet
                    && ln == b"f"
                    && !is_start
                    && xml::attr(e, b"si")?.is_some_and(|si| dropped_shared.contains(&si))
                {
                    continue;
                }
                // Link-like attributes (VML src/href, o:href) that reach outside.
                let current = new_attrs.as_ref().unwrap_or(&attrs);
                if current.iter().any(|(k, v)| {
                    matches!(xml::local(k.as_bytes()), b"href" | b"src") && external_value(v)
                }) {
                    counter.bump(
                        threats::OOXML_EXTERNAL_RELATIONSHIP,
                        "external reference(s)",
                    );
                    new_attrs = Some(
                        current
                            .iter()
                            .map(|(k, v)| {
                                if matches!(xml::local(k.as_bytes()), b"href" | b"src")
                                    && external_value(v)
                                {
                                    (k.clone(), rewrite_url(v, LinkMode::Defang))
                                } else {
                                    (k.clone(), v.clone())
                                }
                            })
                            .collect(),
                    );
                }
                let out = match new_attrs {
                    Some(a) => xml::start_with(&qname, &a)?,
                    None => e.clone().into_owned(),
                };
                let out_ev = if is_start {
                    Event::Start(out)
                } else {
                    Event::Empty(out)
                };
                w.write_event(out_ev)
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
            Event::End(ref e) => {
                if unwrap_depths.last() == Some(&g.depth().saturating_add(1)) {
                    unwrap_depths.pop();
                    continue;
                }
                let ln = xml::local(e.name().as_ref()).to_vec();
                if ln == b"instrText" {
                    in_instr = false;
                }
                if let Some((start, text)) = formula
                    .take()
                    .filter(|_| ln == b"f" || ln == b"definedName")
                {
                    if ln == b"definedName"
                        && xml::attr(&start, b"name")?.is_some_and(|n| auto_run_name(&n))
                    {
                        counter.bump(threats::OOXML_AUTO_RUN_NAME, "auto-run defined name(s)");
                        continue;
                    }
                    if let Some(risk) = formula_risk(&text) {
                        let (t, what) = match risk {
                            FormulaRisk::Dde => (threats::OOXML_DDE, "DDE formula(s)"),
                            FormulaRisk::External => (
                                threats::OOXML_EXTERNAL_FORMULA,
                                "formula(s) reaching outside the workbook",
                            ),
                        };
                        counter.bump(t, what);
                        if ln == b"f"
                            && xml::attr(&start, b"t")?.as_deref() == Some("shared")
                            && let Some(si) = xml::attr(&start, b"si")?
                        {
                            dropped_shared.insert(si);
                        }
                        continue;
                    }
                    let mut text = text;
                    if mode != LinkMode::Keep && text.to_ascii_uppercase().contains("HYPERLINK(") {
                        let (t, n) = crate::links::rewrite_links_in_text(&text, mode);
                        if n > 0 {
                            counter.bump(threats::LINK_REWRITTEN, "HYPERLINK formula(s)");
                            text = t;
                        }
                    }
                    for out in [
                        Event::Start(start),
                        Event::Text(BytesText::new(&text)),
                        Event::End(e.clone().into_owned()),
                    ] {
                        w.write_event(out)
                            .map_err(|e| write_err(std::io::Error::other(e)))?;
                    }
                    continue;
                }
                w.write_event(Event::End(e.clone().into_owned()))
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
            Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) => {
                if let Some((_, text)) = formula.as_mut() {
                    text.push_str(&xml::event_text(&ev)?);
                    continue;
                }
                if in_instr {
                    let kind = stack
                        .last()
                        .and_then(|i| field_kinds.get(*i))
                        .copied()
                        .unwrap_or(FieldKind::Plain);
                    match kind {
                        FieldKind::Dde => {
                            counter.bump(threats::OOXML_DDE, "DDE field code piece(s)");
                            continue;
                        }
                        FieldKind::Include => {
                            counter
                                .bump(threats::OOXML_EXTERNAL_LINK, "include field code piece(s)");
                            continue;
                        }
                        FieldKind::Hyperlink => {
                            // The instruction may be split over many runs (`HYPERLINK "http://`
                            // + `evil.example"`): the whole rewritten instruction goes in its
                            // first piece, the other pieces are emptied.
                            let idx = stack.last().copied().unwrap_or(usize::MAX);
                            let rewritten = fields.get(idx).and_then(|f| rewrite_field(f, mode));
                            if let Some(t) = rewritten {
                                if rewritten_fields.insert(idx) {
                                    counter.bump(threats::LINK_REWRITTEN, "hyperlink field(s)");
                                    w.write_event(Event::Text(BytesText::new(&t)))
                                        .map_err(|e| write_err(std::io::Error::other(e)))?;
                                }
                                continue;
                            }
                        }
                        _ => {}
                    }
                }
                w.write_event(ev.into_owned())
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
            other => {
                w.write_event(other.into_owned())
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
        }
    }
    Ok(Filtered {
        bytes: w.into_inner(),
        counts: counter.0,
    })
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Independent structural check of a written package. It does not reuse the rebuild's
/// decisions: it reads the output bytes again and fails on anything active that it can see.
pub fn recheck(output: &[u8], mode: LinkMode) -> Result<(), SanitizeError> {
    let fail = |m: String| Err(SanitizeError::Recheck(format!("OOXML output: {m}")));
    let mut budget = crate::limits::Budget::new(&crate::limits::Limits::default());
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let pkg = Package::read(output, &mut budget)?;
    match pkg.members().first() {
        Some(m) if m.name == "[Content_Types].xml" => {}
        _ => return fail("[Content_Types].xml is not the first member".into()),
    }
    let types = match pkg.get("[Content_Types].xml") {
        Some(m) => ContentTypes::parse(&m.bytes, deadline)?,
        None => return fail("no [Content_Types].xml".into()),
    };
    const BAD_NAMES: [&str; 9] = [
        "vbaproject",
        "vbadata",
        "activex",
        "embeddings",
        "oleobject",
        "customui",
        "externallink",
        ".bin",
        "attachedtemplate",
    ];
    const BAD_TYPES: [&str; 6] = [
        "macroenabled",
        "vbaproject",
        "activex",
        "oleobject",
        "externallink",
        "customui",
    ];
    for m in pkg.members() {
        let lower = m.name.to_ascii_lowercase();
        if lower == "[content_types].xml" {
            continue;
        }
        if let Some(b) = BAD_NAMES.iter().find(|b| lower.contains(*b)) {
            return fail(format!("member {} matches {b:?}", m.name));
        }
        let Some(ct) = types.of(&m.name) else {
            return fail(format!("member {} has no content type", m.name));
        };
        let ct_lower = ct.to_ascii_lowercase();
        if BAD_TYPES.iter().any(|b| ct_lower.contains(*b)) {
            return fail(format!("member {} has content type {ct}", m.name));
        }
        if memfind(&m.bytes, b"<!DOCTYPE") {
            return fail(format!("member {} has a DTD", m.name));
        }
        if lower.ends_with(".rels") {
            for rel in parse_rels(&m.bytes, &m.name, deadline)? {
                let short = short_type(&rel.ty).unwrap_or("");
                if rel.external {
                    if rel.ty != REL_TYPE_HYPERLINK && short != "hyperlink" {
                        return fail(format!("external relationship {} in {}", rel.ty, m.name));
                    }
                    if !hyperlink_target_ok(&rel.target, mode) {
                        return fail(format!("hyperlink target {:?} not per policy", rel.target));
                    }
                } else if !ALLOWED_TYPES.contains(&short) {
                    return fail(format!("relationship type {} in {}", rel.ty, m.name));
                }
            }
        } else if lower.ends_with(".xml") {
            let low_bytes = m.bytes.to_ascii_lowercase();
            for bad in [
                &b"ppaction://macro"[..],
                b"ppaction://program",
                b"ppaction://ole",
            ] {
                if memfind(&low_bytes, bad) {
                    return fail(format!("click action left in {}", m.name));
                }
            }
            let mut fields = if memfind(&m.bytes, b"instrText") {
                word_fields(&m.name, &m.bytes, deadline)?
            } else {
                Vec::new()
            };
            if memfind(&m.bytes, b"fldSimple") {
                fields.extend(simple_fields(&m.name, &m.bytes, deadline)?);
            }
            if fields
                .iter()
                .any(|f| matches!(field_kind(f), FieldKind::Dde | FieldKind::Include))
            {
                return fail(format!("DDE or include field left in {}", m.name));
            }
            if mode != LinkMode::Keep
                && fields
                    .iter()
                    .any(|f| field_kind(f) == FieldKind::Hyperlink && !field_link_ok(f))
            {
                return fail(format!("live HYPERLINK field left in {}", m.name));
            }
            if (lower.starts_with("xl/")
                || memfind(&m.bytes, b"<f")
                || memfind(&m.bytes, b":f>")
                || memfind(&m.bytes, b"definedName"))
                && let Some(problem) = formula_problem(&m.name, &m.bytes, deadline)?
            {
                return fail(format!("{problem} left in {}", m.name));
            }
        }
    }
    Ok(())
}

/// The first formula (`<f>`) or defined name in a spreadsheet part that reaches outside the
/// workbook or runs on open, for the re-check.
fn formula_problem(
    name: &str,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Option<String>, SanitizeError> {
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    let mut current: Option<String> = None;
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) => match xml::local(e.name().as_ref()) {
                b"f" => current = Some(String::new()),
                b"definedName" => {
                    if xml::attr(e, b"name")?.is_some_and(|n| auto_run_name(&n)) {
                        return Ok(Some("auto-run defined name".into()));
                    }
                    current = Some(String::new());
                }
                _ => {}
            },
            Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) => {
                if let Some(f) = current.as_mut() {
                    f.push_str(&xml::event_text(&ev)?);
                }
            }
            Event::End(_) => {
                if let Some(f) = current.take()
                    && formula_risk(&f).is_some()
                {
                    return Ok(Some("DDE or external formula".into()));
                }
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// Whether a HYPERLINK field instruction's target is inert (defanged, removed, a bookmark).
fn field_link_ok(instr: &str) -> bool {
    match field_target(instr) {
        Some((_, target)) => {
            let t = target.trim();
            t.is_empty()
                || already_defanged(t)
                || t == "[link removed]"
                || t == "about:blank"
                || t.to_ascii_lowercase().starts_with("mailto:")
                || t.to_ascii_lowercase().starts_with("tel:")
        }
        None => true,
    }
}

fn hyperlink_target_ok(target: &str, mode: LinkMode) -> bool {
    let t = target.trim().to_ascii_lowercase();
    if t == "about:blank" {
        return true;
    }
    match mode {
        LinkMode::Keep => web_scheme(&t),
        LinkMode::Remove => false,
        LinkMode::Defang => ["hxxp:", "hxxps:", "fxp:", "mailto:", "tel:"]
            .iter()
            .any(|p| t.starts_with(p)),
    }
}

/// A target defanged by an earlier pass (`hxxps://example[.]jp`): inert, kept as it is so that
/// sanitizing twice changes nothing.
pub(crate) fn already_defanged(target: &str) -> bool {
    let t = target.trim().to_ascii_lowercase();
    ["hxxp://", "hxxps://", "fxp://"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// Whether a hyperlink target uses a scheme a browser or mail client handles.
fn web_scheme(target: &str) -> bool {
    let t = target.trim().to_ascii_lowercase();
    ["http://", "https://", "ftp://", "mailto:", "tel:"]
        .iter()
        .any(|p| t.starts_with(p))
}

#[cfg(test)]
mod tests;
