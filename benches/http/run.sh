#!/bin/sh
# HTTP API benchmark: POST /v1/sanitize requests/s for a small HTML file (2 KB, with a script
# to remove) at 16 concurrent clients, beside the same jobs through the command line:
# one `mugai sanitize DIR` batch run, and one `mugai sanitize FILE` process per file (16 at a
# time, as a script calling the CLI would do).
#
#   sh benches/http/run.sh                       # REQUESTS=800 CLIENTS=16 by default
#   REQUESTS=2000 CLIENTS=32 sh benches/http/run.sh
# Release build; the daemon runs with the default pool (one worker process per job, as many
# at once as CPUs). Prints one line per run.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REQUESTS=${REQUESTS:-800}
CLIENTS=${CLIENTS:-16}
cargo build --release -q -p gateway-daemon
BIN="$TARGET/release/mugai"
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The sample: a small page with a script, so every job does real work (parse, convert, hold).
{
    printf '<html><head><title>お知らせ</title><script>alert(1)</script></head><body>\n'
    i=0
    while [ $i -lt 20 ]; do
        printf '<p>市民の皆様へ: 窓口の受付時間が変わります。 Line %s of the notice.</p>\n' $i
        i=$((i + 1))
    done
    printf '</body></html>\n'
} > "$WORK/page.html"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/mugai.toml" <<TOML
[quarantine]
dir = "$WORK/quarantine"
[smtp]
enabled = false
[dropdir]
enabled = false
[http]
listen = "127.0.0.1:$PORT"
users_file = "$WORK/users.sqlite"
max_concurrent = 64
[log]
file = "$WORK/mugai.log"
level = "warn"
TOML
"$BIN" user add bench --role requester --config "$WORK/mugai.toml" 2>/dev/null
TOKEN=$("$BIN" user token bench --config "$WORK/mugai.toml" 2>/dev/null)
"$BIN" serve --config "$WORK/mugai.toml" 2>"$WORK/serve.err" &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done

echo "sample: $(wc -c < "$WORK/page.html") bytes HTML; $(nproc) CPUs"
printf 'http    /v1/sanitize, %s clients: ' "$CLIENTS"
python3 "$ROOT/benches/http/client.py" 127.0.0.1 "$PORT" "$TOKEN" "$WORK/page.html" "$REQUESTS" "$CLIENTS"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

mkdir "$WORK/in"
i=0
while [ $i -lt "$REQUESTS" ]; do cp "$WORK/page.html" "$WORK/in/$i.html"; i=$((i + 1)); done
t0=$(date +%s.%N)
"$BIN" sanitize --quiet "$WORK/in" -o "$WORK/out"
t1=$(date +%s.%N)
python3 -c "print('cli     mugai sanitize DIR (one batch, %d files): %.1f files/s, %.2f s' % ($REQUESTS, $REQUESTS / ($t1 - $t0), $t1 - $t0))"

N=$((REQUESTS / 4))
mkdir "$WORK/out1"
t0=$(date +%s.%N)
ls "$WORK/in" | head -n "$N" | xargs -P "$CLIENTS" -I{} "$BIN" sanitize --quiet "$WORK/in/{}" -o "$WORK/out1/{}.txt"
t1=$(date +%s.%N)
python3 -c "print('cli     mugai sanitize FILE (process per file, %d files, %d at once): %.1f files/s, %.2f s' % ($N, $CLIENTS, $N / ($t1 - $t0), $t1 - $t0))"
