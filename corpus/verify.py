#!/usr/bin/env python3
"""Independent verifier for the Mugai corpus.

Runs the `mugai` binary on every sample listed in corpus/manifest/*.toml and checks the result
with code that shares nothing with the Rust sanitizer: Python's email package, zipfile, hashlib,
and the external tools qpdf, pdftoppm and soffice. Python 3.11 standard library only.

    python3 corpus/verify.py --mugai target/debug/mugai [--only SUBSTR] [--keep DIR] [MANIFEST...]

Prints one line per sample (`ok NAME` or `FAIL NAME: reason; reason`), then `N passed, M failed`,
and exits 1 when anything failed (or nothing ran), 2 on a usage error.

Per-area checks: when corpus/checks_<area>.py exists (area = the manifest's file stem), its
`check(sample, output_path, report) -> list[str]` runs on every sample of that manifest that has
an output; a check name `X` in a sample's `checks` that is not built in runs `checks_X.check`.
The manifest format is described in corpus/README.md.
"""

from __future__ import annotations

import argparse
import difflib
import email
import email.policy
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback
import zipfile
from pathlib import Path
from types import ModuleType

CORPUS = Path(__file__).resolve().parent
TIMEOUT = int(os.environ.get("MUGAI_VERIFY_TIMEOUT", "300"))

# --- the contract (CONTRACT.md), restated independently ---------------------------------------

VERDICTS = {"clean", "sanitized", "blocked"}
ACTIONS = {"kept", "rebuilt", "rasterized", "converted_to_text", "converted", "reencoded", "removed"}
# Actions that do not change meaning: a clean verdict may only carry these.
NEUTRAL_ACTIONS = {"kept", "rebuilt", "reencoded"}
KINDS = {
    "mail", "text", "html", "pdf", "ooxml", "odf", "ole2", "rtf", "svg", "image", "csv", "zip",
    "tar", "gzip", "tnef", "msg", "calendar", "executable", "script", "archive_unsupported",
    "unsupported", "unknown",
}
THREAT_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

SAMPLE_KEYS = {
    "file", "mode", "expect", "threats", "output_kind", "output_name", "must_not_contain",
    "must_contain", "subject_contains", "attachments", "checks", "note", "quarantine", "policy",
}
BUILTIN_CHECKS = {"pymail", "zipfile", "qpdf", "pdftoppm", "soffice"}

# What a sanitized mail may contain. Everything else (text/html, SVG, octet-stream, executables,
# signatures, encrypted blobs, legacy Office, calendars) must have been converted or removed.
MAIL_CONTAINER_TYPES = {"multipart/mixed", "multipart/alternative", "message/rfc822"}
MAIL_LEAF_TYPES = {
    "text/plain",
    "text/csv",
    "image/png",
    "image/jpeg",
    "application/pdf",
    "application/zip",
    "application/x-tar",
    "application/gzip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
}
ZIP_TYPES = {t for t in MAIL_LEAF_TYPES if "officedocument" in t or "opendocument" in t} | {
    "application/zip"
}
# Magic bytes an output part of the given type must start with.
MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "application/pdf": (b"%PDF-",),
    **{t: (b"PK\x03\x04", b"PK\x05\x06") for t in ZIP_TYPES},
    "application/gzip": (b"\x1f\x8b",),
}
# Bytes that must never reach a recipient, whatever the declared type.
FORBIDDEN_MAGIC = {
    b"MZ": "PE/DOS executable",
    b"\x7fELF": "ELF executable",
    b"\xfe\xed\xfa\xce": "Mach-O",
    b"\xfe\xed\xfa\xcf": "Mach-O",
    b"\xce\xfa\xed\xfe": "Mach-O",
    b"\xcf\xfa\xed\xfe": "Mach-O",
    b"\xca\xfe\xba\xbe": "Mach-O fat / Java class",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "OLE2 (legacy Office/MSI) passed as-is",
    b"L\x00\x00\x00\x01\x14\x02\x00": "Windows shortcut (.lnk)",
}
DANGEROUS_EXT = {
    "exe", "com", "scr", "pif", "bat", "cmd", "dll", "cpl", "msi", "msp", "lnk", "hta", "js",
    "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "psm1", "jar", "iso", "img", "vhd", "vhdx", "one",
    "chm", "url", "library-ms", "reg", "docm", "xlsm", "pptm", "dotm", "xltm", "potm", "svg",
    "html", "htm", "xhtml", "mht", "sh", "apk", "appx", "msix",
}
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
SINGLE_HEADERS = ("from", "sender", "to", "cc", "reply-to", "subject", "date", "message-id")


