#!/usr/bin/env bash
# Checks the Postfix snippets in this folder by running them: for each layout (inline/,
# content-filter/) it builds a private, loopback-only Postfix from a minimal base plus the
# layout's main.cf and master.cf as they are written (only ports and the LGWAN address
# replaced), runs `postfix check`, starts it, puts `mugai serve` (with the layout's
# mugai.toml) and an smtp-sink standing in for the LGWAN-side MTA behind it, sends a message
# with swaks and waits for it to arrive sanitized. Nothing outside a temporary folder is
# touched; needs root (Postfix's own users), postfix, smtp-sink and swaks.
#
#   deploy/postfix/check.sh [PATH/TO/mugai]
#
# Without a mugai binary, an smtp-sink stands in for Mugai: that checks Postfix's side only
# (the hop to Mugai, and for content-filter/ that the reinjection smtpd delivers to the LGWAN
# side without filtering again). Exit status 0 when every check passed. KEEP=1 keeps each
# layout's temporary folder (configurations, logs, the messages that arrived).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mugai=${1:-}
[[ -z $mugai || -x $mugai ]] || { echo "not executable: $mugai" >&2; exit 2; }
for tool in postfix postqueue smtp-sink swaks python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "run as root (a private Postfix needs its own users)" >&2; exit 2; }

