#!/usr/bin/env python3
"""Generates the archive and Outlook-container samples in corpus/samples/archives/.

Standard library only; every sample is inert (executables are 8-byte `MZ` stubs, scripts
print nothing harmful). The output is deterministic: run it again and nothing changes.

    python3 corpus/gen/archives.py

Formats Python cannot write directly are built byte by byte here:
- ZIPs with Shift_JIS (CP932) names and no UTF-8 flag, as Windows in Japan writes them;
- ZIPs with overlapping entries and PKWARE ("ZipCrypto") encryption, the PPAP case
  (password "mugai"; Python's zipfile can decrypt it, which checks_archives.py uses);
- TNEF (winmail.dat), following [MS-OXTNEF];
- Outlook .msg, a minimal compound file (CFB v3, [MS-CFB]) following [MS-OXMSG].
"""

import gzip
import io
import random
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "samples" / "archives"
EXE = b"MZ\x90\x00\x03\x00\x00\x00"  # inert PE stub: the magic is all the sniffer needs
TXT_JA = "お世話になっております。見積書を添付いたします。①㈱\n".encode("utf-8")
FIXED_TIME = (2024, 4, 1, 9, 30, 0)


# --- raw ZIP writing -------------------------------------------------------------------------

def dos_time(t=FIXED_TIME):
    y, mo, d, h, mi, s = t
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


class ZipCrypto:
    """Traditional PKWARE encryption (APPNOTE 6.1), for the PPAP sample only."""

    def __init__(self, password):
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for c in password:
            self._update(c)

    @staticmethod
    def _crc(crc, b):
        return zlib.crc32(bytes([b]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def _update(self, c):
        k0, k1, k2 = self.k
        k0 = self._crc(k0, c)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = self._crc(k2, k1 >> 24)
        self.k = [k0, k1, k2]

    def encrypt(self, data):
        out = bytearray()
        for c in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(c ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self._update(c)
        return bytes(out)


def raw_zip(entries):
    """entries: dicts with name (bytes), data, and optional flags, mode, deflate, password,
    same_as (index of an earlier entry whose local header this central entry reuses)."""
    rng = random.Random(42)
    out = bytearray()
    offsets, metas = [], []
    t, d = dos_time()
    for e in entries:
        if e.get("same_as") is not None:
            offsets.append(offsets[e["same_as"]])
            metas.append(metas[e["same_as"]])
            continue
        data = e.get("data", b"")
        crc = zlib.crc32(data)
        method = 8 if e.get("deflate") else 0
        body = data
        if method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            body = c.compress(data) + c.flush()
        flags = e.get("flags", 0)
        if e.get("password"):
            flags |= 1
            z = ZipCrypto(e["password"])
            header = bytes(rng.randrange(256) for _ in range(11)) + bytes([crc >> 24])
            body = z.encrypt(header) + z.encrypt(body)
        offsets.append(len(out))
        metas.append((flags, method, crc, len(body), len(data)))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, t, d, crc,
                           len(body), len(data), len(e["name"]), 0)
        out += e["name"] + body
    cd = len(out)
    for e, off, (flags, method, crc, csize, usize) in zip(entries, offsets, metas):
        mode = e.get("mode")
        made_by = 0x0314 if mode is not None else 20
        ext = (mode << 16) if mode is not None else 0
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, made_by, 20, flags, method, t, d,
                           crc, csize, usize, len(e["name"]), 0, 0, 0, 0, ext, off)
        out += e["name"]
    n = len(entries)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(out) - cd, cd, 0)
    return bytes(out)


