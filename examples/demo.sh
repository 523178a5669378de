#!/usr/bin/env bash
# The second half of `make run`: start `elemta serve` on the embedded default
# config (SMTP on 127.0.0.1:2525, spool and Maildirs under ./var), submit the
# example messages over SMTP with `elemta send`, wait for delivery, show where
# they landed, and stop the server with SIGTERM. Needs no network.
set -euo pipefail
BIN=${1:-bin/elemta}
ADDR=127.0.0.1:2525
RCPT=postmaster@example.test
BOX=var/mail/example.test/postmaster/new

count() { { find "$BOX" -type f 2>/dev/null || true; } | wc -l; }
before=$(count)

"$BIN" -log-level info serve 2> var/serve.log &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT

# Wait (at most 10 s) until the server accepts connections.
for i in $(seq 100); do
  if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then break; fi
  kill -0 $pid 2>/dev/null || { cat var/serve.log; echo "demo: elemta serve exited"; exit 1; }
  [ "$i" = 100 ] && { echo "demo: nothing listens on $ADDR after 10 s"; exit 1; }
  sleep 0.1
done

echo "== elemta send: the example messages to $RCPT over SMTP ($ADDR)"
rc=0
"$BIN" send --server "$ADDR" --from demo@example.test --rcpt "$RCPT" examples/messages/*.eml || rc=$?
[ "$rc" = 2 ] || { echo "demo: expected exit 2 (the .exe examples are refused), got $rc"; exit 1; }
accepted=$(ls examples/messages/*.eml | grep -vc exe)   # the *exe* examples are refused

# Delivery runs in the background: wait (at most 10 s) for the accepted ones.
for i in $(seq 100); do
  [ $(( $(count) - before )) -ge "$accepted" ] && break
  [ "$i" = 100 ] && { echo "demo: $(( $(count) - before )) of $accepted messages delivered after 10 s"; cat var/serve.log; exit 1; }
  sleep 0.1
done
echo "== delivered to $BOX (newest $accepted):"
ls -t "$BOX" | head -n "$accepted"
echo "== server log: var/serve.log"