# --- helpers ------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_report(path: Path) -> tuple[dict | None, str | None]:
    if not path.exists():
        return None, "no report file written"
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        return None, "report file is empty"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) != 1:
            return None, f"report is not one JSON object ({len(lines)} lines)"
        try:
            obj = json.loads(lines[0])
        except json.JSONDecodeError as e:
            return None, f"report is not JSON: {e}"
    if not isinstance(obj, dict):
        return None, "report is not a JSON object"
    return obj, None


def check_fileinfo(info, where: str) -> list[str]:
    if not isinstance(info, dict):
        return [f"{where} is not an object"]
    errs = []
    if "name" not in info or not (info["name"] is None or isinstance(info["name"], str)):
        errs.append(f"{where}.name missing or not string/null")
    if not isinstance(info.get("size"), int) or info["size"] < 0:
        errs.append(f"{where}.size missing or not a non-negative integer")
    if not isinstance(info.get("sha256"), str) or not SHA256.match(info["sha256"]):
        errs.append(f"{where}.sha256 is not lower-case hex SHA-256")
    if info.get("kind") not in KINDS:
        errs.append(f"{where}.kind {info.get('kind')!r} not in the kind vocabulary")
    return errs


def check_report_shape(rep: dict) -> list[str]:
    """Field names and types per CONTRACT.md, and the verdict rules that follow from it."""
    errs = []
    if not isinstance(rep.get("id"), str) or not rep["id"].strip():
        errs.append("report.id missing or empty")
    errs += check_fileinfo(rep.get("input"), "report.input")
    if rep.get("verdict") not in VERDICTS:
        errs.append(f"report.verdict {rep.get('verdict')!r} invalid")
    if "output" not in rep:
        errs.append("report.output missing")
    elif rep["output"] is not None:
        errs += check_fileinfo(rep["output"], "report.output")
    items = rep.get("items")
    if not isinstance(items, list):
        errs.append("report.items is not a list")
        items = []
    for i, it in enumerate(items):
        w = f"report.items[{i}]"
        if not isinstance(it, dict):
            errs.append(f"{w} is not an object")
            continue
        if not isinstance(it.get("path"), str):
            errs.append(f"{w}.path missing")
        if it.get("kind") not in KINDS:
            errs.append(f"{w}.kind {it.get('kind')!r} not in the kind vocabulary")
        if it.get("action") not in ACTIONS:
            errs.append(f"{w}.action {it.get('action')!r} invalid")
        th = it.get("threats")
        if not isinstance(th, list) or not all(isinstance(t, str) and THREAT_ID.match(t) for t in th):
            errs.append(f"{w}.threats is not a list of <kind>.<construct> ids: {th!r}")
        if not isinstance(it.get("reason"), str):
            errs.append(f"{w}.reason missing")
        if "detail" in it and it["detail"] is not None and not isinstance(it["detail"], dict):
            errs.append(f"{w}.detail is not an object")
    if not isinstance(rep.get("warnings"), list) or not all(
        isinstance(w, str) for w in rep.get("warnings", [])
    ):
        errs.append("report.warnings is not a list of strings")
    if "quarantine_id" not in rep or not (
        rep["quarantine_id"] is None or isinstance(rep["quarantine_id"], str)
    ):
        errs.append("report.quarantine_id missing or not string/null")
    if not isinstance(rep.get("duration_ms"), int) or rep["duration_ms"] < 0:
        errs.append("report.duration_ms missing or not a non-negative integer")
    if errs:
        return errs
    # Consistency rules.
    if (rep["verdict"] == "blocked") != (rep["output"] is None):
        errs.append(f"verdict {rep['verdict']} but output is {'null' if rep['output'] is None else 'set'}")
    if rep["verdict"] == "clean":
        for it in items:
            if it["threats"]:
                errs.append(f"verdict clean but {it['path']} carries threats {it['threats']}")
            if it["action"] not in NEUTRAL_ACTIONS:
                errs.append(f"verdict clean but {it['path']} was {it['action']}")
    return errs


