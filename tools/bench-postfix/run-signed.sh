#!/usr/bin/env bash
# run-signed.sh — run.sh's comparison on a signed corpus with Elemta's auth
# plugins on. signedsrc (this directory) writes MSGS distinct messages of
# about SIZE bytes, each with its own Message-ID and body text, From: and
# MAIL FROM at example.test, DKIM-signed RSA-2048 relaxed/relaxed with the
# test zone's rsa2048 key (signing done before anything is timed), then
# sends that corpus to each MTA over SESSIONS concurrent sessions, one
# connection per message, from 127.0.0.1 (SPF pass: example.test lists
# 127.0.0.0/8). Elemta runs spf, dkim (verify), dmarc and authres with its
# resolver on the test unbound; Postfix is run.sh's (no milter, no checks).
# Both deliver to Maildirs. Reports msgs/s and CPU seconds per 1,000
# messages as run.sh does, then fails unless every copy Elemta delivered
# carries dkim=pass and dmarc=pass in Authentication-Results.
#
# Usage: tools/bench-postfix/run-signed.sh [BIN]   (make bench-postfix-signed)
# Environment: SESSIONS ("1 10 50"), MSGS (1000), SIZE (10240 bytes),
# PF_PORT (12625), EL_PORT (12626), ELEMTA_TEST_DNS and ELEMTA_TEST_KEYS
# (the test environment's: make testenv; sourced from .testenv/env.sh of
# this checkout when unset).
set -euo pipefail
BIN=$(realpath "${1:-bin/elemta}")
SESSIONS=${SESSIONS:-"1 10 50"}; MSGS=${MSGS:-1000}; SIZE=${SIZE:-10240}
PF_PORT=${PF_PORT:-12625}; EL_PORT=${EL_PORT:-12626}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
[ -x "$BIN" ] || { echo "bench-postfix: $BIN not built (make build)" >&2; exit 1; }
if [ -z "${ELEMTA_TEST_DNS:-}" ] && [ -f "$repo/.testenv/env.sh" ]; then . "$repo/.testenv/env.sh"; fi
[ -n "${ELEMTA_TEST_DNS:-}" ] && [ -n "${ELEMTA_TEST_KEYS:-}" ] ||
  { echo "bench-postfix: ELEMTA_TEST_DNS and ELEMTA_TEST_KEYS unset (make testenv; . .testenv/env.sh)" >&2; exit 1; }
KEY="$ELEMTA_TEST_KEYS/rsa2048.pem"
[ -r "$KEY" ] || { echo "bench-postfix: $KEY: no DKIM key (make testenv)" >&2; exit 1; }

ROOT=$(mktemp -d /tmp/bench-postfix-signed.XXXXXX)
chmod 755 "$ROOT" # mktemp makes it 0700: Postfix's daemons (user postfix) must reach their queue
EL_PID=
cleanup() {
  postfix -c "$ROOT/pf/etc" stop >/dev/null 2>&1 || true
  [ -n "$EL_PID" ] && kill "$EL_PID" 2>/dev/null && wait "$EL_PID" 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

SRC="$ROOT/signedsrc"
(cd "$repo" && go build -o "$SRC" ./tools/bench-postfix/signedsrc)
"$SRC" gen -dir "$ROOT/corpus" -m "$MSGS" -l "$SIZE" -key "$KEY" -domain example.test -selector rsa2048 \
  -from a@example.test -to postmaster@example.test

start_bench_postfix "$here" "$ROOT/pf" "$PF_PORT"

mkdir -p "$ROOT/el"
cat >"$ROOT/el/elemta.toml" <<CF
[server]
listen = "127.0.0.1:$EL_PORT"
hostname = "el.example.test"
spool_dir = "$ROOT/el/spool"
maildir_root = "$ROOT/el/mail"
local_domains = ["example.test"]
# as run.sh: Postfix exempts loopback clients from its per-client limits
max_connections_per_client = 1000

[plugins]
plugins = ["spf", "dkim", "dmarc", "authres"]
[plugins.dkim]
timeout = "5s"

[dns]
servers = ["$ELEMTA_TEST_DNS"]
CF
"$BIN" config check "$ROOT/el/elemta.toml" >/dev/null
"$BIN" serve --config "$ROOT/el/elemta.toml" >"$ROOT/el/log" 2>&1 &
EL_PID=$!
wait_port "$EL_PORT"

# send PORT SESSIONS: the load of one measurement.
send() { "$SRC" send -dir "$ROOT/corpus" -addr "127.0.0.1:$1" -s "$2" -from a@example.test -to postmaster@example.test; }
measure "$ROOT" "$EL_PID"
"$SRC" check -dir "$ROOT/el/mail/example.test/postmaster/new" -want "$(( $(wc -w <<<"$SESSIONS") * MSGS ))"
