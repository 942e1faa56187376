#!/usr/bin/env python3
"""Runs each PDF pipeline once under /usr/bin/time -v and prints Markdown tables.

Usage: bench.py PDFSAN_BINARY MUGAI_BINARY EXTRACTED_DIR RESULTS_JSON  (see run.sh)

Three parts, each a table:
1. per manual: Mugai rasterize (with the text layer when the build has one, and without it
   when `pdfsan --help` offers --no-text-layer), Mugai clean, hayro render only, mutool draw,
   pdftoppm and a Dangerzone-style PyMuPDF pipeline, with output/input size ratios and the
   ratio of Mugai rasterize's wall time to mutool's;
2. OCR cost per page: tesseract (jpn+eng, 150 DPI grey, one thread, as the daemon runs it) on
   the first pages of the manuals;
3. Office rasterize: `mugai sanitize` with office.rasterize = true (LibreOffice -> PDF ->
   pixels, in the sandboxed pool), pages/s, beside LibreOffice -> PDF -> PyMuPDF pixmaps -> PDF.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

DOCS = {
    "en": ("usr/share/debian-reference/debian-reference.en.pdf", "Debian Reference (en)"),
    "ja": ("usr/share/debian-reference/debian-reference.ja.pdf", "Debian Reference (ja)"),
    "gnuplot": ("usr/share/doc/gnuplot/gnuplot.pdf", "gnuplot manual"),
    "asy": ("usr/share/doc/asymptote/asymptote.pdf", "Asymptote manual"),
}

# Office inputs: corpus samples (one page each) and a long document made here.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OFFICE_SAMPLES = ["japanese_plain.docx", "dde_external.xlsx", "activex_ole.pptx", "japanese_lo.odt"]
LONG_TEXT = "/usr/share/common-licenses/GPL-3"

PYMUPDF = r'''
import sys, pymupdf
src = pymupdf.open(sys.argv[1]); out = pymupdf.open()
for page in src:
    pix = page.get_pixmap(dpi=150)
    new = out.new_page(width=page.rect.width, height=page.rect.height)
    new.insert_image(new.rect, pixmap=pix)
    pix = None
out.save(sys.argv[2], deflate=True, garbage=3)
'''


def timed(cmd, env=None):
    """(wall seconds, CPU seconds, peak RSS MiB, exit code) of cmd under GNU time."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    err = r.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.+)", err)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    user = re.search(r"User time \(seconds\): ([\d.]+)", err)
    system = re.search(r"System time \(seconds\): ([\d.]+)", err)
    cpu = (float(user.group(1)) if user else 0.0) + (float(system.group(1)) if system else 0.0)
    secs = 0.0
    if wall:
        for part in wall.group(1).strip().split(":"):
            secs = secs * 60 + float(part)
    return secs, cpu, (int(rss.group(1)) / 1024 if rss else 0.0), r.returncode


def npages(path):
    r = subprocess.run(["qpdf", "--show-npages", path], capture_output=True, text=True)
    try:
        return int(r.stdout.strip())
    except ValueError:
        return 0


def have_pymupdf():
    return subprocess.run([sys.executable, "-c", "import pymupdf"], capture_output=True).returncode == 0


def pdfsan_has(binary, flag):
    """Whether the pdfsan example offers `flag` (it says so in its --help or usage)."""
    r = subprocess.run([binary, "--help"], capture_output=True, text=True)
    return flag in r.stdout + r.stderr


def soffice(args, profile):
    return ["soffice", "-env:UserInstallation=file://" + profile, "--headless", "--norestore"] + args


