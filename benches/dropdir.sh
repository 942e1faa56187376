#!/usr/bin/env bash
# Drop-directory throughput next to `mugai sanitize DIR -o OUT` on the same 1,000 files.
#
#   bash benches/dropdir.sh            # release build, 1,000 files, 2 pool workers, 3 rounds
#   N=200 WORKERS=4 ROUNDS=5 bash benches/dropdir.sh
#
# The two runs alternate ROUNDS times (CLI, daemon, CLI, daemon, ...) and the median of the
# per-round ratios is the figure: on a shared machine the load changes between runs.
# Both runs use the worker pool with WORKERS processes, quarantine the originals that are not
# clean and write one report per file. The daemon is timed from the moment the files are
# moved into its inbox (one rename per folder: "the first drop") until the last audit line
# (written after the output and its report; polled every 0.1 s); the CLI from start to exit. The files:
# small HTML with a script (-> .txt), text notes, executables (blocked) and, one in ten,
# corpus samples (docm, PDF with JavaScript, disguised setup.txt, ZIP with an EXE).
# settle_secs = 1: every file waits one second unchanged before it is taken, which the
# figure includes. CPU time (user + system, worker processes included; for the daemon also
# its start and stop) is given beside wall time: on the shared build machine wall time
# mostly measures the other processes (one pair of runs varied from 0.7 to 2.1 in ratio).
set -euo pipefail

N=${N:-1000}
WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --quiet --release -p gateway-daemon --bin mugai
MUGAI=$TARGET/release/mugai

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The files, generated once and copied for each run.
python3 - "$WORK/src" "$N" "$ROOT/corpus/samples" <<'EOF'
import os, sys
src, n, corpus = sys.argv[1], int(sys.argv[2]), sys.argv[3]
samples = [("docm", "office/macro.docm"), ("pdf", "pdf/js_openaction.pdf"),
           ("txt", "disguised/setup.txt"), ("zip", "archives/zip_exe_and_txt.zip")]
samples = [(ext, open(os.path.join(corpus, p), "rb").read()) for ext, p in samples]
for i in range(n):
    d = os.path.join(src, f"d{i % 10}")
    os.makedirs(d, exist_ok=True)
    k = i % 10
    if k == 0:
        ext, data = samples[(i // 10) % len(samples)]
        name = f"sample{i}.{ext}"
    elif k == 1:
        name, data = f"tool{i}.exe", b"MZ\x90\x00\x03\x00"
    elif k <= 5:
        name = f"page{i}.html"
        data = f"<html><script>x({i})</script><p>ページ {i}</p></html>".encode()
    else:
        name = f"note{i}.txt"
        data = (f"メモ {i}\n" + "本文 " * (i % 50) + "\n").encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
EOF

now() { date +%s.%N; }
count_reports() { find "$1" -name '*.report.json' | wc -l; }

# The command line: prints its wall time in seconds.
run_cli() {
    local C=$WORK/cli.$1
    mkdir -p "$C"
    local t0 t1 rc=0
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$C/cpu" "$MUGAI" sanitize --quiet --quarantine "$C/q" \
        --report "$C/reports.jsonl" -j "$WORKERS" "$WORK/src" -o "$C/out" 2>"$C/stderr" || rc=$?
    t1=$(now)
    if [[ $rc != 0 && $rc != 3 ]]; then cat "$C/stderr" >&2; exit 1; fi
    [[ $(wc -l <"$C/reports.jsonl") == "$N" ]] || { echo "CLI: not $N reports" >&2; exit 1; }
    local cpu
    cpu=$(tail -1 "$C/cpu" | awk '{print $1 + $2}')
    rm -rf "$C"
    python3 -c "print($t1 - $t0, $cpu)"
}

# The daemon: prints the seconds from the first drop to the last report.
run_daemon() {
    local D=$WORK/daemon.$1
    mkdir -p "$D/inbox" "$D/staging"
    cp -r "$WORK/src/." "$D/staging/"
    cat >"$D/mugai.toml" <<EOF
[pool]
workers = $WORKERS
[quarantine]
dir = "$D/quarantine"
key_file = "$D/quarantine.key"
[smtp]
enabled = false
[http]
enabled = false
[dropdir]
enabled = true
inbox = "$D/inbox"
outbox = "$D/outbox"
work = "$D/work"
settle_secs = 1
rescan_secs = 30
[audit]
file = "$D/audit.jsonl"
[log]
file = "$D/mugai.log"
level = "warn"
EOF
    /usr/bin/time -f "%U %S" -o "$D/cpu" "$MUGAI" serve --config "$D/mugai.toml" 2>"$D/stderr" &
    DAEMON=$!
    # This runs in a command substitution: its own trap stops the daemon on any exit.
    trap 'if [[ -n $DAEMON ]]; then pkill -TERM -P "$DAEMON" 2>/dev/null || true; fi' EXIT
    for _ in $(seq 100); do
        grep -q "drop directory" "$D/stderr" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    local t0 t1
    t0=$(now)
    for sub in "$D"/staging/*; do mv "$sub" "$D/inbox/"; done
    # The audit line of a file is written after its output and report; counting lines is
    # cheap, where walking the outbox every poll would take CPU from the daemon.
    while [[ $(wc -l <"$D/audit.jsonl" 2>/dev/null || echo 0) -lt $N ]]; do
        kill -0 "$DAEMON" || { cat "$D/stderr" >&2; exit 1; }
        sleep 0.1
    done
    t1=$(now)
    [[ $(count_reports "$D/outbox") == "$N" ]] || { echo "daemon: not $N reports" >&2; exit 1; }
    # SIGTERM to mugai itself (`time` does not pass signals on); `time` reports once it exited.
    pkill -TERM -P "$DAEMON" || true
    wait "$DAEMON" || true; DAEMON=
    local cpu
    cpu=$(tail -1 "$D/cpu" | awk '{print $1 + $2}')
    rm -rf "$D"
    python3 -c "print($t1 - $t0, $cpu)"
}

results=()
for r in $(seq "$ROUNDS"); do
    c=$(run_cli "$r")
    d=$(run_daemon "$r")
    results+=("$c $d")
    echo "round $r: CLI $c, daemon $d (wall s, CPU s)" >&2
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
n = int(sys.argv[1])
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
print(f"files: {n}, rounds: {len(rows)}")
print("round   CLI wall s  f/s   CPU s | daemon wall s  f/s   CPU s | wall ratio  CPU ratio")
for i, (cw, cc, dw, dc) in enumerate(rows, 1):
    print(f"{i:>5} {cw:11.2f} {n / cw:5.0f} {cc:7.2f} | {dw:13.2f} {n / dw:5.0f} {dc:7.2f} |"
          f" {dw / cw:10.2f} {dc / cc:10.2f}")
med = lambda xs: statistics.median(list(xs))
print(f"median daemon/CLI: wall {med(dw / cw for cw, _, dw, _ in rows):.2f}, "
      f"CPU {med(dc / cc for _, cc, _, dc in rows):.2f}  (goal < 1.20)")
' "$N"
