#!/usr/bin/env python3
"""Independent checks of sanitized archives, with Python's own zipfile, tarfile and gzip.

verify.py imports `check(sample, output_path, report)` for samples whose manifest entry lists
"archives" in `checks`. It returns a list of problems (empty: the output passed) and never
trusts Mugai's report for what it checks:

- every ZIP member: a normalised relative name (no `..`, no leading `/`, no `\\`, no drive
  letter, no control or bidi characters), not encrypted, UTF-8 flag set when the name is not
  ASCII, a regular file (no symlink/device mode bits), no setuid/setgid bits;
- every TAR member (also inside .tar.gz): a regular file with mode 0644, no link target;
- the members each sample must and must not contain (EXPECT below), and text that must be in
  a member (the body.txt of Outlook containers). Names may have gained `.txt` when a member was
  converted to text.

Run by hand on a folder of outputs (`NAME.out` next to `NAME.report.json`, as the sanitizer-core
corpus test writes them with MUGAI_CORPUS_OUT=DIR):

    python3 corpus/checks_archives.py DIR
"""

import gzip
import io
import json
import stat
import sys
import tarfile
import tomllib
import unicodedata
import zipfile
from pathlib import Path

EXPECT = {
    "zip_exe_and_txt.zip": {"present": ["readme.txt"], "absent": ["setup.exe"]},
    "zip_traversal.zip": {"present": ["evil.txt", "etc/x", "ok/fine.txt"]},
    "zip_cp932_names.zip": {"present": ["見積書/請求書①.txt", "報告㈱.txt"]},
    "zip_symlink.zip": {"present": ["readme.txt"], "absent": ["passwd"]},
    "tar_hostile.tar": {
        "present": ["docs/readme.txt", "bin/suid.txt", "escape.txt"],
        "absent": ["docs/link-to-passwd", "docs/hardlink", "dev/null", "dev/pipe"],
    },
    "tgz_script.tar.gz": {"present": ["notes.txt"], "absent": ["install.sh"]},
    "winmail.dat": {
        "present": ["body.txt", "議事録.txt"],
        "absent": ["invoice.pdf.exe", "INVOIC~1.EXE"],
        "contains": {"body.txt": ["会議資料の送付", "お世話になっております",
                                  "hxxps://example[.]lg[.]jp/kaigi"]},
    },
    "outlook_meeting.msg": {
        "present": ["body.txt", "案内.txt"],
        "absent": ["update.js"],
        "contains": {"body.txt": ["打合せのご案内", "来週の打合せ"],
                     "案内.txt": ["本庁舎3階"]},
    },
}


def bad_name(name):
    """Why `name` is not a safe member path, or None."""
    if not name or name.startswith("/") or "\\" in name:
        return "absolute or backslash path"
    if len(name) > 1 and name[1] == ":":
        return "drive letter"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "empty, . or .. component"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf"):
            return f"control/format character U+{ord(ch):04X}"
    return None


def zip_members(data, problems):
    members = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            name = info.filename
            why = bad_name(name.rstrip("/"))
            if why:
                problems.append(f"zip member {name!r}: {why}")
            if info.flag_bits & 1:
                problems.append(f"zip member {name!r} is encrypted")
            if not name.isascii() and not info.flag_bits & 0x800:
                problems.append(f"zip member {name!r}: non-ASCII name without UTF-8 flag")
            mode = info.external_attr >> 16
            if mode:
                if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                    problems.append(f"zip member {name!r}: not a regular file ({oct(mode)})")
                if mode & (stat.S_ISUID | stat.S_ISGID):
                    problems.append(f"zip member {name!r}: setuid/setgid")
            if not info.is_dir():
                members[name] = z.read(info)
    return members


def tar_members(data, problems):
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            why = bad_name(m.name)
            if why:
                problems.append(f"tar member {m.name!r}: {why}")
            if not m.isreg() or m.linkname:
                problems.append(f"tar member {m.name!r}: not a regular file")
            if m.mode != 0o644:
                problems.append(f"tar member {m.name!r}: mode {oct(m.mode)}")
            f = t.extractfile(m)
            members[m.name] = f.read() if f else b""
    return members


def members_of(data, problems):
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
            inner = g.read()
        return members_of(inner, problems)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return zip_members(data, problems)
    if data[257:262] == b"ustar" or (data and len(data) % 512 == 0 and not any(data)):
        return tar_members(data, problems)  # (an empty TAR is only its zero end blocks)
    problems.append("output is not a ZIP, TAR or gzip")
    return {}


def find(members, name):
    for candidate in (name, name + ".txt"):
        if candidate in members:
            return candidate
    return None


def check(sample, output_path, report):
    """Problems with `output_path` (the sanitized output of `sample`), [] when it passes."""
    problems = []
    data = Path(output_path).read_bytes()
    members = members_of(data, problems)
    expect = EXPECT.get(Path(sample["file"]).name, {})
    for name in expect.get("present", []):
        if find(members, name) is None:
            problems.append(f"expected member {name!r} missing (have {sorted(members)})")
    for name in expect.get("absent", []):
        if find(members, name) is not None:
            problems.append(f"member {name!r} must have been removed")
    for name, needles in expect.get("contains", {}).items():
        got = find(members, name)
        text = members.get(got, b"").decode("utf-8", "replace") if got else ""
        for n in needles:
            if n not in text:
                problems.append(f"{name!r} does not contain {n!r}")
    return problems


def main(out_dir):
    root = Path(__file__).resolve().parent
    manifest = tomllib.loads((root / "manifest" / "archives.toml").read_text())
    failed = 0
    for sample in manifest["sample"]:
        if "archives" not in sample.get("checks", []):
            continue
        name = Path(sample["file"]).name
        out = Path(out_dir) / f"{name}.out"
        rep = Path(out_dir) / f"{name}.report.json"
        if not out.exists():
            print(f"FAIL {name}: no output")
            failed += 1
            continue
        report = json.loads(rep.read_text()) if rep.exists() else {}
        problems = check(sample, out, report)
        print(("FAIL " if problems else "ok   ") + name)
        for p in problems:
            print("     " + p)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