def manuals(pdfsan, extracted, tmp, wanted):
    rows = []
    text_layer_flag = pdfsan_has(pdfsan, "--no-text-layer")
    pymupdf = have_pymupdf()
    for key in wanted:
        rel, title = DOCS[key]
        src = os.path.join(extracted, rel)
        pages = npages(src)
        size_in = os.path.getsize(src)
        out = os.path.join(tmp, "out.pdf")
        render_dir = os.path.join(tmp, "pages")
        raster = "mugai rasterize, text layer" if text_layer_flag else "mugai rasterize"
        runs = [(raster + " (2 threads)", [pdfsan, src, out], out)]
        if text_layer_flag:
            runs.append(("mugai rasterize, no text layer (2 threads)",
                         [pdfsan, "--no-text-layer", src, out], out))
        runs += [
            ("mugai clean", [pdfsan, "--mode", "clean", src, out], out),
            ("hayro render only, 1 thread", [pdfsan, "--render-only", src], None),
            ("mutool draw -r 150 (render only)", ["mutool", "draw", "-q", "-r", "150", src], None),
            ("pdftoppm -r 150 (PPM files)", ["pdftoppm", "-r", "150", src, os.path.join(render_dir, "p")], None),
        ]
        if pymupdf:
            runs.append(("PyMuPDF pixmap -> PDF (Dangerzone-style)", [sys.executable, "-c", PYMUPDF, src, out], out))
        doc_rows = []
        for name, cmd, output in runs:
            if output and os.path.exists(output):
                os.remove(output)
            shutil.rmtree(render_dir, ignore_errors=True)
            os.makedirs(render_dir)
            secs, cpu, rss, code = timed(cmd)
            size_out = os.path.getsize(output) if output and os.path.exists(output) else None
            doc_rows.append({
                "doc": title, "pages": pages, "input_bytes": size_in, "tool": name,
                "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                "pages_per_s": round(pages / secs, 1) if secs else None,
                "pages_per_cpu_s": round(pages / cpu, 1) if cpu else None,
                "peak_rss_mib": round(rss, 1), "exit": code, "output_bytes": size_out,
                "output_ratio": round(size_out / size_in, 2) if size_out else None,
            })
            shutil.rmtree(render_dir, ignore_errors=True)
            print(json.dumps(doc_rows[-1]), file=sys.stderr)
        mutool = next((r["seconds"] for r in doc_rows if r["tool"].startswith("mutool")), None)
        for r in doc_rows:
            r["x_mutool"] = (round(r["seconds"] / mutool, 1)
                             if mutool and r["tool"].startswith("mugai rasterize") else None)
        rows += doc_rows
    return rows


def ocr_cost(extracted, tmp, wanted, n):
    """tesseract per page on the first n pages of each wanted manual."""
    rows = []
    if not shutil.which("tesseract") or n <= 0:
        return rows
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    for key in wanted:
        rel, title = DOCS[key]
        src = os.path.join(extracted, rel)
        pgm_dir = os.path.join(tmp, "ocr")
        shutil.rmtree(pgm_dir, ignore_errors=True)
        os.makedirs(pgm_dir)
        last = min(n, npages(src))
        subprocess.run(["mutool", "draw", "-q", "-r", "150", "-c", "gray",
                        "-o", os.path.join(pgm_dir, "p%03d.pgm"), src, "1-%d" % last], check=True)
        wall = cpu = 0.0
        words = 0
        size = None
        for pgm in sorted(glob.glob(os.path.join(pgm_dir, "*.pgm"))):
            with open(pgm, "rb") as f:
                head = f.read(32).split()
                size = "%sx%s" % (head[1].decode(), head[2].decode())
            tsv = pgm + ".tsv"
            secs, c, _, code = timed(["sh", "-c", 'exec tesseract "$1" stdout -l jpn+eng --dpi 150 tsv > "$2" 2>/dev/null',
                                      "sh", pgm, tsv], env=env)
            wall += secs
            cpu += c
            if code == 0:
                with open(tsv, encoding="utf-8", errors="replace") as f:
                    words += sum(1 for line in f if line.startswith("5\t"))
        rows.append({"doc": title, "pages": last, "image": size,
                     "seconds_per_page": round(wall / last, 2) if last else None,
                     "cpu_seconds_per_page": round(cpu / last, 2) if last else None,
                     "words_per_page": round(words / last) if last else None})
        print(json.dumps(rows[-1]), file=sys.stderr)
        shutil.rmtree(pgm_dir, ignore_errors=True)
    return rows