def report_threats(rep: dict) -> set[str]:
    return {t for it in rep.get("items", []) if isinstance(it, dict) for t in it.get("threats") or []}


# --- mail checks ("pymail") ---------------------------------------------------------------------


def inbound_mugai_values(raw: bytes) -> list[str]:
    msg = email.message_from_bytes(raw)  # compat32: never raises, keeps raw values
    vals = []
    for k, v in msg.items():
        if k.lower().startswith("x-mugai-"):
            vals.append(str(v).strip())
    return [v for v in vals if v]


def part_filename(part) -> str | None:
    try:
        return part.get_filename()
    except Exception:  # malformed RFC 2231 parameters
        return "<undecodable filename>"


def check_mail_output(sample: dict, data: bytes, rep: dict, original: bytes) -> list[str]:
    errs: list[str] = []
    # Line structure, on the raw bytes.
    if re.search(rb"(?<!\r)\n", data):
        errs.append("output has a bare LF")
    if re.search(rb"\r(?!\n)", data):
        errs.append("output has a bare CR")
    if b"\x00" in data:
        errs.append("output contains NUL")
    longest = max((len(ln) for ln in data.split(b"\r\n")), default=0)
    if longest > 998:
        errs.append(f"output has a line of {longest} octets (> 998)")
    if not data.strip():
        return errs + ["output message is empty"]

    msg = email.message_from_bytes(data, policy=email.policy.default)
    if msg.get("MIME-Version") is None:
        errs.append("no MIME-Version header")
    for name in SINGLE_HEADERS:
        n = len(msg.get_all(name) or [])
        if n > 1:
            errs.append(f"{n} {name} headers (at most 1)")
    for date in msg.get_all("Date") or []:
        if getattr(date, "datetime", None) is None:
            errs.append(f"Date header {str(date)[:60]!r} does not parse")
    rid = msg.get_all("X-Mugai-Report-Id") or []
    if len(rid) != 1:
        errs.append(f"{len(rid)} X-Mugai-Report-Id headers (want 1)")
    elif str(rid[0]).strip() != rep.get("id"):
        errs.append(f"X-Mugai-Report-Id {str(rid[0]).strip()!r} != report id {rep.get('id')!r}")
    forged = inbound_mugai_values(original)
    for k, v in msg.items():
        if k.lower().startswith("x-mugai-") and any(f in str(v) for f in forged):
            errs.append(f"inbound {k} value survived: {str(v)[:60]!r}")
    try:
        subject = str(msg.get("Subject", ""))
    except Exception as e:
        subject = ""
        errs.append(f"Subject undecodable: {e}")
    if BIDI.search(subject):
        errs.append("Subject contains bidi controls")
    for want in as_list(sample.get("subject_contains")):
        if want not in subject:
            errs.append(f"Subject {subject[:80]!r} lacks {want!r}")

    texts: list[str] = []
    blobs: list[bytes] = []
    header_values: list[str] = []
    names: list[str] = []
    for i, part in enumerate(msg.walk()):
        where = f"part {i}"
        for k, v in part.items():
            try:
                header_values.append(str(v))
            except Exception as e:
                errs.append(f"{where}: header {k} undecodable: {e}")
        ctype = part.get_content_type()
        if part.is_multipart() or ctype == "message/rfc822":
            for d in getattr(part, "defects", []):
                errs.append(f"{where}: MIME defect {type(d).__name__}")
        if part.is_multipart():
            if ctype not in MAIL_CONTAINER_TYPES:
                errs.append(f"{where}: container type {ctype} not allowed")
            continue
        if ctype == "message/rfc822":
            continue
        fname = part_filename(part)
        if ctype not in MAIL_LEAF_TYPES:
            errs.append(f"{where}: content type {ctype} not allowed in a sanitized mail")
        payload = part.get_payload(decode=True) or b""
        blobs.append(payload)
        # Decoding records its own defects (bad base64 padding, ...): collect them afterwards.
        for d in getattr(part, "defects", []):
            errs.append(f"{where}: MIME defect {type(d).__name__}")
        for magic, what in FORBIDDEN_MAGIC.items():
            if payload.startswith(magic):
                errs.append(f"{where} ({ctype}, {fname!r}): {what} survived")
        if ctype in MAGIC and not payload.startswith(MAGIC[ctype]):
            errs.append(f"{where}: declared {ctype} but bytes start {payload[:8]!r}")
        if fname is not None:
            names.append(fname)
            if BIDI.search(fname) or any(ord(c) < 0x20 for c in fname):
                errs.append(f"{where}: filename {fname!r} has control characters")
            ext = fname.rsplit(".", 1)[-1].lower() if "." in fname else ""
            if ext in DANGEROUS_EXT:
                errs.append(f"{where}: dangerous filename {fname!r} survived")
            if "/" in fname or "\\" in fname:
                errs.append(f"{where}: filename {fname!r} has a path separator")
        if ctype.startswith("text/"):
            try:
                text = part.get_content()
            except Exception as e:
                errs.append(f"{where}: text part undecodable: {e}")
                continue
            texts.append(text)
            if BIDI.search(text):
                errs.append(f"{where}: text contains bidi controls")

    body = "\n".join(texts)
    # Converting HTML may wrap long lines, and Japanese has no spaces to break at: a phrase split
    # by a line break still reads the same, so also match with line breaks removed.
    unwrapped = re.sub(r"[ \t]*\r?\n[ \t]*", "", body)
    for want in as_list(sample.get("must_contain")):
        if want not in body and want not in unwrapped:
            errs.append(f"text lacks {want!r}")
    for bad in as_list(sample.get("must_not_contain")):
        bb = bad.encode("utf-8")
        if bb in data:
            errs.append(f"raw output contains {bad!r}")
        elif any(bad in t for t in texts):
            errs.append(f"decoded text contains {bad!r}")
        elif any(bad in h for h in header_values):
            errs.append(f"a decoded header contains {bad!r}")
        elif any(bb in b for b in blobs):
            errs.append(f"a decoded part contains {bad!r}")
    errs += check_no_replacement_char(sample, texts, header_values)
    if "attachments" in sample:
        want = sorted(as_list(sample["attachments"]))
        if sorted(names) != want:
            errs.append(f"attachments {sorted(names)} != expected {want}")
    return errs


