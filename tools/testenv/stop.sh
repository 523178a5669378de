#!/usr/bin/env bash
# tools/testenv/stop.sh - stop what start.sh started, using only the pid files in $STATE/run.
# A pid is signalled only while /proc/PID/cmdline still names the expected daemon, so a stale pid file
# never kills an unrelated process. Removes env.sh, so tests no longer find the stopped services.
# Keeps configs, keys and rspamd's database for a fast next start.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE=${ELEMTA_TESTENV_DIR:-$REPO/.testenv}
RUN=$STATE/run
log() { printf '[testenv] %s\n' "$*"; }
[ -d "$RUN" ] || { log "nothing to stop: no $RUN"; exit 0; }
exec 9> "$STATE/.lock"
flock -w 600 9 || { log "ERROR: $STATE/.lock held for more than 10 minutes"; exit 1; }

# alive = exists and is not a zombie (the daemons are reparented to init, which may reap late)
alive() { local st; st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }

status=0
stop_one() { # name cmdline-pattern
  local name=$1 pat=$2 pf=$RUN/$1.pid pid kids t=${EPOCHREALTIME/./}
  [ -s "$pf" ] || { log "$name: not running (no pid file)"; return 0; }
  pid=$(cat "$pf")
  if ! { [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$pat"; }; then
    log "$name: pid $pid is not $name any more (stale pid file removed)"; rm -f "$pf"; return 0
  fi
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' | tr '\n' ' ')   # rspamd's workers
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 400); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then log "$name: still alive after 20 s, SIGKILL"; kill -KILL "$pid" 2>/dev/null; fi
  for k in $kids; do
    if alive "$k" && tr '\0' ' ' < "/proc/$k/cmdline" 2>/dev/null | grep -qF -- "$pat"; then kill -KILL "$k" 2>/dev/null; fi
  done
  sleep 0.05
  if alive "$pid"; then log "$name (pid $pid) did not stop"; status=1; return; fi
  rm -f "$pf"
  log "$name (pid $pid) stopped in $(( (${EPOCHREALTIME/./} - t) / 1000 )) ms"
}

rm -f "$STATE/env.sh"
# the highly available Redis setups, when redis-ha.sh started them in this state dir
if [ -d "$STATE/redis-ha" ]; then ELEMTA_TESTENV_HA_DIR=$STATE/redis-ha "$HERE/redis-ha.sh" stop || status=1; fi
"$HERE/postfix.sh" "$STATE" stop || status=1
"$HERE/postfix-milter.sh" stop "$STATE" 9>&- || status=1   # 6b. Postfix + milter
stop_one rspamd "rspamd"
stop_one clamd "clamd -c"
stop_one redis "redis-server"
stop_one unbound "unbound -d -c"
rm -f "$STATE/clamav/clamd.sock"
exit $status