pids=()
work=""
cleanup() {
    set +e
    [[ -n $work && -d $work/etc ]] && postfix -c "$work/etc" stop >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    pids=()
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fail() { echo "FAIL [$layout]: $*" >&2; [[ -f $work/postfix.log ]] && tail -20 "$work/postfix.log" >&2; exit 1; }

# Waits up to $2 seconds for a file in $1 containing $3.
wait_for() {
    local dir=$1 secs=$2 pattern=$3 i
    for ((i = 0; i < secs * 5; i++)); do
        if grep -qls -- "$pattern" "$dir"/* 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

check_layout() {
    layout=$1
    work=$(mktemp -d /tmp/mugai-postfix-check.XXXXXX)
    chmod 755 "$work"
    mkdir -p "$work/etc" "$work/queue" "$work/data" "$work/lgwan" "$work/mugai"
    chown postfix "$work/data" "$work/lgwan" "$work/mugai"
    local in_port mugai_port lgwan_port reinject_port
    in_port=$(free_port); mugai_port=$(free_port); lgwan_port=$(free_port); reinject_port=$(free_port)

    # The base: what a real installation has anyway (queue, users), made loopback-only and
    # DNS-free. myhostname is left at its default, the machine's name, as on a real host
    # (Mugai's greeting must then differ from it; see mugai.toml).
    cat >"$work/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $work/queue
data_directory = $work/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
# The test client on 127.0.0.1 must count as a stranger from the internet.
mynetworks = 192.0.2.0/24
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
maillog_file = /dev/stdout
EOF
    sed -e "s/\[127\.0\.0\.1\]:2525/[127.0.0.1]:$mugai_port/g" \
        -e "s/\[192\.0\.2\.25\]:25/[127.0.0.1]:$lgwan_port/g" \
        "$here/$layout/main.cf" >>"$work/etc/main.cf"
    cat >"$work/etc/master.cf" <<EOF
127.0.0.1:$in_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    sed -e "s/^127\.0\.0\.1:10026 /127.0.0.1:$reinject_port /" \
        "$here/$layout/master.cf" >>"$work/etc/master.cf"

    # Configuration check: no error, and no warning either (an unknown or misspelt
    # parameter is only a warning to Postfix).
    postfix -c "$work/etc" check >"$work/check.out" 2>&1 || { cat "$work/check.out"; fail "postfix check"; }
    postconf -c "$work/etc" -n >/dev/null 2>>"$work/check.out"
    postconf -c "$work/etc" -M >/dev/null 2>>"$work/check.out"
    if grep -i 'warning\|error\|fatal' "$work/check.out"; then fail "postfix check/postconf warned"; fi
    echo "ok   [$layout] postfix check, postconf -n/-M: no warnings"

    postfix -c "$work/etc" start-fg >"$work/postfix.log" 2>&1 &
    pids+=($!)
    smtp-sink -u postfix -d "$work/lgwan/%M." "127.0.0.1:$lgwan_port" 50 >"$work/lgwan.log" 2>&1 &
    pids+=($!)
    if [[ -n $mugai ]]; then
        mkdir -p "$work/mugai-state"
        sed -e "s/127\.0\.0\.1:2525/127.0.0.1:$mugai_port/g" \
            -e "s/192\.0\.2\.25:25/127.0.0.1:$lgwan_port/g" \
            -e "s/127\.0\.0\.1:10026/127.0.0.1:$reinject_port/g" \
            "$here/$layout/mugai.toml" >"$work/mugai.toml"
        cat >>"$work/mugai.toml" <<EOF

[pool]
workers = 2

[quarantine]
dir = "$work/mugai-state/quarantine"
key_file = "$work/mugai-state/quarantine.key"

[audit]
file = "$work/mugai-state/audit.jsonl"

# Only the relay: the drop folder and the HTTP API would want their own paths and port.
[dropdir]
enabled = false

[http]
enabled = false
EOF
        "$mugai" check-config "$work/mugai.toml" >"$work/mugai-check.out" 2>&1 \
            || { cat "$work/mugai-check.out"; fail "mugai check-config"; }
        "$mugai" serve --config "$work/mugai.toml" >"$work/mugai.log" 2>&1 &
        pids+=($!)
    else
        # Stand-in for Mugai, greeting with the machine's name as Mugai does by default.
        smtp-sink -u postfix -h "$(hostname)" -d "$work/mugai/%M." "127.0.0.1:$mugai_port" 50 \
            >"$work/standin.log" 2>&1 &
        pids+=($!)
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$in_port") 2>/dev/null && break
        sleep 0.2
    done

    # A relay attempt for a domain that is not ours is refused at the edge.
    if swaks --server "127.0.0.1:$in_port" --from a@internet.test --to b@elsewhere.test \
        --helo internet.test >"$work/swaks-relay.out" 2>&1; then
        fail "relayed mail for a domain that is not ours"
    fi
    echo "ok   [$layout] mail for another domain refused (554 relay access denied)"

    swaks --server "127.0.0.1:$in_port" --from sender@internet.test --to taro@example.lg.jp \
        --helo internet.test --header "Subject: postfix-check-$layout" \
        --header "Content-Type: text/html; charset=utf-8" \
        --body '<p>Hello <script>alert(1)</script><a href="http://evil.test/">link</a></p>' \
        >"$work/swaks.out" 2>&1 || { cat "$work/swaks.out"; fail "swaks into Postfix"; }

    if [[ -n $mugai ]]; then
        wait_for "$work/lgwan" 60 "postfix-check-$layout" \
            || { tail -20 "$work/mugai.log" >&2; fail "nothing reached the LGWAN side in 60 s"; }
        local got
        got=$(grep -ls -- "postfix-check-$layout" "$work"/lgwan/*)
        # The body may be base64: read it as a mail reader would.
        python3 - "$got" <<'PY' || fail "arrived, but not as Mugai delivers it"
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
part = m.get_body(("plain", "html"))
body = part.get_content() if part else ""
problems = [why for bad, why in (
    (not m.get("X-Mugai-Report-Id"), "no X-Mugai-Report-Id"),
    ("Sanitization notice" not in body, "no notice"),
    ("<script" in body or "alert(" in body, "the script survived"),
    ("http://evil.test" in body, "the link was not defanged"),
) if bad]
if problems:
    print("\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
        echo "ok   [$layout] Postfix -> mugai serve -> LGWAN side: arrived sanitized ($(grep -ci '^Received:' "$got") Received: headers)"
    else
        wait_for "$work/mugai" 30 "postfix-check-$layout" || fail "nothing reached Mugai's port in 30 s"
        echo "ok   [$layout] Postfix -> Mugai's port (stand-in; no mugai binary given)"
        if [[ $layout == content-filter ]]; then
            # What Mugai would do: hand the message back to the reinjection smtpd. It must go
            # to the LGWAN side, not back into the filter.
            swaks --server "127.0.0.1:$reinject_port" --from sender@internet.test \
                --to taro@example.lg.jp --helo mugai.test --header "Subject: reinjected-$layout" \
                >"$work/swaks-reinject.out" 2>&1 || { cat "$work/swaks-reinject.out"; fail "swaks into the reinjection smtpd"; }
            wait_for "$work/lgwan" 30 "reinjected-$layout" || fail "reinjected mail did not reach the LGWAN side"
            if grep -qls -- "reinjected-$layout" "$work"/mugai/* 2>/dev/null; then
                fail "reinjected mail went through the filter again (loop)"
            fi
            echo "ok   [$layout] reinjection smtpd -> LGWAN side, not filtered again"
        fi
    fi

    for ((i = 0; i < 50; i++)); do
        postqueue -c "$work/etc" -p 2>&1 | grep -q 'Mail queue is empty' && break
        sleep 0.2
    done
    postqueue -c "$work/etc" -p 2>&1 | grep -q 'Mail queue is empty' \
        || { postqueue -c "$work/etc" -p >&2; fail "Postfix's queue is not empty"; }
    echo "ok   [$layout] Postfix's queue is empty"
    if grep -E 'warning:|error:|fatal:|panic:' "$work/postfix.log"; then fail "Postfix logged the warnings above"; fi
    echo "ok   [$layout] no warning in Postfix's log"
    cleanup
    if [[ -n ${KEEP:-} ]]; then echo "kept: $work"; else rm -rf "$work"; fi
    work=""
}

check_layout inline
check_layout content-filter
echo "all Postfix layouts checked"