# --- no replacement characters where the input was decodable (issue 14) -------------------------
# Every mail output, whatever its manifest: a U+FFFD in a delivered header or text part means
# bytes were lost in decoding (文字化け). Samples whose input really holds bytes no charset can
# read say so with `lossy_input = true`.

SAMPLE_KEYS |= {"lossy_input"}


def check_no_replacement_char(sample: dict, texts: list[str], header_values: list[str]) -> list[str]:
    if sample.get("lossy_input"):
        return []
    errs = []
    for h in header_values:
        if "\ufffd" in h:
            errs.append(f"a header has U+FFFD (input decodable): {h[:60]!r}")
    for t in texts:
        if "\ufffd" in t:
            i = t.index("\ufffd")
            errs.append(f"text has U+FFFD (input decodable): {t[max(0, i - 30):i + 30]!r}")
    return errs


# --- file-output checks ---------------------------------------------------------------------------


def check_contains_bytes(sample: dict, data: bytes, what: str) -> list[str]:
    errs = []
    for want in as_list(sample.get("must_contain")):
        if want.encode("utf-8") not in data:
            errs.append(f"{what} lacks {want!r}")
    for bad in as_list(sample.get("must_not_contain")):
        if bad.encode("utf-8") in data:
            errs.append(f"{what} contains {bad!r}")
    return errs


def check_zipfile(sample: dict, out: Path, rep: dict) -> list[str]:
    """The output is a sound ZIP (CRCs verified); must_not_contain holds in every member."""
    errs = []
    try:
        with zipfile.ZipFile(out) as zf:
            bad = zf.testzip()
            if bad is not None:
                errs.append(f"zip member {bad!r} fails its CRC")
            total = 0
            for info in zf.infolist():
                n = info.filename
                if n.startswith("/") or ".." in n.split("/") or "\\" in n or ":" in n:
                    errs.append(f"zip member name {n!r} is unsafe")
                if info.external_attr >> 16 & 0o170000 == 0o120000:
                    errs.append(f"zip member {n!r} is a symlink")
                total += info.file_size
                if total > 2 << 30:
                    return errs + ["zip output expands past 2 GiB"]
                data = zf.read(info)
                for bad in as_list(sample.get("must_not_contain")):
                    if bad.encode("utf-8") in data:
                        errs.append(f"zip member {n!r} contains {bad!r}")
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as e:
        errs.append(f"output is not a readable zip: {e}")
    return errs


