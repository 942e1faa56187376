#!/usr/bin/env bash
# SMTP throughput and added latency of `mugai serve`: Postfix's smtp-source sending to
# smtp-sink directly, and the same through Mugai (smtp-source -> mugai serve -> smtp-sink),
# for three kinds of mail. See benches/README.md ("SMTP relay") for what the figures mean.
#
#   bash benches/smtp.sh            # builds the release binary first
#   MUGAI=path/to/mugai bash benches/smtp.sh
#
# Knobs (environment): SESSIONS (20), COUNT_TEXT/HTML/PDF (messages per throughput run
# through Mugai; direct runs send 5x as many), LAT_TEXT/HTML/PDF (sequential messages for
# the latency runs), WORKERS ([pool] workers; 0 = one per CPU).
# Needs smtp-source and smtp-sink (Debian: postfix), qpdf and python3.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
SESSIONS=${SESSIONS:-20}
COUNT_TEXT=${COUNT_TEXT:-1000}
COUNT_HTML=${COUNT_HTML:-300}
COUNT_PDF=${COUNT_PDF:-40}
LAT_TEXT=${LAT_TEXT:-200}
LAT_HTML=${LAT_HTML:-100}
LAT_PDF=${LAT_PDF:-20}
WORKERS=${WORKERS:-0}

for tool in smtp-source smtp-sink qpdf python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (Debian: apt-get install postfix qpdf python3)" >&2; exit 2; }
done
if [[ -z ${MUGAI:-} ]]; then
    (cd "$root" && cargo build --release -q -p gateway-daemon)
    MUGAI=${CARGO_TARGET_DIR:-$root/target}/release/mugai
