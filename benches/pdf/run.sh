#!/bin/sh
# PDF benchmark: Mugai (rasterize with and without the text layer, clean) against mutool,
# pdftoppm and a Dangerzone-style PyMuPDF pipeline, on real multi-page manuals from Debian
# packages; plus tesseract's OCR cost per page and Office rasterize pages/s.
#
# Runs from a fresh clone (as root, or with the tools already installed):
#   sh benches/pdf/run.sh            # all documents
#   BENCH_DOCS="en ja" sh benches/pdf/run.sh
#   BENCH_PARTS="ocr office" BENCH_OCR_PAGES=10 sh benches/pdf/run.sh
# Prints Markdown tables (pages/s, wall seconds, peak RSS, output size); raw results go to
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

# 2. Tools: mutool, pdftoppm, qpdf, GNU time, tesseract (with Japanese), LibreOffice, PyMuPDF
#    (pip, for the benchmark only; the tests never use it).
# $2 may name several packages.
need() { command -v "$1" >/dev/null || apt-get install -y --no-install-recommends $2; }
need mutool mupdf-tools
need pdftoppm poppler-utils
need qpdf qpdf
need tesseract tesseract-ocr
[ -f /usr/share/tesseract-ocr/5/tessdata/jpn.traineddata ] \
    || apt-get install -y --no-install-recommends tesseract-ocr-jpn
need soffice "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
[ -x /usr/bin/time ] || apt-get install -y --no-install-recommends time
python3 -c "import pymupdf" 2>/dev/null || pip install pymupdf \
    || pip install --break-system-packages pymupdf || echo "PyMuPDF not installed: its rows are left out"

# 3. Mugai, release build: the manuals go through the library by the pdfsan example (same
#    sanitize_file entry point, default policy plus its flags, no worker processes); Office
#    documents through the mugai CLI (LibreOffice is a separate confined process there).
cargo build --release -p sanitizer-core --example pdfsan
cargo build --release -p gateway-daemon --bin mugai
PDFSAN="$ROOT/target/release/examples/pdfsan"
MUGAI="$ROOT/target/release/mugai"

exec python3 "$ROOT/benches/pdf/bench.py" "$PDFSAN" "$MUGAI" "$DATA/extracted" "$ROOT/benches/results/pdf.json"