def run_tool(args: list[str], timeout: int = TIMEOUT, cwd: Path | None = None):
    exe = shutil.which(args[0])
    if exe is None:
        return None
    return subprocess.run(args, capture_output=True, timeout=timeout, cwd=cwd)


def check_qpdf(sample: dict, out: Path, rep: dict) -> list[str]:
    """qpdf --check passes; must_not_contain holds in the fully uncompressed form
    (object streams unpacked, streams decoded), so a key hidden in a compressed stream counts."""
    r = run_tool(["qpdf", "--check", str(out)])
    if r is None:
        return ["qpdf not installed"]
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).decode("utf-8", "replace").strip().splitlines()[-3:]
        return [f"qpdf --check exit {r.returncode}: {' | '.join(tail)}"]
    qdf = out.with_name(out.name + ".qdf.pdf")
    r = run_tool(["qpdf", "--qdf", "--object-streams=disable", "--stream-data=uncompress",
                  str(out), str(qdf)])
    if r is None or r.returncode not in (0, 3):
        return ["qpdf could not write the uncompressed form"]
    return check_contains_bytes({"must_not_contain": sample.get("must_not_contain")},
                                qdf.read_bytes(), "uncompressed PDF")


def check_pdftoppm(sample: dict, out: Path, rep: dict) -> list[str]:
    """poppler renders every page (at a low resolution, to stay quick)."""
    prefix = out.with_name("page")
    r = run_tool(["pdftoppm", "-r", "10", "-png", str(out), str(prefix)])
    if r is None:
        return ["pdftoppm not installed"]
    if r.returncode != 0:
        return [f"pdftoppm exit {r.returncode}: {r.stderr.decode('utf-8', 'replace')[:200]}"]
    pages = list(out.parent.glob("page*.png"))
    if not pages:
        return ["pdftoppm rendered no page"]
    return []


def check_soffice(sample: dict, out: Path, rep: dict) -> list[str]:
    """LibreOffice opens the output and converts it to PDF."""
    outdir = out.parent / "soffice"
    outdir.mkdir(exist_ok=True)
    src = out.parent / (rep.get("output") or {}).get("name", out.name)
    if src != out:
        shutil.copyfile(out, src)
    profile = out.parent / "lo-profile"
    r = run_tool(["soffice", f"-env:UserInstallation=file://{profile}", "--headless",
                  "--convert-to", "pdf", "--outdir", str(outdir), str(src)])
    if r is None:
        return ["soffice not installed"]
    if r.returncode != 0 or not list(outdir.glob("*.pdf")):
        return [f"soffice could not open the output (exit {r.returncode})"]
    return []


BUILTIN = {"zipfile": check_zipfile, "qpdf": check_qpdf, "pdftoppm": check_pdftoppm,
           "soffice": check_soffice}

_modules: dict[str, ModuleType | None] = {}


def checks_module(name: str) -> ModuleType | None:
    if name not in _modules:
        path = CORPUS / f"checks_{name}.py"
        if path.exists():
            if str(CORPUS) not in sys.path:
                sys.path.insert(0, str(CORPUS))
            _modules[name] = importlib.import_module(f"checks_{name}")
        else:
            _modules[name] = None
    return _modules[name]


def run_module_check(mod: ModuleType, sample: dict, out: Path, rep: dict) -> list[str]:
    try:
        res = mod.check(sample, out, rep)
    except Exception:
        return [f"{mod.__name__}.check raised: {traceback.format_exc().strip().splitlines()[-1]}"]
    return [f"{mod.__name__}: {m}" for m in (res or [])]


# --- one sample ---------------------------------------------------------------------------------


