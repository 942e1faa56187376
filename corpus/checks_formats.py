#!/usr/bin/env python3
"""Independent checks for outputs of the text, CSV, image, SVG, RTF and calendar sanitizers.

Standard library only: the outputs are re-read with Python's own UTF-8 decoder, `csv` module,
`zlib` and a PNG/JPEG structure walker written here, not with the Rust code that produced them.

verify.py calls ``check(sample, output_path, report)`` for samples whose manifest entry lists
``checks = ["formats"]``; it raises ``AssertionError`` listing every problem (``problems()``
returns the same list without raising). Stand-alone use on a directory of outputs written by
``MUGAI_DUMP_DIR=dir cargo test -p sanitizer-core corpus_tests``:

    python3 corpus/checks_formats.py DIR
"""

import csv
import io
import json
import os
import re
import struct
import sys
import zlib

INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u061c\ufeff\u180e]")
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
NUMBER = re.compile(r"^ *[+-]?(\d+(,\d+)*)?(\.\d+)?([eE][+-]?\d+)? *$")
PNG_ALLOWED = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"}


def check_text(data, csv_file):
    out = []
    if csv_file:
        if not data.startswith(b"\xef\xbb\xbf"):
            out.append("CSV output has no UTF-8 BOM (Excel would read it as CP932)")
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return ["output is not valid UTF-8: %s" % e]
    if INVISIBLE.search(text):
        out.append("bidi/zero-width control left in the text")
    if CONTROL.search(text):
        out.append("control character left in the text")
    if re.search(r"\r(?!\n)|(?<!\r)\n", text):
        out.append("line ends are not all CRLF")
    if csv_file:
        for row in csv.reader(io.StringIO(text, newline="")):
            for cell in row:
                lead = cell.lstrip(" ")
                if (cell[:1] in ("\t", "\r") or lead[:1] in ("=", "+", "-", "@")) and not NUMBER.match(cell):
                    out.append("formula-looking cell survived: %r" % cell)
    return out


def check_png(data):
    out = []
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ["not a PNG"]
    pos, idat, ihdr = 8, b"", None
    while True:
        if pos + 8 > len(data):
            return out + ["PNG ends without IEND"]
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            out.append("bad CRC in %r" % kind)
        if kind not in PNG_ALLOWED:
            out.append("ancillary chunk %r survived" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
        if kind == b"IEND":
            break
    if pos != len(data):
        out.append("%d bytes after IEND" % (len(data) - pos))
    if ihdr:
        w, h, depth, color, _, _, interlace = ihdr
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 0)
        if interlace == 0 and channels:
            row = (w * channels * depth + 7) // 8
            raw = zlib.decompress(idat)
            if len(raw) != h * (row + 1):
                out.append("IDAT holds %d bytes, expected %d" % (len(raw), h * (row + 1)))
    return out


def check_jpeg(data):
    out = []
    if not data.startswith(b"\xff\xd8"):
        return ["not a JPEG"]
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return out + ["lost sync at %d" % pos]
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        seg = data[pos + 4:pos + 2 + length]
        if marker == 0xFE:
            out.append("JPEG comment survived")
        if 0xE1 <= marker <= 0xEF and marker != 0xEE:
            out.append("APP%d segment survived (%r)" % (marker - 0xE0, seg[:12]))
        pos += 2 + length
        if marker == 0xDA:
            # Scan data to the EOI at the very end (our encoder writes one baseline scan).
            end = data.rfind(b"\xff\xd9")
            if end + 2 != len(data):
                out.append("data after EOI")
            break
    return out


def problems(sample, output_path, report):
    """Every problem found in one output (empty list: fine)."""
    if output_path is None:
        return []
    with open(output_path, "rb") as f:
        data = f.read()
    # The verifier may write the output under a name of its own; the report names the real one.
    name = str(((report or {}).get("output") or {}).get("name") or output_path).lower()
    if name.endswith((".csv", ".tsv")):
        return check_text(data, True)
    if name.endswith((".txt", ".log", ".md")):
        return check_text(data, False)
    if data.startswith(b"\x89PNG"):
        return check_png(data)
    if data.startswith(b"\xff\xd8"):
        return check_jpeg(data)
    return ["output of unexpected type: %r" % data[:8]]


def check(sample, output_path, report):
    found = problems(sample, output_path, report)
    if found:
        raise AssertionError("; ".join(found))


if __name__ == "__main__":
    directory = sys.argv[1]
    failed = 0
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".report.json"):
            continue
        path = os.path.join(directory, entry)
        with open(path + ".report.json") as f:
            report = json.load(f)
        found = problems({}, path, report)
        print("%-32s %s" % (entry, "ok" if not found else "; ".join(found)))
        failed += bool(found)
    sys.exit(1 if failed else 0)
