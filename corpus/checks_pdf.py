"""Independent checks of sanitized PDFs, for corpus/verify.py.

check(sample, output_path, report) raises AssertionError with a reason when the output fails:
- `qpdf --check` accepts it without a warning, and the trailer's /Size is one plus the highest
  object number (read from the bytes);
- `qpdf --qdf --object-streams=disable` expands it (streams decompressed where possible) and
  no active keyword appears as a PDF name in the expanded file;
- it has as many pages as the input (`qpdf --show-npages`), when qpdf can count the input's
  pages and the sample's checks include "pdftoppm" (truncated inputs are exempt);
- `pdftoppm -r 20` renders it without error;
- when the input has text and the output was rasterized, the output's text layer gives it back:
  every word `pdftotext` reads from the input is found, in order (difflib, page by page, CJK
  compared character by character), in `pdftotext` of the output, or was reported left out as
  invisible (`text_layer.words_dropped_invisible`), for at least 95 % of the input's words.

`sample` is the manifest entry (a dict with at least "file", relative to corpus/, and
"checks"); `report` is the parsed JSON report (unused here beyond sanity).
"""

import difflib
import os
import re
import subprocess
import tempfile

ACTIVE = [b"/JavaScript", b"/JS", b"/OpenAction", b"/AA", b"/Launch", b"/URI",
          b"/EmbeddedFile", b"/RichMedia", b"/XFA"]
CORPUS = os.path.dirname(os.path.abspath(__file__))


def _run(args):
    return subprocess.run(args, capture_output=True, timeout=120)


def _npages(path):
    r = _run(["qpdf", "--show-npages", path])
    # Exit 3 means "succeeded with warnings"; the count is still valid.
    if r.returncode in (0, 3):
        try:
            return int(r.stdout.decode().strip())
        except ValueError:
            return None
    return None


def _size_and_highest(path):
    """(trailer /Size, highest object number), read from the bytes without qpdf: the last
    `/Size` (trailer or cross-reference stream) and every `N G obj` header."""
    with open(path, "rb") as f:
        data = f.read()
    highest = max((int(m.group(1)) for m in re.finditer(rb"(?<![0-9])(\d+)\s+\d+\s+obj\b", data)), default=0)
    sizes = re.findall(rb"/Size\s+(\d+)", data)
    return (int(sizes[-1]) if sizes else None), highest


CJK = re.compile(
    "([\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff])"
)


def _words(path):
    """Words per page from pdftotext, CJK characters one token each; None if unreadable."""
    r = _run(["pdftotext", "-enc", "UTF-8", path, "-"])
    if r.returncode != 0:
        return None
    return [CJK.sub(r" \1 ", page).split() for page in r.stdout.decode("utf-8", "replace").split("\f")]


def _text_layer(report):
    """The rasterized item's text-layer detail ({} when it has none); None when nothing was
    rasterized (clean mode keeps the original text: nothing to compare)."""
    for item in (report or {}).get("items", []):
        if item.get("action") == "rasterized":
            return (item.get("detail") or {}).get("text_layer") or {}
    return None


def check_text_layer(sample, output_path, report):
    layer = _text_layer(report)
    if layer is None:
        return
    src = _words(os.path.join(CORPUS, sample["file"]))
    if not src or not any(src):
        return
    out = _words(output_path) or []
    total = matched = 0
    for i, a in enumerate(src):
        b = out[i] if i < len(out) else []
        total += len(a)
        m = difflib.SequenceMatcher(None, a, b, autojunk=False)
        matched += sum(block.size for block in m.get_matching_blocks())
    dropped = int(layer.get("words_dropped_invisible") or 0)
    assert matched + dropped >= 0.95 * total, (
        "text layer: %d of %d input words found (%d reported invisible)" % (matched, total, dropped))


def check(sample, output_path, report):
    checks = sample.get("checks", [])
    assert report is None or report.get("verdict") != "blocked", "blocked output cannot be checked"
    if "qpdf" in checks:
        r = _run(["qpdf", "--check", output_path])
        said = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0, "qpdf --check: %s" % said[-400:]
        assert "WARNING" not in said.upper(), "qpdf --check warns: %s" % said[-400:]
        size, highest = _size_and_highest(output_path)
        assert size == highest + 1, "trailer /Size %s, highest object %s" % (size, highest)
        with tempfile.TemporaryDirectory() as tmp:
            qdf = os.path.join(tmp, "out.qdf")
            r = _run(["qpdf", "--qdf", "--object-streams=disable", output_path, qdf])
            assert r.returncode in (0, 3), "qpdf --qdf failed: %s" % r.stderr.decode(errors="replace")
            with open(qdf, "rb") as f:
                expanded = f.read()
        for key in ACTIVE:
            # A name token: the key followed by a delimiter (so /JS does not match /JSFoo).
            if re.search(re.escape(key) + rb"[\s/<>\[\]()]", expanded):
                raise AssertionError("active key %s in the output" % key.decode())
    if "pdftoppm" in checks:
        src = os.path.join(CORPUS, sample["file"])
        n_in = _npages(src)
        n_out = _npages(output_path)
        if n_in is not None:
            assert n_in == n_out, "page count %s, input had %s" % (n_out, n_in)
        with tempfile.TemporaryDirectory() as tmp:
            r = _run(["pdftoppm", "-r", "20", "-png", output_path, os.path.join(tmp, "p")])
            assert r.returncode == 0, "pdftoppm: %s" % r.stderr.decode(errors="replace")[-400:]
            assert os.listdir(tmp), "pdftoppm rendered nothing"
        check_text_layer(sample, output_path, report)


if __name__ == "__main__":
    # Manual use: python3 corpus/checks_pdf.py samples/pdf/x.pdf OUTPUT.pdf
    import sys
    check({"file": sys.argv[1], "checks": ["qpdf", "pdftoppm"]}, sys.argv[2], None)
    print("ok")