def validate_sample(sample: dict, extra_keys: set[str]) -> list[str]:
    errs = []
    for key in sample:
        if key in SAMPLE_KEYS or key in extra_keys:
            continue
        close = difflib.get_close_matches(key, SAMPLE_KEYS, n=1, cutoff=0.8)
        if close:
            errs.append(f"manifest key {key!r} looks like a typo of {close[0]!r}")
    if sample.get("mode") not in ("file", "mail"):
        errs.append(f"mode {sample.get('mode')!r} must be 'file' or 'mail'")
    ex = as_list(sample.get("expect"))
    if not ex or any(e not in VERDICTS for e in ex):
        errs.append(f"expect {sample.get('expect')!r} must be a verdict or a list of verdicts")
    if sample.get("mode") == "mail" and "blocked" in ex:
        errs.append("a mail is never blocked (CONTRACT.md): fix expect")
    if not (CORPUS / sample.get("file", "")).is_file():
        errs.append(f"sample file {sample.get('file')!r} does not exist")
    return errs


def invoke(mugai: str, sample: dict, src: Path, work: Path, quarantine: Path | None = None):
    out = work / ("out.eml" if sample["mode"] == "mail" else "out")
    rep = work / "report.json"
    cmd = [mugai, "mail" if sample["mode"] == "mail" else "sanitize", str(src), "-o", str(out),
           "--report", str(rep)]
    if quarantine is not None:
        cmd += ["--quarantine", str(quarantine)]
    if sample.get("policy"):
        # A sanitizing policy (TOML) for this sample only, e.g. `[pdf]\nmode = "clean"`.
        pol = work / "policy.toml"
        pol.write_text(sample["policy"], encoding="utf-8")
        cmd += ["--policy", str(pol)]
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, cwd=work)
    return proc, out, rep


def verify_sample(mugai: str, sample: dict, area: str, work: Path) -> list[str]:
    area_mod = checks_module(area)
    errs = validate_sample(sample, set(getattr(area_mod, "EXTRA_KEYS", ())))
    if errs:
        return errs
    src = CORPUS / sample["file"]
    original = src.read_bytes()
    expect = as_list(sample["expect"])
    mode = sample["mode"]
    try:
        proc, out, rep_path = invoke(mugai, sample, src, work)
    except subprocess.TimeoutExpired:
        return [f"mugai did not finish within {TIMEOUT} s"]
    want_codes = {0} if mode == "mail" else {0 if e != "blocked" else 3 for e in expect}
    if proc.returncode not in want_codes:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-2:]
        errs.append(f"exit {proc.returncode}, want {sorted(want_codes)} ({' | '.join(err)})")
    rep, why = load_report(rep_path)
    if rep is None:
        return errs + [why or "no report"]
    shape = check_report_shape(rep)
    if shape:
        return errs + shape
    if rep["verdict"] not in expect:
        errs.append(f"verdict {rep['verdict']}, want {' or '.join(expect)}")
    found = report_threats(rep)
    missing = [t for t in as_list(sample.get("threats")) if t not in found]
    if missing:
        errs.append(f"threats {missing} not reported (got {sorted(found)})")
    if rep["input"]["sha256"] != sha256(original):
        errs.append("report input.sha256 differs from the sample's SHA-256")
    if rep["input"]["size"] != len(original):
        errs.append(f"report input.size {rep['input']['size']} != {len(original)}")
    if mode == "mail" and rep["input"]["kind"] != "mail":
        errs.append(f"report input.kind {rep['input']['kind']!r} for a mail")

    if rep["output"] is None:
        if out.exists() and out.stat().st_size > 0:
            errs.append("blocked, yet an output file was written")
        return errs
    if not out.exists():
        return errs + ["report has an output but no output file was written"]
    data = out.read_bytes()
    if rep["output"]["sha256"] != sha256(data) or rep["output"]["size"] != len(data):
        errs.append("report output.sha256/size do not describe the output file")
    if "output_kind" in sample and rep["output"]["kind"] != sample["output_kind"]:
        errs.append(f"output kind {rep['output']['kind']!r}, want {sample['output_kind']!r}")
    if "output_name" in sample and rep["output"]["name"] != sample["output_name"]:
        errs.append(f"output name {rep['output']['name']!r}, want {sample['output_name']!r}")

    checks = as_list(sample.get("checks"))
    if mode == "mail" or "pymail" in checks:
        errs += check_mail_output(sample, data, rep, original)
    else:
        errs += check_contains_bytes(sample, data, "output")
    for name in checks:
        if name == "pymail":
            continue
        if name in BUILTIN:
            errs += BUILTIN[name](sample, out, rep)
        elif (mod := checks_module(name)) is not None and mod is not area_mod:
            errs += run_module_check(mod, sample, out, rep)
        elif area_mod is None:
            errs.append(f"check {name!r} has no implementation (no checks_{name}.py or checks_{area}.py)")
    if area_mod is not None:
        errs += run_module_check(area_mod, sample, out, rep)

    if sample.get("quarantine"):
        errs += verify_quarantine(mugai, sample, work, original)
    return errs


