"""Independent checks of Office outputs (OOXML, ODF), Python standard library only.

verify.py calls `check(sample, output_path, report)` for every office sample that has an output;
it returns a list of problems (empty: fine). Nothing here shares code with the Rust sanitizer.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

EXTRA_KEYS = ("text_contains",)

REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
BAD_OOXML_NAMES = ("vbaproject", "vbadata", "activex", "embeddings/", "oleobject", "customui",
                   "externallink", ".bin")
SAFE_LINK_PREFIXES = ("hxxp:", "hxxps:", "fxp:", "mailto:", "tel:", "about:blank")


def _xml(data: bytes, what: str, errs: list[str]):
    if b"<!DOCTYPE" in data:
        errs.append(f"{what} has a DTD")
        return None
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        errs.append(f"{what} is not well-formed XML: {e}")
        return None


def check_ooxml(zf: zipfile.ZipFile, errs: list[str]) -> None:
    names = zf.namelist()
    if names[:1] != ["[Content_Types].xml"]:
        errs.append("[Content_Types].xml is not the first member")
    types = _xml(zf.read("[Content_Types].xml"), "[Content_Types].xml", errs) if names else None
    defaults, overrides = {}, {}
    if types is not None:
        for el in types:
            if el.tag == CT_NS + "Default":
                defaults[el.get("Extension", "").lower()] = el.get("ContentType", "")
            elif el.tag == CT_NS + "Override":
                overrides[el.get("PartName", "").lstrip("/").lower()] = el.get("ContentType", "")
    for ct in list(defaults.values()) + list(overrides.values()):
        if "macroenabled" in ct.lower() or "vbaproject" in ct.lower():
            errs.append(f"content type {ct} survived")
    for n in names:
        low = n.lower()
        if n == "[Content_Types].xml":
            continue
        if any(b in low for b in BAD_OOXML_NAMES):
            errs.append(f"member {n} survived")
        if low not in overrides and low.rsplit(".", 1)[-1] not in defaults:
            errs.append(f"member {n} has no content type")
        if low.endswith(".rels"):
            root = _xml(zf.read(n), n, errs)
            for rel in [] if root is None else root.iter(REL_NS + "Relationship"):
                target, typ = rel.get("Target", ""), rel.get("Type", "")
                if rel.get("TargetMode") == "External":
                    if not typ.endswith("/hyperlink"):
                        errs.append(f"external {typ.rsplit('/', 1)[-1]} relationship in {n}")
                    elif not target.lower().startswith(SAFE_LINK_PREFIXES):
                        errs.append(f"hyperlink target {target!r} is not defanged")
                elif typ.rsplit("/", 1)[-1] in ("vbaProject", "oleObject", "control", "attachedTemplate",
                                                 "externalLink", "extensibility", "package"):
                    errs.append(f"{typ} relationship in {n}")
        elif low.endswith(".xml"):
            data = zf.read(n)
            root = _xml(data, n, errs)
            text = data.decode("utf-8", "replace")
            for m in re.finditer(r"<w:instrText[^>]*>([^<]*)<", text):
                if m.group(1).strip().upper().startswith("DDE"):
                    errs.append(f"DDE field code in {n}")
            if re.search(r'w:instr="\s*DDE', text, re.I):
                errs.append(f"DDE fldSimple in {n}")
            if re.search(r"<f>[^<]*\|", text):
                errs.append(f"DDE formula in {n}")
            errs.extend(formula_problems(n, text))
            errs.extend(field_problems(n, text))
    if root_main := overrides.get("word/document.xml") or overrides.get("xl/workbook.xml") or \
            overrides.get("ppt/presentation.xml"):
        if "macroEnabled" in root_main:
            errs.append("main part is still macro-enabled")


# Functions that reach outside the workbook, and an external workbook reference `[1]Sheet!A1`
# (not a structured reference `Table1[Col]`), or a quoted name with a path in it.
OUTSIDE_FUNCS = re.compile(r"(?<![A-Za-z0-9_.])(?:_xlfn\.|_xlws\.|of:)?(DDE|DDEAUTO|WEBSERVICE|FILTERXML|CALL|"
                           r"REGISTER|REGISTER\.ID|EXEC|RTD)\s*\(", re.I)
EXTERNAL_REF = re.compile(r"(?:^|[^A-Za-z0-9_.\]\[])\[[1-9][0-9]*\]|'[^']*[\\/:\[][^']*'!")
AUTO_NAME = re.compile(r"^(?:_xlnm\.|excel_builtin_)?auto_(?:open|close|activate|deactivate)", re.I)


def _strip_strings(formula: str) -> str:
    return re.sub(r'"(?:[^"]|"")*"', '""', formula)


def formula_problems(name: str, text: str) -> list[str]:
    """Cell formulas and defined names in a delivered workbook part that reach outside it."""
    import html
    errs = []
    for tag in ("f", "definedName"):
        for m in re.finditer(rf"<{tag}(\s[^>]*)?>([^<]*)</{tag}>", text):
            formula = _strip_strings(html.unescape(m.group(2)))
            if OUTSIDE_FUNCS.search(formula) or EXTERNAL_REF.search(formula) or "|" in formula:
                errs.append(f"formula {m.group(2)[:60]!r} reaching outside the workbook in {name}")
            attrs = m.group(1) or ""
            nm = re.search(r'\bname="([^"]*)"', attrs)
            if tag == "definedName" and nm and AUTO_NAME.match(nm.group(1)):
                errs.append(f"auto-run defined name {nm.group(1)!r} in {name}")
    return errs


LINK_FIELDS = ("HYPERLINK", "INCLUDEPICTURE", "INCLUDETEXT", "INCLUDE", "LINK", "IMPORT", "DDE", "DDEAUTO")


def field_instructions(text: str) -> list[str]:
    """Every Word field instruction: complex fields (instrText pieces between a begin and its
    separate/end, joined) and simple fields (w:fldSimple/@w:instr)."""
    import html
    out, stack = [], []
    token = re.compile(r'<w:fldChar\b[^>]*w:fldCharType="(begin|separate|end)"[^>]*/?>'
                       r'|<w:instrText\b[^>]*>([^<]*)</w:instrText>')
    for m in token.finditer(text):
        kind, piece = m.group(1), m.group(2)
        if kind == "begin":
            stack.append([len(out), True])
            out.append("")
        elif kind == "separate" and stack:
            stack[-1][1] = False
        elif kind == "end" and stack:
            stack.pop()
        elif piece is not None and stack and stack[-1][1]:
            out[stack[-1][0]] += html.unescape(piece)
    out += [html.unescape(i) for i in re.findall(r'<w:fldSimple\b[^>]*w:instr="([^"]*)"', text)]
    return out


def field_problems(name: str, text: str) -> list[str]:
    errs = []
    for instr in field_instructions(text):
        words = instr.split()
        kind = words[0].upper() if words else ""
        if kind not in LINK_FIELDS:
            continue
        if kind != "HYPERLINK":
            errs.append(f"{kind} field {instr[:60]!r} in {name}")
            continue
        target = re.search(r'HYPERLINK\s+(?:"([^"]*)"|(\S+))', instr, re.I)
        t = (target.group(1) or target.group(2) or "") if target else ""
        if t and not t.startswith("\\l") and not t.lower().startswith(SAFE_LINK_PREFIXES + ("[link removed]",)):
            errs.append(f"live HYPERLINK field target {t[:60]!r} in {name}")
    return errs


def check_text(sample: dict, output_path: Path, errs: list[str]) -> None:
    """An Office XML document reduced to text: its text survives, no markup or data does."""
    text = output_path.read_bytes().decode("utf-8-sig", "replace")
    for bad in ("<w:", "<?xml", "binData", "ss:Formula", "mso-application", "<pkg:"):
        if bad in text:
            errs.append(f"{bad!r} left in the text output")
    for want in sample.get("text_contains", []):
        if want not in text:
            errs.append(f"text {want!r} lost")


def check_odf(zf: zipfile.ZipFile, errs: list[str]) -> None:
    infos = zf.infolist()
    if not infos or infos[0].filename != "mimetype" or infos[0].compress_type != zipfile.ZIP_STORED:
        errs.append("mimetype is not the first, stored member")
    names = [i.filename for i in infos]
    for n in names:
        if n.startswith(("Basic/", "Scripts/", "ObjectReplacements/")) or re.match(r"Object \d+/", n):
            errs.append(f"member {n} survived")
    manifest = _xml(zf.read("META-INF/manifest.xml"), "manifest.xml", errs) \
        if "META-INF/manifest.xml" in names else None
    if manifest is None:
        errs.append("no readable META-INF/manifest.xml")
    else:
        ns = "{urn:oasis:names:tc:opendocument:xmlns:manifest:1.0}"
        listed = {e.get(ns + "full-path") for e in manifest.iter(ns + "file-entry")} - {"/"}
        present = set(names) - {"mimetype", "META-INF/manifest.xml"}
        if listed != present:
            errs.append(f"manifest lists {sorted(listed ^ present)} inconsistently")
    for n in ("content.xml", "styles.xml", "settings.xml"):
        if n not in names:
            continue
        data = zf.read(n).decode("utf-8", "replace")
        _xml(data.encode(), n, errs)
        for bad in (":event-listener ", "<draw:object", "<draw:applet", "<draw:plugin", "vnd.sun.star.script",
                    "macro:"):
            if bad in data:
                errs.append(f"{bad} in {n}")
        for href in re.findall(r'xlink:href="([^"]*)"', data):
            if "://" in href and not href.lower().startswith(SAFE_LINK_PREFIXES):
                errs.append(f"live external reference {href!r} in {n}")


def check(sample: dict, output_path: Path, report: dict) -> list[str]:
    errs: list[str] = []
    if (report.get("output") or {}).get("kind") == "text":
        check_text(sample, output_path, errs)
        return errs
    try:
        with zipfile.ZipFile(output_path) as zf:
            names = zf.namelist()
            if "[Content_Types].xml" in names:
                check_ooxml(zf, errs)
            elif "mimetype" in names:
                check_odf(zf, errs)
            else:
                errs.append("output is neither OOXML nor ODF")
            xml_text = "".join(zf.read(n).decode("utf-8", "replace") for n in names
                               if n.endswith((".xml", ".rels")))
    except zipfile.BadZipFile as e:
        return [f"output is not a ZIP package: {e}"]
    import html
    plain = html.unescape(xml_text)
    for want in sample.get("text_contains", []):
        if want not in plain:
            errs.append(f"text {want!r} lost")
    return errs