fi
[[ -x $MUGAI ]] || { echo "not executable: $MUGAI" >&2; exit 2; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/mugai-smtp-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# --- The three messages (deterministic, generated here) ---------------------------------
# (c) is made of the Japanese sample in the corpus, repeated as separate files so that qpdf
# keeps each copy's fonts and streams: about 2 MB of real text pages with embedded fonts.
pdf_src=$root/corpus/samples/real/debian-reference-ja-p1-3.pdf
copies=()
for i in $(seq 1 12); do cp "$pdf_src" "$work/part$i.pdf"; copies+=("$work/part$i.pdf"); done
n=1
while :; do
    qpdf --empty --static-id --pages "${copies[@]:0:n}" -- "$work/doc.pdf"
    (($(stat -c %s "$work/doc.pdf") >= 2000000 || n == 12)) && break
    n=$((n + 1))
done

python3 - "$work" <<'EOF'
import random, struct, sys, zlib
from email.message import EmailMessage
from email.policy import SMTP

work = sys.argv[1]
rnd = random.Random(42)

def base(subject):
    m = EmailMessage(policy=SMTP)
    m["From"] = "Sender <sender@internet.test>"
    m["To"] = "Bench <bench@example.lg.jp>"
    m["Subject"] = subject
    m["Date"] = "Thu, 03 Dec 2026 10:00:00 +0900"
    m["Message-ID"] = "<bench-%s@internet.test>" % subject.split()[0]
    return m

line_ja = "市民の皆様へ。令和八年度の窓口業務について、下記のとおりお知らせいたします。"
line_en = "Please find the schedule for the coming quarter below; contact the office with questions."

# Sizes are of the whole message as sent: UTF-8 text goes base64 (4/3 of the raw bytes).
# (a) 10 KiB: plain text, Japanese and English.
body = []
while sum(len(l.encode()) + 1 for l in body) < 7 * 1024:
    body.append(line_ja if len(body) % 2 == 0 else line_en)
a = base("text 10KiB")
a.set_content("\n".join(body) + "\n", charset="utf-8")

# (b) about 200 KiB: an HTML newsletter (links, a table, a script to remove) and a PNG.
def png(w, h):
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            raw += bytes(((x * 255 // w) ^ rnd.randrange(64), (y * 255 // h), rnd.randrange(256)))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))

image = png(160, 120)
sections = []
i = 0
while True:
    sections.append(
        f'<h2>第{i + 1}節 お知らせ</h2><p>{line_ja * 3}</p><p>{line_en} '
        f'<a href="https://www.city.example.lg.jp/news/{i}.html">詳細 {i}</a></p>'
        f'<table border="1"><tr><th>日付</th><th>内容</th></tr>'
        f'<tr><td>2026-12-{i % 28 + 1:02d}</td><td>窓口 {i}</td></tr></table>')
    html = ('<html><head><script>document.write("x")</script></head><body>'
            '<img src="https://tracker.test/p.gif" width="1" height="1">'
            + "".join(sections) + "</body></html>")
    i += 1
    if len(html.encode()) + len(image) >= 146 * 1024:
        break
b = base("html 200KiB")
# HTML only, no text/plain alternative, so the HTML is what gets converted.
b.set_content(html, subtype="html", charset="utf-8")
b.add_attachment(image, maintype="image", subtype="png", filename="map.png")

# (c) the 2 MB PDF as an attachment.
c = base("pdf 2MB")
c.set_content("資料を添付します。\n", charset="utf-8")
with open(f"{work}/doc.pdf", "rb") as f:
    c.add_attachment(f.read(), maintype="application", subtype="pdf", filename="shiryou.pdf")

for name, m in (("text", a), ("html", b), ("pdf", c)):
    with open(f"{work}/{name}.eml", "wb") as f:
        f.write(m.as_bytes())
EOF

# --- The sink and Mugai --------------------------------------------------------------------
sink_port=$(free_port)
mugai_port=$(free_port)
sink_user=()
[[ $(id -u) == 0 ]] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" "127.0.0.1:$sink_port" 256 >"$work/sink.log" 2>&1 &
pids+=($!)
mkdir -p "$work/state"
cat >"$work/mugai.toml" <<EOF
[pool]
workers = $WORKERS

[quarantine]
dir = "$work/state/quarantine"
key_file = "$work/state/quarantine.key"

[smtp]
listen = ["127.0.0.1:$mugai_port"]
accepted_domains = ["example.lg.jp"]

[downstream]
kind = "smtp"
address = "127.0.0.1:$sink_port"
tls = "none"

[audit]
file = "$work/state/audit.jsonl"

# Only the relay: the drop folder and the HTTP API would want their own paths and port.
[dropdir]
enabled = false

[http]
enabled = false

[log]
file = "$work/mugai.log"
EOF
"$MUGAI" serve --config "$work/mugai.toml" 2>>"$work/mugai.log" &
mugai_pid=$!
pids+=($mugai_pid)
wait_port "$sink_port"
wait_port "$mugai_port"

# --- Throughput: smtp-source, SESSIONS parallel sessions, connections reused (-d) ------------
# Prints messages per second for COUNT messages of FILE to PORT.
throughput() {
    local port=$1 file=$2 count=$3 t0 t1
    t0=$(date +%s.%N)
    smtp-source -d -s "$SESSIONS" -m "$count" -F "$file" -f sender@internet.test \
        -t bench@example.lg.jp "127.0.0.1:$port" >"$work/source.log" 2>&1 \
        || { echo "smtp-source failed:" >&2; cat "$work/source.log" >&2; tail -5 "$work/mugai.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c "print(f'{$count / ($t1 - $t0):.1f}')"
}

# --- Latency: one client, one session, messages one after another ---------------------------
# Prints "median p99" in milliseconds of the time from MAIL FROM to the reply to the data.
latency() {
    python3 - "$1" "$2" "$3" <<'EOF'
import smtplib, sys, time
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
msg = open(path, "rb").read()
s = smtplib.SMTP("127.0.0.1", port, timeout=600)
s.ehlo("bench.test")
s.sendmail("sender@internet.test", ["bench@example.lg.jp"], msg)  # warm-up, not counted
times = []
for _ in range(n):
    t0 = time.perf_counter()
    s.sendmail("sender@internet.test", ["bench@example.lg.jp"], msg)
    times.append((time.perf_counter() - t0) * 1000)
s.quit()
times.sort()
rank = lambda q: times[min(len(times) - 1, max(0, -(-len(times) * q // 100) - 1))]
print(f"{rank(50):.2f} {rank(99):.2f}")
EOF
}

# CPU seconds Mugai and its reaped workers have used so far (utime, stime, cutime, cstime).
mugai_cpu() {
    python3 -c "
import os, sys
f = open('/proc/$mugai_pid/stat').read().rsplit(')', 1)[1].split()
print(sum(int(x) for x in f[11:15]) / os.sysconf('SC_CLK_TCK'))"
}

audit_lines() { [[ -f $work/state/audit.jsonl ]] && wc -l <"$work/state/audit.jsonl" || echo 0; }

rows=()
for kind in text html pdf; do
    case $kind in
        text) count=$COUNT_TEXT lat=$LAT_TEXT label="(a) 10 KiB text" ;;
        html) count=$COUNT_HTML lat=$LAT_HTML label="(b) 200 KiB HTML + PNG" ;;
        pdf) count=$COUNT_PDF lat=$LAT_PDF label="(c) 2 MB PDF attachment" ;;
    esac
    file=$work/$kind.eml
    echo "running $label: $(stat -c %s "$file") bytes ..." >&2
    direct=$(throughput "$sink_port" "$file" $((count * 5)))
    before=$(audit_lines)
    cpu0=$(mugai_cpu)
    via=$(throughput "$mugai_port" "$file" "$count")
    cpu1=$(mugai_cpu)
    read -r dmed dp99 < <(latency "$sink_port" "$file" "$lat")
    read -r mmed mp99 < <(latency "$mugai_port" "$file" "$lat")
    after=$(audit_lines)
    # Every message through Mugai is one audit line: proof that the work was done.
    expected=$((count + lat + 1))
    ((after - before == expected)) || { echo "audit log has $((after - before)) new lines, expected $expected" >&2; exit 1; }
    verdict=$(tail -n 1 "$work/state/audit.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("verdict", "?"))')
    rows+=("$(python3 -c "
d, v = $direct, $via
cpu = ($cpu1 - $cpu0) / $count * 1000
print(f'| $label | $(stat -c %s "$file") | {d:,.1f} | {v:,.1f} | {v / d * 100:.1f} % | {cpu:.1f} | {$(nproc) * 1000 / cpu:,.0f} | $dmed | $mmed | {$mmed - $dmed:.1f} | $dp99 | $mp99 | {$mp99 - $dp99:.1f} | $verdict |')
")")
done

kill "$mugai_pid"
out_dir=$root/benches/results
mkdir -p "$out_dir"
out=$out_dir/smtp-$(date +%F).txt
{
    echo "# mugai serve vs smtp-source -> smtp-sink directly ($(date -Iseconds))"
    echo
    echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo ' (modified)'), $(nproc) CPUs, load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "$SESSIONS sessions, connections reused (smtp-source -d); [pool] workers = $WORKERS (0 = one per CPU); direct runs send 5x the messages"
    echo "latency: one session, messages one after another, MAIL FROM to the reply to the data (ms)"
    echo
    echo "Mugai CPU: its own and its workers' CPU time during the throughput run, per message; CPU bound: msg/s if all $(nproc) CPUs did nothing else"
    echo
    echo "| workload | bytes | direct msg/s | via Mugai msg/s | ratio | Mugai CPU ms/msg | CPU bound msg/s | direct median | Mugai median | added median | direct p99 | Mugai p99 | added p99 | verdict |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$out"
echo "written to $out" >&2