def py_zip(members):
    """A normal deflated ZIP written by Python's zipfile (fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, FIXED_TIME), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# --- TNEF ------------------------------------------------------------------------------------

def tnef_attr(level, tag, data):
    return (struct.pack("<BII", level, tag, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def mapi_props(props):
    """props: (type, id, bytes) with type 0x001F/0x001E/0x0102 (counted) or 0x0003 (long)."""
    out = struct.pack("<I", len(props))
    for ty, pid, data in props:
        out += struct.pack("<HH", ty, pid)
        if ty == 0x0003:
            out += data
            continue
        out += struct.pack("<II", 1, len(data)) + data + b"\0" * (-len(data) % 4)
    return out


def utf16z(s):
    return (s + "\0").encode("utf-16-le")


def winmail():
    t = struct.pack("<IH", 0x223E9F78, 0x4D55)
    t += tnef_attr(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    t += tnef_attr(1, 0x00069007, struct.pack("<II", 932, 0))  # attOemCodepage
    body = "各位\r\nお世話になっております。会議資料を添付します。\r\n詳細: https://example.lg.jp/kaigi\r\n"
    t += tnef_attr(1, 0x00069003, mapi_props([
        (0x001F, 0x0037, utf16z("会議資料の送付")),
        (0x001F, 0x1000, utf16z(body)),
        (0x0003, 0x3FDE, struct.pack("<I", 932)),
    ]))
    # Attachment 1: a text file whose legacy title is Shift_JIS.
    t += tnef_attr(2, 0x00069002, struct.pack("<HIH", 1, 0xFFFFFFFF, 0))
    t += tnef_attr(2, 0x00018010, "議事録.txt\0".encode("cp932"))
    t += tnef_attr(2, 0x0006800F, "第1回 議事録\n出席者: 山田、髙橋\n".encode("utf-8"))
    # Attachment 2: an executable with a long file name in MAPI properties.
    t += tnef_attr(2, 0x00069002, struct.pack("<HIH", 1, 0xFFFFFFFF, 0))
    t += tnef_attr(2, 0x00018010, b"INVOIC~1.EXE\0")
    t += tnef_attr(2, 0x0006800F, EXE)
    t += tnef_attr(2, 0x00069005, mapi_props([(0x001F, 0x3707, utf16z("invoice.pdf.exe"))]))
    return t


# --- Outlook .msg (CFB v3) -------------------------------------------------------------------

def cfb(tree):
    """A minimal compound file. `tree` maps names to bytes (streams, each < 4096 bytes, so they
    live in the mini stream) or to dicts (storages). Siblings are written as a chain of black
    nodes in CFB name order, which readers accept (only the order is required)."""
    entries = []  # [name, type, child, right, start, size]

    def key(n):
        return (len(n.encode("utf-16-le")), n.upper())

    ministream = bytearray()
    minifat = []

    def add_stream(data):
        start = len(ministream) // 64
        nsec = max(1, (len(data) + 63) // 64) if data else 0
        ministream.extend(data + b"\0" * (-len(data) % 64))
        for i in range(nsec):
            minifat.append(start + i + 1 if i + 1 < nsec else 0xFFFFFFFE)
        return (start if data else 0xFFFFFFFE), len(data)

    def add_children(d):
        ids = []
        for name in sorted(d, key=key):
            idx = len(entries)
            entries.append([name, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0])
            ids.append(idx)
            v = d[name]
            if isinstance(v, dict):
                entries[idx][1] = 1
                entries[idx][2] = add_children(v)
            else:
                entries[idx][1] = 2
                entries[idx][4], entries[idx][5] = add_stream(v)
        for a, b in zip(ids, ids[1:]):
            entries[a][3] = b
        return ids[0] if ids else 0xFFFFFFFF

    entries.append(["Root Entry", 5, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0])
    entries[0][2] = add_children(tree)

    def dir_entry(e):
        name, ty, child, right, start, size = e
        n = name.encode("utf-16-le") + b"\0\0"
        return (n.ljust(64, b"\0") + struct.pack("<HBBIII", len(n), ty, 1, 0xFFFFFFFF, right,
                                                  child)
                + b"\0" * 16 + b"\0" * 4 + b"\0" * 16 + struct.pack("<IQ", start, size))

    while len(entries) % 4:
        entries.append(None)
    dirdata = b"".join(dir_entry(e) if e else
                       (b"\0" * 64 + struct.pack("<HBBIII", 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF,
                                                 0xFFFFFFFF) + b"\0" * 36 + struct.pack("<IQ", 0, 0))
                       for e in entries)
    minifat_data = b"".join(struct.pack("<I", x) for x in minifat)
    minifat_data += b"\xff" * (-len(minifat_data) % 512)
    ms = bytes(ministream) + b"\0" * (-len(ministream) % 512)
    # Sector layout: FAT (1 sector), directory, minifat, mini stream.
    n_dir, n_mf, n_ms = len(dirdata) // 512, len(minifat_data) // 512, len(ms) // 512
    fat = [0xFFFFFFFD]  # the FAT sector itself
    spans = []
    for n in (n_dir, n_mf, n_ms):
        first = len(fat)
        fat += [first + i + 1 if i + 1 < n else 0xFFFFFFFE for i in range(n)]
        spans.append(first if n else 0xFFFFFFFE)
    assert len(fat) <= 128, "sample too large for one FAT sector"
    fat += [0xFFFFFFFF] * (128 - len(fat))
    dir_start, mf_start, ms_start = spans
    # The root entry owns the mini stream.
    dirdata = bytearray(dirdata)
    struct.pack_into("<IQ", dirdata, 116, ms_start, len(ministream))
    header = (bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 16
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
              + struct.pack("<IIIIIIIII", 0, 1, dir_start, 0, 4096, mf_start,
                            n_mf, 0xFFFFFFFE, 0)
              + struct.pack("<I", 0) + b"\xff" * (4 * 108))
    assert len(header) == 512
    return (header + b"".join(struct.pack("<I", x) for x in fat) + bytes(dirdata)
            + minifat_data + ms)


def outlook_msg():
    props = bytearray(32)
    props += struct.pack("<IIII", 0x3FFD0003, 0, 932, 0)
    body = "各位\r\n来週の打合せについてご連絡します。\r\n地図: http://map.example.jp/?q=1\r\n"
    return cfb({
        "__properties_version1.0": bytes(props),
        "__substg1.0_0037001E": "打合せのご案内".encode("cp932"),
        "__substg1.0_1000001E": body.encode("cp932"),
        "__attach_version1.0_#00000000": {
            "__properties_version1.0": bytes(8),
            "__substg1.0_3707001F": "案内.txt".encode("utf-16-le"),
            "__substg1.0_37010102": "日時: 4月1日 10時\n場所: 本庁舎3階\n".encode("utf-8"),
        },
        "__attach_version1.0_#00000001": {
            "__properties_version1.0": bytes(8),
            "__substg1.0_3707001F": "update.js".encode("utf-16-le"),
            "__substg1.0_37010102": b"WScript.Echo('inert sample');\n",
        },
        "__nameid_version1.0": {},
    })


# --- the samples -----------------------------------------------------------------------------

def tar_hostile():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        def add(name, data=b"", **kw):
            i = tarfile.TarInfo(name)
            i.size = len(data)
            i.mtime = 1711931400
            for k, v in kw.items():
                setattr(i, k, v)
            t.addfile(i, io.BytesIO(data) if data else None)
        add("docs/readme.txt", TXT_JA, mode=0o644)
        add("docs/link-to-passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("docs/hardlink", type=tarfile.LNKTYPE, linkname="docs/readme.txt")
        add("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("dev/pipe", type=tarfile.FIFOTYPE, mode=0o644)
        add("bin/suid.txt", b"setuid text\n", mode=0o4755)
        add("../../escape.txt", b"outside\n", mode=0o644)
    return buf.getvalue()


def tgz_script():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, mode in [("install.sh", b"#!/bin/sh\necho 'inert sample'\n", 0o755),
                                 ("notes.txt", TXT_JA, 0o644)]:
            i = tarfile.TarInfo(name)
            i.size, i.mode, i.mtime = len(data), mode, 1711931400
            t.addfile(i, io.BytesIO(data))
    raw = buf.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="bundle.tar", mode="wb", fileobj=gz, mtime=1711931400) as g:
        g.write(raw)
    return gz.getvalue()


def nested(depth):
    data = py_zip([("core.txt", b"the innermost file\n")])
    for i in range(depth - 1):
        data = py_zip([(f"level{depth - 1 - i}.zip", data)])
    return data


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    samples = {
        "zip_exe_and_txt.zip": py_zip([("readme.txt", TXT_JA), ("setup.exe", EXE)]),
        "zip_traversal.zip": py_zip([("../../evil.txt", b"traversal\n"),
                                     ("/etc/x", b"absolute\n"),
                                     ("ok/fine.txt", b"fine\n")]),
        "zip_cp932_names.zip": raw_zip([
            {"name": "見積書/請求書①.txt".encode("cp932"), "data": TXT_JA, "deflate": True},
            {"name": "報告㈱.txt".encode("cp932"), "data": TXT_JA, "deflate": True},
        ]),
        "zip_nested_12.zip": nested(12),
        "zip_bomb_ratio.zip": raw_zip([{"name": b"zeros.txt", "data": b"\0" * (50 << 20),
                                        "deflate": True}]),
        "zip_overlap.zip": raw_zip([{"name": b"a.txt", "data": b"x" * 1000},
                                    {"name": b"b.txt", "same_as": 0},
                                    {"name": b"c.txt", "same_as": 0}]),
        "zip_ppap.zip": raw_zip([{"name": "見積書.txt".encode("utf-8"), "flags": 0x800,
                                  "data": TXT_JA, "deflate": True, "password": b"mugai"}]),
        "zip_symlink.zip": raw_zip([{"name": b"passwd", "data": b"/etc/passwd",
                                     "mode": 0o120777},
                                    {"name": b"readme.txt", "data": TXT_JA, "mode": 0o100644}]),
        "tar_hostile.tar": tar_hostile(),
        "tgz_script.tar.gz": tgz_script(),
        "archive_7z_stub.7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + b"inert 7z stub\n",
        "winmail.dat": winmail(),
        "outlook_meeting.msg": outlook_msg(),
    }
    for name, data in samples.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
