#!/usr/bin/env python3
"""Word-level agreement between the text of PDFs and the text layer of their sanitized copies.

For each PDF: run pdfsan (rasterize mode, text layer on), run `pdftotext` on the input and on
the output, and compare the two word sequences page by page with difflib. Agreement is
matching words / input words (in reading order: difflib matches are order-preserving); words
the output has that the input lacks are counted as "extra".

Japanese: pdftotext puts spaces between CJK characters differently depending on glyph
positions, so every CJK character (kana, kanji, CJK punctuation, full-width forms) is compared
as a token of its own; runs of other characters are split on whitespace as usual.

usage: textcheck.py [--pdfsan PATH] [--keep DIR] PDF...
"""

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
import time

CJK = re.compile(
    "([\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff])"
)


def tokens(page):
    out = []
    for word in page.split():
        out.extend(t for t in CJK.split(word) if t)
    return out


def pages(path):
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", path, "-"],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8", "replace")
    return [tokens(p) for p in text.split("\f")]


def compare(a_pages, b_pages):
    total = matched = extra = 0
    for i in range(max(len(a_pages), len(b_pages))):
        a = a_pages[i] if i < len(a_pages) else []
        b = b_pages[i] if i < len(b_pages) else []
        sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
        m = sum(block.size for block in sm.get_matching_blocks())
        total += len(a)
        matched += m
        extra += len(b) - m
    return total, matched, extra


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pdfsan", default=os.path.join(root, "target/release/examples/pdfsan")
    )
    ap.add_argument("--keep", help="directory for the sanitized PDFs")
    ap.add_argument("pdfs", nargs="+")
    args = ap.parse_args()
    outdir = args.keep or tempfile.mkdtemp(prefix="textcheck-")
    os.makedirs(outdir, exist_ok=True)
    print(f"{'file':40} {'input words':>11} {'matched':>9} {'agree':>8} {'extra':>7} {'secs':>6}")
    worst = 1.0
    for pdf in args.pdfs:
        out = os.path.join(outdir, os.path.basename(pdf))
        start = time.time()
        r = subprocess.run([args.pdfsan, pdf, out], capture_output=True)
        secs = time.time() - start
        if r.returncode != 0:
            print(f"{os.path.basename(pdf):40} pdfsan failed ({r.returncode})")
            worst = 0.0
            continue
        try:
            source = pages(pdf)
        except subprocess.CalledProcessError as e:
            # No reference to compare with (pdftotext cannot read the input: damaged, or
            # encrypted); Mugai's own handling of such inputs is tested elsewhere.
            print(f"{os.path.basename(pdf):40} input unreadable by pdftotext ({e.returncode})")
            continue
        total, matched, extra = compare(source, pages(out))
        agree = matched / total if total else 1.0
        worst = min(worst, agree)
        print(
            f"{os.path.basename(pdf)[:40]:40} {total:11} {matched:9} {agree:8.2%} {extra:7} {secs:6.1f}"
        )
    return 0 if worst >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
