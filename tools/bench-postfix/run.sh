#!/usr/bin/env bash
# run.sh — `elemta serve` and a private Postfix side by side, driven by the
# same client (Postfix's smtp-source) with the same messages, both
# delivering to Maildirs on the same disk. For each session count it
# reports messages per second (from the first connection to the last
# message in the Maildir) and CPU seconds per 1,000 messages (user +
# system of the MTA's processes: elemta's one process; Postfix's master,
# its live children and the children it reaped).
#
# Usage: tools/bench-postfix/run.sh [BIN]   (make bench-postfix)
# Environment: SESSIONS ("1 10 50"), MSGS (1000), SIZE (10240 bytes),
# PF_PORT (12625), EL_PORT (12626). Needs Debian's postfix package
# (start-postfix.sh installs it when missing) and smtp-source.
set -euo pipefail
BIN=$(realpath "${1:-bin/elemta}")
SESSIONS=${SESSIONS:-"1 10 50"}; MSGS=${MSGS:-1000}; SIZE=${SIZE:-10240}
PF_PORT=${PF_PORT:-12625}; EL_PORT=${EL_PORT:-12626}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v smtp-source >/dev/null || { echo "bench-postfix: smtp-source not found (Debian's postfix package)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench-postfix: $BIN not built (make build)" >&2; exit 1; }

ROOT=$(mktemp -d /tmp/bench-postfix.XXXXXX)
chmod 755 "$ROOT" # mktemp makes it 0700: Postfix's daemons (user postfix) must reach their queue
EL_PID=
cleanup() {
  postfix -c "$ROOT/pf/etc" stop >/dev/null 2>&1 || true
  [ -n "$EL_PID" ] && kill "$EL_PID" 2>/dev/null && wait "$EL_PID" 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

start_bench_postfix "$here" "$ROOT/pf" "$PF_PORT"

mkdir -p "$ROOT/el"
cat >"$ROOT/el/elemta.toml" <<CF
[server]
listen = "127.0.0.1:$EL_PORT"
hostname = "el.example.test"
spool_dir = "$ROOT/el/spool"
maildir_root = "$ROOT/el/mail"
local_domains = ["example.test"]
# Postfix exempts loopback clients from its per-client limits
# (smtpd_client_event_limit_exceptions, mynetworks): so does the bench,
# or 50 sessions that open a connection per message would pass 50 at once.
max_connections_per_client = 1000

[plugins]
plugins = []
CF
"$BIN" serve --config "$ROOT/el/elemta.toml" >"$ROOT/el/log" 2>&1 &
EL_PID=$!
wait_port "$EL_PORT"

# send PORT SESSIONS: the load of one measurement.
send() { smtp-source -s "$2" -m "$MSGS" -l "$SIZE" -f a@example.test -t postmaster@example.test "127.0.0.1:$1"; }
measure "$ROOT" "$EL_PID"