def verify_quarantine(mugai: str, sample: dict, work: Path, original: bytes) -> list[str]:
    """Run again with --quarantine: the original is stored (by content) beside its report."""
    qwork = work / "q"
    qwork.mkdir()
    qdir = qwork / "quarantine"
    try:
        proc, _, rep_path = invoke(mugai, sample, CORPUS / sample["file"], qwork, qdir)
    except subprocess.TimeoutExpired:
        return ["quarantine run timed out"]
    errs = []
    if proc.returncode not in (0, 3):
        errs.append(f"quarantine run exit {proc.returncode}")
    rep, why = load_report(rep_path)
    if rep is None:
        return errs + [f"quarantine run: {why}"]
    if rep.get("verdict") == "clean":
        return errs
    if not rep.get("quarantine_id"):
        errs.append("quarantine run: report.quarantine_id is null")
    files = [p for p in qdir.rglob("*") if p.is_file()] if qdir.exists() else []
    want = sha256(original)
    if not any(p.stat().st_size == len(original) and sha256(p.read_bytes()) == want for p in files):
        errs.append("quarantine does not hold the original bytes")
    if not any(stored_report_matches(p, rep.get("id"), want) for p in files):
        errs.append("quarantine holds no report (JSON with this report id and input hash)")
    return errs


def stored_report_matches(path: Path, report_id, input_sha: str) -> bool:
    if path.stat().st_size > 16 << 20:
        return False
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(obj, dict)
        and obj.get("id") == report_id
        and isinstance(obj.get("input"), dict)
        and obj["input"].get("sha256") == input_sha
    )


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mugai", required=True, help="path to the mugai binary")
    ap.add_argument("--only", action="append", default=[],
                    help="run only samples whose file path contains SUBSTR (repeatable)")
    ap.add_argument("--keep", type=Path, help="keep outputs and reports under this directory")
    ap.add_argument("manifests", nargs="*", type=Path,
                    help="manifest files (default: corpus/manifest/*.toml)")
    args = ap.parse_args(argv)

    mugai = str(Path(args.mugai).resolve())
    if not os.access(mugai, os.X_OK):
        print(f"error: {mugai} is not an executable", file=sys.stderr)
        return 2
    manifests = args.manifests or sorted((CORPUS / "manifest").glob("*.toml"))
    if not manifests:
        print("error: no manifests found", file=sys.stderr)
        return 2

    passed = failed = 0
    base = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="mugai-verify-"))
    try:
        for mf in manifests:
            try:
                with open(mf, "rb") as f:
                    samples = tomllib.load(f).get("sample", [])
            except (OSError, tomllib.TOMLDecodeError) as e:
                print(f"FAIL {mf}: cannot read manifest: {e}")
                failed += 1
                continue
            area = Path(mf).stem
            for idx, sample in enumerate(samples):
                name = str(sample.get("file", f"{mf.name}[{idx}]"))
                if args.only and not any(s in name for s in args.only):
                    continue
                work = base / f"{area}-{idx:03d}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                try:
                    errs = verify_sample(mugai, sample, area, work)
                except Exception:
                    errs = ["verifier error: " + traceback.format_exc().strip().splitlines()[-1]]
                if errs:
                    failed += 1
                    print(f"FAIL {name}: " + "; ".join(errs), flush=True)
                else:
                    passed += 1
                    print(f"ok {name}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    if passed + failed == 0:
        print("error: no sample ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