def office(mugai, tmp):
    """Office rasterize through mugai, beside LibreOffice -> PyMuPDF."""
    rows = []
    if not shutil.which("soffice"):
        return rows
    profile = os.path.join(tmp, "lo-profile")
    inputs = [os.path.join(ROOT, "corpus", "samples", "office", s) for s in OFFICE_SAMPLES]
    if os.path.exists(LONG_TEXT):
        # A long Word document: the GPL-3 text, typeset by LibreOffice.
        txt = os.path.join(tmp, "gpl3.txt")
        shutil.copy(LONG_TEXT, txt)
        subprocess.run(soffice(["--convert-to", "docx", "--outdir", tmp, txt], profile),
                       check=True, capture_output=True)
        inputs.append(os.path.join(tmp, "gpl3.docx"))
    policy = os.path.join(tmp, "office.toml")
    with open(policy, "w") as f:
        f.write("[office]\nrasterize = true\n")
    pymupdf = have_pymupdf()
    for src in inputs:
        name = os.path.basename(src)
        out = os.path.join(tmp, "office-out.pdf")
        if os.path.exists(out):
            os.remove(out)
        secs, cpu, rss, code = timed([mugai, "sanitize", "-q", "--policy", policy, src, "-o", out])
        pages = npages(out) if os.path.exists(out) else 0
        rows.append({"doc": name, "tool": "mugai office.rasterize (pool)", "pages": pages,
                     "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                     "pages_per_s": round(pages / secs, 2) if secs else None,
                     "peak_rss_mib": round(rss, 1), "exit": code,
                     "output_bytes": os.path.getsize(out) if os.path.exists(out) else None})
        print(json.dumps(rows[-1]), file=sys.stderr)
        if not pymupdf:
            continue
        # Dangerzone-style: LibreOffice -> PDF, then PyMuPDF pixmaps -> PDF.
        conv_dir = os.path.join(tmp, "conv")
        shutil.rmtree(conv_dir, ignore_errors=True)
        os.makedirs(conv_dir)
        s1, c1, r1, code1 = timed(soffice(["--convert-to", "pdf", "--outdir", conv_dir, src], profile))
        mid = os.path.join(conv_dir, os.path.splitext(name)[0] + ".pdf")
        s2, c2, r2, code2 = timed([sys.executable, "-c", PYMUPDF, mid, out]) if code1 == 0 else (0, 0, 0, 1)
        pages = npages(out) if code2 == 0 else 0
        secs = s1 + s2
        rows.append({"doc": name, "tool": "LibreOffice -> PyMuPDF (Dangerzone-style)", "pages": pages,
                     "seconds": round(secs, 2), "cpu_seconds": round(c1 + c2, 2),
                     "pages_per_s": round(pages / secs, 2) if secs else None,
                     "peak_rss_mib": round(max(r1, r2), 1), "exit": code1 or code2,
                     "output_bytes": os.path.getsize(out) if code2 == 0 else None})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main():
    pdfsan, mugai, extracted, results = sys.argv[1:5]
    wanted = os.environ.get("BENCH_DOCS", "en ja gnuplot asy").split()
    parts = os.environ.get("BENCH_PARTS", "manuals ocr office").split()
    ocr_pages = int(os.environ.get("BENCH_OCR_PAGES", "5"))
    tmp = tempfile.mkdtemp(prefix="mugai-bench-")
    try:
        rows = manuals(pdfsan, extracted, tmp, wanted) if "manuals" in parts else []
        ocr = ocr_cost(extracted, tmp, [k for k in wanted if k in ("en", "ja")], ocr_pages) if "ocr" in parts else []
        offices = office(mugai, tmp) if "office" in parts else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(results, "w") as f:
        json.dump({"manuals": rows, "ocr": ocr, "office": offices}, f, indent=1)
    if rows:
        print("| document | pages | tool | pages/s (wall) | wall s | × mutool | CPU s | pages/CPU-s | peak RSS MiB | output | out/in |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            out = "%.1f MB" % (r["output_bytes"] / 1e6) if r["output_bytes"] else "-"
            ratio = "%.2f×" % r["output_ratio"] if r["output_ratio"] else "-"
            vs = "%.1f×" % r["x_mutool"] if r["x_mutool"] else "-"
            status = "" if r["exit"] == 0 else " (exit %d)" % r["exit"]
            print("| %s | %d | %s%s | %s | %.2f | %s | %.2f | %s | %.0f | %s | %s |" % (
                r["doc"], r["pages"], r["tool"], status, r["pages_per_s"], r["seconds"], vs,
                r["cpu_seconds"], r["pages_per_cpu_s"], r["peak_rss_mib"], out, ratio))
    if ocr:
        print()
        print("| OCR (tesseract jpn+eng, 150 DPI grey, 1 thread) | pages | image px | wall s/page | CPU s/page | words/page |")
        print("|---|---|---|---|---|---|")
        for r in ocr:
            print("| %s | %d | %s | %.2f | %.2f | %d |" % (
                r["doc"], r["pages"], r["image"], r["seconds_per_page"], r["cpu_seconds_per_page"],
                r["words_per_page"]))
    if offices:
        print()
        print("| Office document | tool | pages | pages/s (wall) | wall s | CPU s | peak RSS MiB | output |")
        print("|---|---|---|---|---|---|---|---|")
        for r in offices:
            out = "%.0f KB" % (r["output_bytes"] / 1e3) if r["output_bytes"] else "-"
            status = "" if r["exit"] == 0 else " (exit %d)" % r["exit"]
            print("| %s | %s%s | %d | %s | %.2f | %.2f | %.0f | %s |" % (
                r["doc"], r["tool"], status, r["pages"], r["pages_per_s"], r["seconds"],
                r["cpu_seconds"], r["peak_rss_mib"], out))


if __name__ == "__main__":
    main()
