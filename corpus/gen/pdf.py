#!/usr/bin/env python3
"""Generate the PDF corpus samples into corpus/samples/pdf/.

Plain Python writing PDF syntax: no dependencies. qpdf (Debian package) is used only for two
samples that need a real implementation: object streams and RC4/AES encryption. Every sample is
inert: the "JavaScript" is `app.alert`, URLs point to example.invalid, embedded files are text.

Run from the repository root:  python3 corpus/gen/pdf.py
qpdf runs with --static-id/--static-aes-iv so regeneration is reproducible, except the AES-256
sample (its key-derivation salts are random by design).
"""

import os
import shutil
import subprocess
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "samples", "pdf")


def build(objects, root=1, extra_trailer=b"", header=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"):
    """objects: list of bytes bodies (object i+1). Returns a complete PDF with a valid xref."""
    out = bytearray(header)
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, extra_trailer, xref)
    return bytes(out)


def stream(data, extra=b"", compress=False):
    if compress:
        data = zlib.compress(data)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def text_content(lines, font=b"F1", size=14):
    ops = [b"BT /%s %d Tf 72 720 Td %d TL" % (font, size, size + 6)]
    for line in lines:
        ops.append(b"(%s) Tj T*" % line)
    ops.append(b"ET")
    return b"\n".join(ops)


