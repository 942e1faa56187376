#!/bin/sh
# PDF benchmark: Mugai (rasterize and clean) against mutool, pdftoppm and a Dangerzone-style
# PyMuPDF pipeline, on real multi-page manuals from Debian packages.
#
# Runs from a fresh clone (as root, or with the tools already installed):
#   sh benches/pdf/run.sh            # all documents
#   BENCH_DOCS="en ja" sh benches/pdf/run.sh
# Prints a Markdown table (pages/s, wall seconds, peak RSS, output size); raw results go to
# benches/results/pdf.json. Data and results are gitignored.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DATA="$ROOT/benches/data"
mkdir -p "$DATA" "$ROOT/benches/results"

# 1. Documents: Debian manuals (English and Japanese Debian Reference, gnuplot, Asymptote).
if [ ! -d "$DATA/extracted" ]; then
    (cd "$DATA" && apt-get download debian-reference-en debian-reference-ja gnuplot-doc asymptote-doc \
        && for f in *.deb; do dpkg -x "$f" extracted; done)
fi

# 2. Tools: mutool, pdftoppm, PyMuPDF, GNU time.
command -v mutool >/dev/null || apt-get install -y --no-install-recommends mupdf-tools
command -v pdftoppm >/dev/null || apt-get install -y --no-install-recommends poppler-utils
[ -x /usr/bin/time ] || apt-get install -y --no-install-recommends time
python3 -c "import pymupdf" 2>/dev/null || pip install pymupdf

# 3. Mugai, release build. Until the mugai CLI is on main, the library is driven by the
#    pdfsan example (same sanitize_file entry point, default policy plus --mode).
cargo build --release -p sanitizer-core --example pdfsan
BIN="$ROOT/target/release/examples/pdfsan"

exec python3 "$ROOT/benches/pdf/bench.py" "$BIN" "$DATA/extracted" "$ROOT/benches/results/pdf.json"
