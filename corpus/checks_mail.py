"""Extra checks for corpus/manifest/mail.toml: Japanese text as a Japanese mail client shows it.

Manifest keys (all optional):
  subject   = "..."   the decoded Subject, exactly
  body      = "..."   the decoded text/plain body, exactly (line ends as LF, outer white space
                      stripped); only for samples without a notice
  from_name = "..."   the decoded display name of From
  warnings  = [...]   ids that must appear in report.warnings
  received  = N       the output has exactly N Received fields, each one line of printable
                      ASCII once unfolded, in the input's order

Each expected value is checked twice: against the delivered message, and against an independent
decoding of the *input* written here with Python's own codecs (cp932, euc_jp, iso2022_jp_1,
iso2022_jp_ext) and email.header.decode_header, which joins adjacent encoded words of the same
charset before decoding them (the rule Japanese clients follow). So an expectation can never be
just a copy of what Mugai printed. Shares nothing with the Rust decoders.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from pathlib import Path

EXTRA_KEYS = {"subject", "body", "from_name", "warnings", "received"}


# --- an independent ISO-2022-JP reader (RFC 1468 + CP50220/50221/50222) --------------------------

ESCAPES = {
    b"\x1b(B": "ascii",
    b"\x1b(J": "roman",
    b"\x1b(I": "kana",
    b"\x1b$@": "jis",
    b"\x1b$B": "jis",
    b"\x1b$(D": "jis0212",
}


def jis_pair_to_cp932(j1: int, j2: int) -> bytes:
    """JIS X 0208 row/cell to Shift_JIS (cp932 keeps NEC row 13 and the NEC-selected IBM rows
    89-92 at these positions, as CP50220 writes them)."""
    s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 % 2:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return bytes([s1, s2])


def decode_iso2022jp(data: bytes) -> str:
    out: list[str] = []
    mode = "ascii"
    shifted = False
    i = 0
    while i < len(data):
        for esc, m in ESCAPES.items():
            if data.startswith(esc, i):
                mode, shifted = m, False
                i += len(esc)
                break
        else:
            b = data[i]
            if b == 0x0E:
                shifted = True
                i += 1
            elif b == 0x0F:
                shifted = False
                i += 1
            elif b >= 0x80:
                # 8-bit in ISO-2022-JP: UTF-8 (a list server's footer) or JIS8 katakana.
                n = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
                try:
                    out.append(data[i : i + n].decode("utf-8") if n else bytes([b]).decode("cp932"))
                    i += n or 1
                except UnicodeDecodeError:
                    out.append(bytes([b]).decode("cp932"))
                    i += 1
            elif b <= 0x20 or b == 0x7F:
                out.append(chr(b))
                i += 1
            elif shifted or mode == "kana":
                out.append(bytes([b + 0x80]).decode("cp932"))
                i += 1
            elif mode in ("ascii", "roman"):
                out.append(bytes([b]).decode("ascii" if mode == "ascii" else "iso2022_jp"))
                i += 1
            elif mode == "jis":
                out.append(jis_pair_to_cp932(b, data[i + 1]).decode("cp932"))
                i += 2
            else:  # JIS X 0212
                out.append((b"\x1b$(D" + data[i : i + 2] + b"\x1b(B").decode("iso2022_jp_1"))
                i += 2
    return "".join(out)


def decode_bytes(data: bytes, label: str | None) -> str:
    """As a Japanese client does: the label when it reads the bytes cleanly, else whichever of
    UTF-8, CP932, EUC-JP does (raise when none does)."""
    label = (label or "").lower()
    first = []
    if label in ("iso-2022-jp", "cp50220", "cp50221", "cp50222") and data.isascii():
        return decode_iso2022jp(data)
    if label in ("shift_jis", "cp932", "windows-31j"):
        first = ["cp932"]
    elif label in ("euc-jp",):
        first = ["euc_jp"]
    elif label in ("utf-8", "us-ascii"):
        first = ["utf-8"]
    if b"\x1b$" in data or b"\x1b(" in data:
        return decode_iso2022jp(data)
    # Valid UTF-8 wins over a legacy label (UTF-8 read as Shift_JIS decodes into mojibake).
    for codec in ["utf-8"] + first + ["cp932", "euc_jp"]:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"no charset reads these bytes (label {label!r})")


def decode_header_value(raw: bytes) -> str:
    """email.header.decode_header joins adjacent encoded words of one charset into one byte
    string; those bytes are then decoded as above. A fold inside an encoded word is removed
    first; raw 8-bit text is decoded by what reads it cleanly."""
    text = raw.replace(b"\r\n", b"\n")
    text = re.sub(rb"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*)\n[ \t]+", rb"\1", text)
    text = re.sub(rb"\n([ \t])", rb"\1", text).strip()
    parts = email.header.decode_header(text.decode("latin-1"))
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            chunk = chunk.encode("latin-1")
        out.append(decode_bytes(chunk, charset))
    return "".join(out)


def raw_header(original: bytes, name: str) -> bytes | None:
    head = original.split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"(?im)^" + name.encode() + rb":[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head)
    return m.group(1) if m else None


def original_body(original: bytes) -> str:
    msg = email.message_from_bytes(original, policy=email.policy.compat32)
    payload = msg.get_payload(decode=True) or b""
    return decode_bytes(payload, msg.get_content_charset()).replace("\r\n", "\n")


# --- trace fields (issue 8) -------------------------------------------------------------------------


def check_received(sample: dict, original: bytes, out) -> list[str]:
    got = [re.sub(r"\s+", " ", str(v)).strip() for v in out.get_all("Received") or []]
    if len(got) != sample["received"]:
        return [f"{len(got)} Received fields in the output, want {sample['received']}"]
    errs = []
    head = original.split(b"\r\n\r\n", 1)[0]
    want = [
        re.sub(r"\s+", " ", m.decode("ascii", "replace")).strip()
        for m in re.findall(rb"(?im)^Received:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head)
    ]
    for g, w in zip(got, want):
        if not all(32 <= ord(c) < 127 for c in g):
            errs.append(f"Received {g[:60]!r} is not printable ASCII")
        if g != w:
            errs.append(f"Received {g[:60]!r} != input {w[:60]!r}")
    return errs


# --- the check ------------------------------------------------------------------------------------


def check(sample: dict, output_path: Path, report: dict) -> list[str]:
    errs: list[str] = []
    keys = EXTRA_KEYS & sample.keys()
    if not keys:
        return errs
    original = (Path(__file__).resolve().parent / sample["file"]).read_bytes()
    out = email.message_from_bytes(output_path.read_bytes(), policy=email.policy.default)
    for w in sample.get("warnings", []):
        if w not in report.get("warnings", []):
            errs.append(f"warning {w!r} not reported (got {report.get('warnings')})")
    if "received" in sample:
        errs += check_received(sample, original, out)
    if "subject" in sample:
        want = sample["subject"]
        got = str(out.get("Subject", ""))
        if got != want:
            errs.append(f"delivered Subject {got!r} != {want!r}")
        raw = raw_header(original, "Subject") or b""
        try:
            indep = decode_header_value(raw)
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            indep = f"<undecodable: {e}>"
        if indep != want:
            errs.append(f"independent decoding of the input Subject {indep!r} != {want!r}")
    if "from_name" in sample:
        want = sample["from_name"]
        frm = out.get("From")
        got = frm.addresses[0].display_name if frm is not None and frm.addresses else None
        if got != want:
            errs.append(f"delivered From name {got!r} != {want!r}")
        raw = raw_header(original, "From") or b""
        phrase = raw.rsplit(b"<", 1)[0].strip().strip(b'"')
        try:
            indep = decode_header_value(phrase)
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            indep = f"<undecodable: {e}>"
        if indep != want:
            errs.append(f"independent decoding of the input From name {indep!r} != {want!r}")
    if "body" in sample:
        want = sample["body"].strip()
        texts = [p.get_content() for p in out.walk() if p.get_content_type() == "text/plain"]
        got = texts[0].replace("\r\n", "\n").strip() if texts else None
        if got != want:
            errs.append(f"delivered body {got!r} != {want!r}")
        try:
            indep = original_body(original).strip()
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            indep = f"<undecodable: {e}>"
        if indep != want:
            errs.append(f"independent decoding of the input body {indep!r} != {want!r}")
    return errs
