#!/usr/bin/env python3
"""Runs each PDF pipeline once under /usr/bin/time -v and prints a Markdown table.

Usage: bench.py PDFSAN_BINARY EXTRACTED_DIR RESULTS_JSON  (see run.sh)
"""

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


def timed(cmd):
    """(wall seconds, peak RSS MiB, exit code) of cmd under GNU time."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
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
    return int(r.stdout.strip())


def main():
    binary, extracted, results = sys.argv[1:4]
    wanted = os.environ.get("BENCH_DOCS", "en ja gnuplot asy").split()
    rows = []
    tmp = tempfile.mkdtemp(prefix="mugai-bench-")
    try:
        for key in wanted:
            rel, title = DOCS[key]
            src = os.path.join(extracted, rel)
            pages = npages(src)
            size_in = os.path.getsize(src)
            out = os.path.join(tmp, "out.pdf")
            render_dir = os.path.join(tmp, "pages")
            runs = [
                ("mugai rasterize (2 threads)", [binary, src, out], out),
                ("mugai clean", [binary, "--mode", "clean", src, out], out),
                ("hayro render only, 1 thread", [binary, "--render-only", src], None),
                ("mutool draw -r 150 (render only)", ["mutool", "draw", "-q", "-r", "150", src], None),
                ("pdftoppm -r 150 (PPM files)", ["pdftoppm", "-r", "150", src, os.path.join(render_dir, "p")], None),
                ("PyMuPDF pixmap -> PDF (Dangerzone-style)", [sys.executable, "-c", PYMUPDF, src, out], out),
            ]
            for name, cmd, output in runs:
                if output and os.path.exists(output):
                    os.remove(output)
                shutil.rmtree(render_dir, ignore_errors=True)
                os.makedirs(render_dir)
                secs, cpu, rss, code = timed(cmd)
                size_out = os.path.getsize(output) if output and os.path.exists(output) else None
                rows.append({
                    "doc": title, "pages": pages, "input_bytes": size_in, "tool": name,
                    "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                    "pages_per_s": round(pages / secs, 1) if secs else None,
                    "pages_per_cpu_s": round(pages / cpu, 1) if cpu else None,
                    "peak_rss_mib": round(rss, 1), "exit": code, "output_bytes": size_out,
                    "output_ratio": round(size_out / size_in, 2) if size_out else None,
                })
                shutil.rmtree(render_dir, ignore_errors=True)
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(results, "w") as f:
        json.dump(rows, f, indent=1)
    print("| document | pages | tool | pages/s (wall) | wall s | CPU s | pages/CPU-s | peak RSS MiB | output | out/in |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out = "%.1f MB" % (r["output_bytes"] / 1e6) if r["output_bytes"] else "-"
        ratio = "%.2f×" % r["output_ratio"] if r["output_ratio"] else "-"
        status = "" if r["exit"] == 0 else " (exit %d)" % r["exit"]
        print("| %s | %d | %s%s | %s | %.2f | %.2f | %s | %.0f | %s | %s |" % (
            r["doc"], r["pages"], r["tool"], status, r["pages_per_s"], r["seconds"],
            r["cpu_seconds"], r["pages_per_cpu_s"], r["peak_rss_mib"], out, ratio))


if __name__ == "__main__":
    main()