HELV = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def simple_doc(page_extra=b"", catalog_extra=b"", extra_objects=(), lines=None, pages=1):
    """Catalog 1, Pages 2, font 3, then per page: page, content; then extra objects."""
    lines = lines or [b"Mugai test document", b"Nothing here is active."]
    n_extra_start = 4 + 2 * pages  # first object number after the pages
    objs = [None, None, HELV]
    kids = []
    for p in range(pages):
        page_id = 4 + 2 * p
        kids.append(b"%d 0 R" % page_id)
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R %s>>" % (page_id + 1, page_extra))
        objs.append(stream(text_content(lines + [b"Page %d" % (p + 1)])))
    objs[0] = b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog_extra
    objs[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    objs.extend(extra_objects)
    return objs, n_extra_start


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    first = None

    # A normal multi-page text document.
    objs, _ = simple_doc(pages=3, lines=[b"Quarterly report", b"Invoice total: 12,345 JPY"])
    first = build(objs)
    write("multipage_text.pdf", first)

    # JavaScript run on open, plus a document-level script in the Names tree.
    objs, _ = simple_doc(catalog_extra=b"/OpenAction 6 0 R /Names << /JavaScript 7 0 R >> ")
    objs += [b"<< /Type /Action /S /JavaScript /JS (app.alert\\('mugai test'\\);) >>",
             b"<< /Names [(init) << /S /JavaScript /JS (app.alert\\(1\\);) >>] >>"]
    write("js_openaction.pdf", build(objs))

    # Additional actions on a page (page open runs a script).
    objs, _ = simple_doc(page_extra=b"/AA << /O << /S /JavaScript /JS (app.alert\\(2\\);) >> >> ")
    write("aa_page.pdf", build(objs))

    # A link annotation that launches a program.
    annot = b"<< /Type /Annot /Subtype /Link /Rect [72 700 300 720] /A << /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >> >>"
    objs, _ = simple_doc(page_extra=b"/Annots [6 0 R] ", extra_objects=[annot])
    write("launch.pdf", build(objs))

    # A URI link.
    annot = b"<< /Type /Annot /Subtype /Link /Rect [72 700 300 720] /A << /S /URI /URI (https://example.invalid/login) >> >>"
    objs, _ = simple_doc(page_extra=b"/Annots [6 0 R] ", extra_objects=[annot])
    write("uri_annot.pdf", build(objs))

    # An embedded file, in the Names tree and as a file attachment annotation.
    ef = stream(b"inert attachment text\n", extra=b" /Type /EmbeddedFile")
    fs = b"<< /Type /Filespec /F (note.txt) /UF (note.txt) /EF << /F 6 0 R >> >>"
    annot = b"<< /Type /Annot /Subtype /FileAttachment /Rect [72 600 90 620] /FS 7 0 R /Contents (note) >>"
    objs, _ = simple_doc(page_extra=b"/Annots [8 0 R] ",
                         catalog_extra=b"/Names << /EmbeddedFiles << /Names [(note.txt) 7 0 R] >> >> ",
                         extra_objects=[ef, fs, annot])
    write("embedded_file.pdf", build(objs))

    # Hex-escaped names hiding JavaScript from keyword scanners.
    objs, _ = simple_doc(catalog_extra=b"/#4F#70enAction << /S /J#61vaScript /J#53 (app.alert\\(3\\);) >> ")
    write("hex_name_js.pdf", build(objs))

    # An incremental update that adds JavaScript to a clean file.
    base = build(simple_doc()[0])
    prev_xref = int(base.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    upd = bytearray(base)
    off1 = len(upd)
    upd += b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>\nendobj\n"
    off6 = len(upd)
    upd += b"6 0 obj\n<< /S /JavaScript /JS (app.alert\\(4\\);) >>\nendobj\n"
    xref = len(upd)
    upd += b"xref\n0 2\n0000000000 65535 f \n%010d 00000 n \n6 1\n%010d 00000 n \n" % (off1, off6)
    upd += b"trailer\n<< /Size 7 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (prev_xref, xref)
    write("incremental_js.pdf", bytes(upd))

    # JavaScript hidden inside an object stream (generated by qpdf).
    objs, _ = simple_doc(catalog_extra=b"/OpenAction 6 0 R ",
                         extra_objects=[b"<< /S /JavaScript /JS (app.alert\\(5\\);) >>"])
    tmp = os.path.join(OUT, "_plain.pdf")
    with open(tmp, "wb") as f:
        f.write(build(objs))
    subprocess.run(["qpdf", "--static-id", "--object-streams=generate", "--compress-streams=y", tmp,
                    os.path.join(OUT, "objstm_js.pdf")], check=True)

    # Encrypted with a user password (RC4 128) and (AES-256): blocked.
    with open(tmp, "wb") as f:
        f.write(first)
    subprocess.run(["qpdf", "--static-id", "--static-aes-iv", "--allow-weak-crypto", "--encrypt", "user", "owner", "128", "--use-aes=n", "--", tmp,
                    os.path.join(OUT, "encrypted_rc4.pdf")], check=True)
    subprocess.run(["qpdf", "--static-id", "--static-aes-iv", "--encrypt", "user", "owner", "256", "--", tmp,
                    os.path.join(OUT, "encrypted_aes.pdf")], check=True)
    # Encrypted with an empty user password: opens without one, so it is rasterized.
    subprocess.run(["qpdf", "--static-id", "--static-aes-iv", "--encrypt", "", "owner", "128", "--use-aes=y", "--", tmp,
                    os.path.join(OUT, "encrypted_empty_password.pdf")], check=True)
    os.remove(tmp)

    # 2,000 pages sharing one content stream: over the 1,000-page limit.
    n = 2000
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(n))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> >>" % (kids, n),
            HELV, stream(text_content([b"shared page"]))]
    objs += [b"<</Type/Page/Parent 2 0 R/Contents 4 0 R>>"] * n
    write("pages_2000.pdf", build(objs))

    # A 200 x 200 inch page: rendered at a clamped scale, not 3.5 GB of pixels.
    objs, _ = simple_doc()
    objs[3] = objs[3].replace(b"[0 0 612 792]", b"[0 0 14400 14400]")
    write("huge_page.pdf", build(objs))

    # Japanese text in fonts that are NOT embedded: Adobe-Japan1 CID fonts, one with Shift_JIS
    # codes (90ms-RKSJ-H), one with UTF-16 codes (UniJIS-UCS2-H).
    def cid_font(base, encoding, desc_id):
        return (b"<< /Type /Font /Subtype /Type0 /BaseFont /%s /Encoding /%s /DescendantFonts [<< /Type /Font /Subtype /CIDFontType0 /BaseFont /%s /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 2 >> /FontDescriptor %d 0 R /DW 1000 >>] >>"
                % (base, encoding, base, desc_id))

    def descriptor(base, flags):
        return b"<< /Type /FontDescriptor /FontName /%s /Flags %d /FontBBox [0 -141 1000 859] /ItalicAngle 0 /Ascent 859 /Descent -141 /CapHeight 709 /StemV 80 >>" % (base, flags)

    sjis = "見積書　請求金額は一万二千円です".encode("cp932")
    utf16 = "無害化ゲートウェイの試験".encode("utf-16-be")
    content = (b"BT /F1 28 Tf 72 700 Td <" + sjis.hex().encode() + b"> Tj ET\n"
               b"BT /F2 28 Tf 72 600 Td <" + utf16.hex().encode() + b"> Tj ET\n")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> /Contents 4 0 R >>",
            stream(content),
            cid_font(b"MS-Mincho", b"90ms-RKSJ-H", 7),
            cid_font(b"GothicBBB-Medium", b"UniJIS-UCS2-H", 8),
            descriptor(b"MS-Mincho", 6),
            descriptor(b"GothicBBB-Medium", 4)]
    write("ja_nonembedded.pdf", build(objs))

    # Vertical Japanese (縦書き): the same kind of font with the vertical UniJIS-UCS2-V CMap,
    # two columns read right to left. The text layer must give each column as one line.
    col1 = "縦書きの通知文です".encode("utf-16-be")
    col2 = "二行目も縦に書く".encode("utf-16-be")
    content = (b"BT /F1 24 Tf 500 720 Td <" + col1.hex().encode() + b"> Tj ET\n"
               b"BT /F1 24 Tf 460 720 Td <" + col2.hex().encode() + b"> Tj ET\n")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
            stream(content),
            cid_font(b"GothicBBB-Medium", b"UniJIS-UCS2-V", 6),
            descriptor(b"GothicBBB-Medium", 4)]
    write("ja_vertical.pdf", build(objs))

    # A landscape page by /Rotate 90 with a CropBox: the output page must be 500 x 300 pt.
    objs, _ = simple_doc()
    objs[3] = objs[3].replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 612 792] /CropBox [50 50 350 550] /Rotate 90")
    write("rotated_cropped.pdf", build(objs))

    # Malformed: truncated in the middle, and an xref whose offsets are all wrong.
    write("truncated.pdf", first[: len(first) // 2])
    broken = first.replace(b" 00000 n \n", b" 00000 n \n").split(b"xref\n", 1)
    bad_xref = broken[0] + b"xref\n" + broken[1].replace(b"00000000", b"00000099")
    write("broken_xref.pdf", bad_xref)

    # No page tree: the catalog has no /Pages, the three page objects are orphans. Viewers
    # still show them; both modes rebuild the tree from the page objects, with a warning.
    objs = [b"<< /Type /Catalog >>", HELV]
    for i in range(3):
        objs.append(stream(text_content([b"orphan page %d" % (i + 1)])))
    for i in range(3):
        objs.append(b"<< /Type /Page /MediaBox [0 0 612 792] /Resources << /Font << /F1 2 0 R >> >> "
                    b"/Contents %d 0 R >>" % (3 + i))
    write("no_page_tree.pdf", build(objs))

    # A Flate bomb: 520 MiB of zeros, compressed twice, as a page content stream.
    bomb = zlib.compress(zlib.compress(b"\0" * (520 * 1024 * 1024), 9), 9)
    objs, _ = simple_doc()
    objs[4] = b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>\nstream\n" % len(bomb) + bomb + b"\nendstream"
    write("flate_bomb.pdf", build(objs))


if __name__ == "__main__":
    main()
