//! OpenDocument (odt/ods/odp/odg): the package is rebuilt from an allow-list of members, its
//! XML re-serialised by a bounded, DTD-free filter.
//!
//! Kept: `mimetype` (first, stored), `content.xml`, `styles.xml`, `meta.xml`, raster images under
//! `Pictures/` (re-encoded through [`Context::sanitize_child`]; never kept as they came), and a new
//! `META-INF/manifest.xml` listing exactly those. Removed, with threat ids: Basic and script
//! libraries and dialogs (`odf.macro`), event listeners and macro links (`odf.event_listener`,
//! `odf.macro`), embedded objects, applets and plugins with their replacement images
//! (`odf.embedded_object`), linked resources, DDE links and WEBSERVICE/DDE formulas
//! (`odf.external_link`), and any other member (`odf.unknown_part`). `settings.xml`,
//! thumbnails and `Configurations2/` are left out quietly (view settings and toolbars, which may
//! bind macros; LibreOffice opens documents without them). Hyperlinks (`text:a`, `draw:a`)
//! follow the link policy.
//!
//! The written package is checked again by [`recheck`]; any hit is [`SanitizeError::Recheck`].

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::time::Instant;

use quick_xml::Writer;

use crate::formats::office::formula::{FormulaRisk, formula_risk};
use quick_xml::events::{BytesEnd, Event};

use crate::error::SanitizeError;
use crate::formats::office::xml::{self, Guard};
use crate::formats::office::{Package, PackageWriter};
use crate::links::rewrite_url;
use crate::pipeline::{Context, FormatSanitizer, PartInput, PartOutcome, Rebuilt};
use crate::policy::LinkMode;
use crate::report::{Action, Kind};
use crate::sniff;
use crate::threats;

/// Sanitizes ODF packages.
#[derive(Debug, Clone, Copy)]
pub struct OdfSanitizer;

const MIMETYPES: &[(&str, &str)] = &[
    ("application/vnd.oasis.opendocument.text", "odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", "ods"),
    ("application/vnd.oasis.opendocument.presentation", "odp"),
    ("application/vnd.oasis.opendocument.graphics", "odg"),
    ("application/vnd.oasis.opendocument.text-template", "ott"),
    (
        "application/vnd.oasis.opendocument.spreadsheet-template",
        "ots",
    ),
    (
        "application/vnd.oasis.opendocument.presentation-template",
        "otp",
    ),
    (
        "application/vnd.oasis.opendocument.graphics-template",
        "otg",
    ),
];

const XML_PARTS: [&str; 3] = ["content.xml", "styles.xml", "meta.xml"];
const MANIFEST_NS: &str = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0";

impl FormatSanitizer for OdfSanitizer {
    fn name(&self) -> &'static str {
        "odf"
    }

    fn sanitize(&self, input: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt, SanitizeError> {
        let (rebuilt, ext) = rebuild(input, cx)?;
        if cx.policy().office.rasterize {
            let threats = rebuilt.threats.clone();
            return crate::formats::office::rasterize(&rebuilt.bytes, ext, threats, cx);
        }
        Ok(rebuilt)
    }
}

/// The threat a member name carries when it is left out; `None` for quiet omissions.
fn member_threat(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("basic/") || lower.starts_with("scripts/") || lower.starts_with("dialogs/")
    {
        Some(threats::ODF_MACRO)
    } else if lower.starts_with("object ")
        || lower.starts_with("objectreplacements/")
        || lower.starts_with("obj")
    {
        Some(threats::ODF_EMBEDDED_OBJECT)
    } else if lower == "settings.xml"
        || lower.starts_with("thumbnails/")
        || lower.starts_with("configurations2/")
        || lower == "layout-cache"
        || lower == "manifest.rdf"
        || lower.starts_with("meta-inf/")
        || lower == "mimetype"
    {
        None
    } else {
        Some(threats::ODF_UNKNOWN_PART)
    }
}

/// Findings: (member, threat, what) with counts folded in the text.
#[derive(Debug, Default)]
struct Findings {
    threats: Vec<&'static str>,
    removals: Vec<(String, &'static str, String)>,
}

impl Findings {
    fn add(&mut self, what: &str, t: &'static str, reason: String) {
        if !self.threats.contains(&t) {
            self.threats.push(t);
        }
        self.removals.push((what.to_owned(), t, reason));
    }
}

fn rebuild(input: &[u8], cx: &mut Context<'_>) -> Result<(Rebuilt, &'static str), SanitizeError> {
    let deadline = cx.budget().deadline();
    let mode = cx.policy().links.mode;
    let pkg = Package::read(input, cx.budget())?;
    let mimetype = pkg
        .get("mimetype")
        .map(|m| String::from_utf8_lossy(&m.bytes).trim().to_owned())
        .ok_or_else(|| SanitizeError::Malformed("ODF package without mimetype".into()))?;
    let Some((_, ext)) = MIMETYPES.iter().find(|(m, _)| *m == mimetype) else {
        return Err(SanitizeError::Unsupported(format!(
            "OpenDocument type {mimetype:?}"
        )));
    };
    let manifest = pkg
        .get("META-INF/manifest.xml")
        .ok_or_else(|| SanitizeError::Malformed("ODF package without a manifest".into()))?;
    let (version, media_types) = parse_manifest(&manifest.bytes, deadline)?;

    let mut found = Findings::default();
    // Which members survive, decided before the XML is filtered (references to the others go).
    let mut kept_pictures: Vec<(String, Vec<u8>, String)> = Vec::new();
    for m in pkg.members() {
        cx.budget().check_deadline()?;
        if XML_PARTS.contains(&m.name.as_str()) {
            continue;
        }
        if m.name.starts_with("Pictures/") {
            let sniffed = sniff::sniff(&m.bytes);
            if sniffed != Kind::Image {
                found.add(
                    &m.name,
                    threats::ODF_UNKNOWN_PART,
                    format!("picture of kind {sniffed} (SVM/WMF/SVG or other) removed"),
                );
                continue;
            }
            let declared = media_types.get(&m.name).cloned().unwrap_or_default();
            match cx.sanitize_child(
                &m.name,
                PartInput {
                    bytes: &m.bytes,
                    // The member's own file name: its folders are in the report path already.
                    name: Some(m.name.rsplit('/').next().unwrap_or(&m.name)),
                    declared_type: Some(&declared),
                },
            ) {
                PartOutcome::Kept(p) => {
                    kept_pictures.push((m.name.clone(), p.bytes.into_vec(), p.mime));
                }
                PartOutcome::Removed(_) => {}
            }
            continue;
        }
        if let Some(t) = member_threat(&m.name) {
            found.add(&m.name, t, "package member removed".into());
        } else if m.name == "settings.xml" && memfind(&m.bytes, b"vnd.sun.star.script") {
            found.add(
                &m.name,
                threats::ODF_MACRO,
                "settings with macro bindings removed".into(),
            );
        }
    }
    let kept_names: HashSet<String> = kept_pictures.iter().map(|(n, ..)| n.clone()).collect();

    let mut w = PackageWriter::new();
    w.stored("mimetype", mimetype.as_bytes())?;
    let mut listed: Vec<(String, String)> = Vec::new();
    for part in XML_PARTS {
        let Some(m) = pkg.get(part) else {
            continue;
        };
        let (bytes, counts) = filter(part, &m.bytes, &kept_names, mode, deadline)?;
        for (t, n, what) in counts {
            found.add(part, t, format!("{n} {what} removed or rewritten"));
        }
        w.deflated(part, &bytes)?;
        listed.push((part.to_owned(), "text/xml".to_owned()));
    }
    if !listed.iter().any(|(n, _)| n == "content.xml") {
        return Err(SanitizeError::Malformed(
            "ODF package without content.xml".into(),
        ));
    }
    for (name, bytes, mime) in &kept_pictures {
        w.deflated(name, bytes)?;
        listed.push((name.clone(), mime.clone()));
    }
    w.deflated(
        "META-INF/manifest.xml",
        &manifest_xml(&mimetype, version.as_deref(), &listed),
    )?;
    let output = w.finish()?;
    recheck(&output, mode)?;

    crate::formats::office::record_removals(cx, Kind::Odf, &found.removals);
    let n = found.removals.len();
    let reason = if n == 0 {
        "package rebuilt from its allowed members".to_owned()
    } else {
        format!("package rebuilt from its allowed members; {n} item(s) removed or rewritten")
    };
    Ok((
        Rebuilt::new(output, Action::Rebuilt, Kind::Odf, mimetype)
            .with_threats(found.threats)
            .with_reason(reason),
        ext,
    ))
}

/// The manifest's version and its member → media type map. Encrypted entries are refused.
fn parse_manifest(
    bytes: &[u8],
    deadline: Instant,
) -> Result<(Option<String>, HashMap<String, String>), SanitizeError> {
    let mut r = xml::reader(bytes);
    let mut g = Guard::new("META-INF/manifest.xml", deadline);
    let mut version = None;
    let mut types = HashMap::new();
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => match xml::local(e.name().as_ref()) {
                b"manifest" => version = xml::attr(e, b"version")?,
                b"file-entry" => {
                    if let (Some(p), Some(t)) =
                        (xml::attr(e, b"full-path")?, xml::attr(e, b"media-type")?)
                    {
                        types.insert(p, t);
                    }
                }
                b"encryption-data" => {
                    return Err(SanitizeError::encrypted(
                        threats::OFFICE_ENCRYPTED,
                        "password-protected OpenDocument",
                    ));
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((version, types))
}

fn manifest_xml(mimetype: &str, version: Option<&str>, listed: &[(String, String)]) -> Vec<u8> {
    let v = version
        .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(|v| format!(" manifest:version=\"{v}\""))
        .unwrap_or_default();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<manifest:manifest xmlns:manifest=\"{MANIFEST_NS}\"{v}>\
         <manifest:file-entry manifest:full-path=\"/\"{v} manifest:media-type=\"{}\"/>",
        xml::escape(mimetype)
    );
    for (name, mime) in listed {
        s.push_str(&format!(
            "<manifest:file-entry manifest:full-path=\"{}\" manifest:media-type=\"{}\"/>",
            xml::escape(name),
            xml::escape(mime)
        ));
    }
    s.push_str("</manifest:manifest>");
    s.into_bytes()
}

/// Elements removed with their subtree wherever they appear, by local name (a prefix can be
/// bound to any namespace, so it proves nothing).
fn dropped_element(qname: &[u8]) -> Option<&'static str> {
    Some(match xml::local(qname) {
        // The containers (office:scripts, office:event-listeners) stay, empty.
        b"event-listener" | b"listener" => threats::ODF_EVENT_LISTENER,
        b"execute-macro" | b"error-macro" | b"script" => threats::ODF_MACRO,
        b"object" | b"object-ole" | b"applet" | b"plugin" => threats::ODF_EMBEDDED_OBJECT,
        b"dde-connection-decls"
        | b"dde-connection-decl"
        | b"dde-connection"
        | b"dde-links"
        | b"dde-link"
        | b"dde-source"
        | b"table-source"
        | b"section-source" => threats::ODF_EXTERNAL_LINK,
        _ => return None,
    })
}

/// `text:a`, `draw:a`: hyperlinks, whatever their prefix.
fn is_hyperlink(qname: &[u8]) -> bool {
    xml::local(qname) == b"a"
}

fn is_external(v: &str) -> bool {
    let t = v.trim().to_ascii_lowercase();
    t.contains("://")
        || t.starts_with("\\\\")
        || t.starts_with('/')
        || t.starts_with("file:")
        || t.starts_with("mailto:")
}

fn is_macro_url(v: &str) -> bool {
    let t = v.trim().to_ascii_lowercase();
    [
        "vnd.sun.star.script:",
        "vnd.sun.star.basic:",
        "macro:",
        "javascript:",
        "vbscript:",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// A local reference (`Pictures/a.png`, `./Object 1`) to a member that was left out.
fn local_target(v: &str) -> String {
    v.trim().trim_start_matches("./").to_owned()
}

type Counts = Vec<(&'static str, usize, &'static str)>;

fn bump(c: &mut Counts, t: &'static str, what: &'static str) {
    if let Some(e) = c.iter_mut().find(|(tt, _, w)| *tt == t && *w == what) {
        e.1 = e.1.saturating_add(1);
    } else {
        c.push((t, 1, what));
    }
}

/// Re-serialises one ODF XML member (see the module docs for what goes).
fn filter(
    name: &str,
    bytes: &[u8],
    kept: &HashSet<String>,
    mode: LinkMode,
    deadline: Instant,
) -> Result<(Vec<u8>, Counts), SanitizeError> {
    let mut counts = Counts::new();
    let mut w = Writer::new(Vec::with_capacity(bytes.len()));
    let mut r = xml::reader(bytes);
    let mut g = Guard::new(name, deadline);
    let write_err = |e: std::io::Error| SanitizeError::Internal(format!("writing XML: {e}"));
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(ev, Event::Start(_));
                let qname = e.name().as_ref().to_vec();
                let mut drop = dropped_element(&qname);
                let attrs = xml::attrs(e)?;
                let hyperlink = is_hyperlink(&qname);
                let mut new_attrs: Vec<(String, String)> = Vec::with_capacity(attrs.len());
                let mut changed = false;
                for (k, v) in &attrs {
                    let lk = xml::local(k.as_bytes());
                    if drop.is_some() {
                        break;
                    }
                    if lk == b"href" && !k.starts_with("xmlns") {
                        if is_macro_url(v) {
                            if hyperlink {
                                bump(&mut counts, threats::ODF_MACRO, "macro link(s)");
                                changed = true;
                                continue;
                            }
                            drop = Some(threats::ODF_MACRO);
                        } else if is_external(v)
                            || (hyperlink && !v.trim().starts_with('#') && !v.trim().is_empty())
                        {
                            // A hyperlink to anything but a web/mail address or an anchor in
                            // the document (a relative file path, a local program) goes nowhere.
                            if hyperlink {
                                let out = if crate::formats::ooxml::already_defanged(v) {
                                    v.clone()
                                } else if web_scheme(v) {
                                    rewrite_url(v, mode)
                                } else {
                                    "about:blank".to_owned()
                                };
                                if out != *v {
                                    bump(&mut counts, threats::LINK_REWRITTEN, "hyperlink(s)");
                                    changed = true;
                                }
                                new_attrs.push((k.clone(), out));
                                continue;
                            }
                            drop = Some(threats::ODF_EXTERNAL_LINK);
                        } else if !hyperlink
                            && !v.trim().starts_with('#')
                            && !v.trim().is_empty()
                            && !kept.contains(&local_target(v))
                        {
                            drop = Some(threats::ODF_EMBEDDED_OBJECT);
                        }
                    } else if lk == b"formula" {
                        // The formula goes, the cached value (office:value, the text) stays.
                        if let Some(risk) = formula_risk(v) {
                            let (t, what) = match risk {
                                FormulaRisk::Dde => (threats::ODF_DDE, "DDE formula(s)"),
                                FormulaRisk::External => (
                                    threats::ODF_EXTERNAL_FORMULA,
                                    "formula(s) reaching outside the document",
                                ),
                            };
                            bump(&mut counts, t, what);
                            changed = true;
                            continue;
                        }
                    } else if is_macro_url(v) && !k.starts_with("xmlns") {
                        drop = Some(threats::ODF_MACRO);
                    }
                    new_attrs.push((k.clone(), v.clone()));
                }
                if let Some(t) = drop {
                    bump(&mut counts, t, "element(s)");
                    if is_start {
                        r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                        g.check(&Event::End(BytesEnd::new("")))?;
                    }
                    continue;
                }
                let out = if changed {
                    xml::start_with(&qname, &new_attrs)?
                } else {
                    e.clone().into_owned()
                };
                let out = if is_start {
                    Event::Start(out)
                } else {
                    Event::Empty(out)
                };
                w.write_event(out)
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
            other => {
                w.write_event(other.into_owned())
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
            }
        }
    }
    Ok((w.into_inner(), counts))
}

fn web_scheme(v: &str) -> bool {
    let t = v.trim().to_ascii_lowercase();
    ["http://", "https://", "ftp://", "mailto:"]
        .iter()
        .any(|p| t.starts_with(p))
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Independent structural check of a written ODF package.
pub fn recheck(output: &[u8], mode: LinkMode) -> Result<(), SanitizeError> {
    let fail = |m: String| Err(SanitizeError::Recheck(format!("ODF output: {m}")));
    let mut zip = zip::ZipArchive::new(Cursor::new(output))
        .map_err(|e| SanitizeError::Recheck(format!("ODF output unreadable: {e}")))?;
    match zip.by_index(0) {
        Ok(f)
            if f.name().is_ok_and(|n| n == "mimetype")
                && f.compression() == zip::CompressionMethod::Stored => {}
        _ => return fail("mimetype is not the first, stored member".into()),
    }
    let mut budget = crate::limits::Budget::new(&crate::limits::Limits::default());
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let pkg = Package::read(output, &mut budget)?;
    let Some(manifest) = pkg.get("META-INF/manifest.xml") else {
        return fail("no manifest".into());
    };
    let (_, listed) = parse_manifest(&manifest.bytes, deadline)?;
    let present: HashSet<&str> = pkg
        .members()
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| *n != "mimetype" && *n != "META-INF/manifest.xml")
        .collect();
    let listed_names: HashSet<&str> = listed
        .keys()
        .map(String::as_str)
        .filter(|n| *n != "/")
        .collect();
    if present != listed_names {
        return fail("manifest and members differ".into());
    }
    for m in pkg.members() {
        let lower = m.name.to_ascii_lowercase();
        if [
            "basic/",
            "scripts/",
            "dialogs/",
            "object",
            "configurations2/",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
        {
            return fail(format!("member {} left", m.name));
        }
        if !lower.ends_with(".xml") {
            continue;
        }
        let mut r = xml::reader(&m.bytes);
        let mut g = Guard::new(&m.name, deadline);
        loop {
            let ev = r.read_event().map_err(|e| g.err(e))?;
            g.check(&ev)?;
            match &ev {
                Event::Start(e) | Event::Empty(e) => {
                    let q = e.name().as_ref().to_vec();
                    if dropped_element(&q).is_some() {
                        return fail(format!("{} in {}", String::from_utf8_lossy(&q), m.name));
                    }
                    for (k, v) in xml::attrs(e)? {
                        if is_macro_url(&v) && !k.starts_with("xmlns") {
                            return fail(format!("macro reference in {}", m.name));
                        }
                        if xml::local(k.as_bytes()) == b"formula" && formula_risk(&v).is_some() {
                            return fail(format!("DDE or external formula in {}", m.name));
                        }
                        if xml::local(k.as_bytes()) == b"href" && is_external(&v) {
                            let ok = is_hyperlink(&q) && link_ok(&v, mode);
                            if !ok {
                                return fail(format!("external reference {v:?} in {}", m.name));
                            }
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
    }
    Ok(())
}

fn link_ok(v: &str, mode: LinkMode) -> bool {
    let t = v.trim().to_ascii_lowercase();
    t == "about:blank"
        || match mode {
            LinkMode::Keep => web_scheme(&t),
            LinkMode::Remove => t == "[link removed]",
            LinkMode::Defang => ["hxxp:", "hxxps:", "fxp:", "mailto:"]
                .iter()
                .any(|p| t.starts_with(p)),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Budget, Limits};
    use crate::policy::Policy;
    use crate::{Verdict, sanitize_file};

    const NS: &str = r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0""#;

    fn odt(content_body: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = PackageWriter::new();
        w.stored("mimetype", b"application/vnd.oasis.opendocument.text")
            .unwrap();
        let content = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content {NS} office:version="1.3">{content_body}</office:document-content>"#
        );
        w.deflated("content.xml", content.as_bytes()).unwrap();
        for (n, b) in extra {
            w.deflated(n, b).unwrap();
        }
        w.deflated("META-INF/manifest.xml", format!(r#"<manifest:manifest xmlns:manifest="{MANIFEST_NS}" manifest:version="1.3"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#).as_bytes()).unwrap();
        w.finish().unwrap()
    }

    fn member(out: &[u8], name: &str) -> String {
        let pkg = Package::read(out, &mut Budget::new(&Limits::default())).unwrap();
        String::from_utf8(pkg.get(name).unwrap().bytes.clone()).unwrap()
    }

    #[test]
    fn macros_listeners_objects_and_remote_links_go() {
        let body = r##"<office:scripts><office:event-listeners><script:event-listener script:language="ooo:script" script:event-name="office:load" xlink:href="vnd.sun.star.script:Standard.M.Run?language=Basic&amp;location=document"/></office:event-listeners></office:scripts><office:body><office:text><text:p>本文です</text:p><text:p><text:a xlink:href="https://phish.example/x">リンク</text:a><text:a xlink:href="macro:///Standard.M.Run">m</text:a><text:a xlink:href="../../bin/run.exe">r</text:a><text:a xlink:href="#sec1">s</text:a></text:p><draw:frame><draw:object xlink:href="./Object 1"/><draw:image xlink:href="./ObjectReplacements/Object 1"/></draw:frame><draw:frame><draw:image xlink:href="http://tracker.example/p.png"/></draw:frame><draw:frame><draw:image xlink:href="Pictures/a.png"/></draw:frame></office:text></office:body>"##;
        let png = image_png();
        let input = odt(
            body,
            &[
                ("Basic/Standard/M.xml", b"Sub Run\nEnd Sub"),
                ("Object 1/content.xml", b"<math/>"),
                ("ObjectReplacements/Object 1", b"VCLMTF"),
                ("Pictures/a.png", &png),
                ("settings.xml", b"<office:document-settings/>"),
            ],
        );
        let out = sanitize_file(&input, Some("m.odt"), &Policy::default());
        let threats = out.report.threats();
        for t in [
            "odf.macro",
            "odf.event_listener",
            "odf.embedded_object",
            "odf.external_link",
            "link.rewritten",
        ] {
            assert!(threats.contains(&t), "{t} missing: {threats:?}");
        }
        let file = out.output.unwrap();
        assert_eq!(file.name, "m.odt");
        let c = member(file.bytes.as_slice(), "content.xml");
        for bad in [
            "script:event-listener",
            "vnd.sun.star",
            "macro:",
            "Object 1",
            "tracker.example",
            "https://",
            "run.exe",
        ] {
            assert!(!c.contains(bad), "{bad} left in {c}");
        }
        assert!(
            c.contains("本文です") && c.contains("hxxps://phish[.]example/x"),
            "{c}"
        );
        assert!(
            c.contains("Pictures/a.png") && c.contains("\"#sec1\""),
            "{c}"
        );
        let m = member(file.bytes.as_slice(), "META-INF/manifest.xml");
        assert!(m.contains("Pictures/a.png") && !m.contains("Basic"), "{m}");
    }

    #[test]
    fn clean_odt_is_clean_and_recheck_fires() {
        let input = odt(
            "<office:body><office:text><text:p>平文</text:p></office:text></office:body>",
            &[],
        );
        let out = sanitize_file(&input, Some("c.odt"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Clean, "{:?}", out.report);
        assert!(recheck(out.output.unwrap().bytes.as_slice(), LinkMode::Defang).is_ok());
        // The unfiltered input fails the re-check (a member missing from the manifest).
        let bad = odt("<office:body/>", &[("Basic/x.xml", b"x")]);
        assert!(matches!(
            recheck(&bad, LinkMode::Defang),
            Err(SanitizeError::Recheck(_))
        ));
        let listener = odt(
            r#"<office:body><script:event-listener xlink:href="x"/></office:body>"#,
            &[],
        );
        assert!(matches!(
            recheck(&listener, LinkMode::Defang),
            Err(SanitizeError::Recheck(_))
        ));
    }

    #[test]
    fn dde_formula_loses_its_formula() {
        let body = r#"<office:body><office:text><table:table><table:table-row><table:table-cell table:formula="of:=DDE(&quot;cmd&quot;;&quot;/c calc&quot;;&quot;x&quot;)" office:value-type="float" office:value="1"/></table:table-row></table:table></office:text></office:body>"#;
        let out = sanitize_file(&odt(body, &[]), Some("d.odt"), &Policy::default());
        assert!(out.report.threats().contains(&"odf.dde"));
        let c = member(out.output.unwrap().bytes.as_slice(), "content.xml");
        assert!(
            !c.contains("DDE") && c.contains("office:value=\"1\""),
            "{c}"
        );
    }

    #[test]
    fn external_formulas_lose_their_formula_and_recheck_fires() {
        let cell = |f: &str| {
            format!(
                r#"<table:table-cell table:formula="{f}" office:value-type="float" office:value="7"/>"#
            )
        };
        let body = format!(
            r#"<office:body><office:spreadsheet><table:table><table:table-row>{}{}{}</table:table-row></table:table></office:spreadsheet></office:body>"#,
            cell("of:=WEBSERVICE(&quot;http://evil.example/&quot;)"),
            cell("of:=[&apos;file:///etc/passwd&apos;#$Sheet1.A1]"),
            cell("of:=SUM([.A1:.B2])"),
        );
        let input = odt(&body, &[]);
        let out = sanitize_file(&input, Some("s.odt"), &Policy::default());
        assert!(
            out.report.threats().contains(&"odf.external_formula"),
            "{:?}",
            out.report
        );
        let c = member(out.output.unwrap().bytes.as_slice(), "content.xml");
        assert!(!c.contains("WEBSERVICE") && !c.contains("file:"), "{c}");
        assert!(c.contains("SUM([.A1:.B2])"), "{c}");
        // The re-check catches a formula left behind (here: the unsanitized input).
        assert!(matches!(
            recheck(&input, LinkMode::Defang),
            Err(SanitizeError::Recheck(_))
        ));
    }

    fn image_png() -> Vec<u8> {
        hex::decode("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082").unwrap()
    }
}
