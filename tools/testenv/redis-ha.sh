#!/usr/bin/env bash
# tools/testenv/redis-ha.sh start|stop - the highly available Redis setups of the multi-node tests, on
# loopback, from Debian's redis-server and redis-sentinel packages (installed when missing):
#
#   sentinel  master 127.0.0.1:16480, replica :16481 (requirepass), sentinels :26480 :26481 :26482
#             (their own requirepass), master name "elemta", failover after 1 s down (failover-timeout 3 s:
#             a sentinel starts no second failover of the master within 6 s of the last)
#   cluster   three masters 127.0.0.1:16490 :16491 :16492 (no replicas), all 16384 slots
#   tls       127.0.0.1:16470, TLS only, client certificates required, ACL user "elemta"; a CA, a server
#             and a client certificate made here with openssl
#
# Only the tests that need them use them (`make testenv-redis-ha`, `make test-redis-ha`; CI runs them):
# the default `make testenv` does not start them. State: $ELEMTA_TESTENV_HA_DIR (default
# $ELEMTA_TESTENV_DIR/redis-ha, or <repo>/.testenv/redis-ha): configs, data, pid files, logs, the
# certificates and env.sh with the ELEMTA_TEST_REDIS_* variables (pkg/testenv reads it).
#
# Idempotent: a node that runs and answers is left alone, one that died (a test kills the Sentinel
# master) is started again with its config, and Sentinel makes it a replica of the new master.
# stop kills every node by its pid file (checking its command line) and removes the state directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DIR=${ELEMTA_TESTENV_HA_DIR:-${ELEMTA_TESTENV_DIR:-$REPO/.testenv}/redis-ha}
MASTER=elemta
DATA_PASS=elemta-data-pw SENTINEL_PASS=elemta-sentinel-pw TLS_USER=elemta TLS_PASS=elemta-tls-pw
SENTINEL_DATA=(16480 16481) SENTINELS=(26480 26481 26482) CLUSTER=(16490 16491 16492) TLS_PORT=16470

log() { printf '[testenv redis-ha] %s\n' "$*"; }
die() { printf '[testenv redis-ha] ERROR: %s\n' "$*" >&2; exit 1; }
ms_since() { local s=${1/./} n=${EPOCHREALTIME/./}; echo $(( (10#$n - 10#$s) / 1000 )); }

alive() { # pidfile: the process runs redis-server
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'redis-server\|redis-sentinel'
}

cli() { timeout 5 redis-cli --no-auth-warning -h 127.0.0.1 "$@"; }
tlscli() {
  timeout 5 redis-cli --no-auth-warning -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$DIR/tls/ca.crt" \
    --cert "$DIR/tls/client.crt" --key "$DIR/tls/client.key" --user "$TLS_USER" --pass "$TLS_PASS" "$@"
}

wait_for() { # what cmd...: retry for 30 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" > /dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what: not ready after 30 s (logs: $DIR/logs)"
}

# node_pid PORT AUTH-ARGS...: the pid of the redis answering on PORT (INFO server), or nothing
node_pid() {
  local port=$1; shift
  cli -p "$port" "$@" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id:\([0-9]*\)$/\1/p' || true
}

# run_node NAME CONF PORT [AUTH-ARGS...] [-- SERVER-ARGS...]: start the node unless one answers on
# PORT; either way its pid file then names the process that answers (a node a test killed and
# this script started again included).
run_node() {
  local name=$1 conf=$2 port=$3 pid; shift 3
  local auth=() extra=()
  while (($#)); do [ "$1" = -- ] && { shift; extra=("$@"); break; }; auth+=("$1"); shift; done
  pid=$(node_pid "$port" "${auth[@]}")
  if [ -z "$pid" ]; then
    rm -f "$DIR/run/$name.pid"
    redis-server "$conf" "${extra[@]}" > /dev/null 2>&1 < /dev/null 9>&- || die "$name did not start (log: $DIR/logs/$name.log)"
    for _ in $(seq 200); do pid=$(node_pid "$port" "${auth[@]}"); [ -n "$pid" ] && break; sleep 0.05; done
    [ -n "$pid" ] || die "$name: does not answer on $port after 10 s (log: $DIR/logs/$name.log)"
  fi
  echo "$pid" > "$DIR/run/$name.pid"
}

common_conf() { # name port
  cat <<CONF
bind 127.0.0.1
protected-mode no
daemonize yes
pidfile $DIR/run/$1.redis.pid
logfile $DIR/logs/$1.log
dir $DIR/data/$1
save ""
appendonly no
CONF
}

certs() {
  [ -s "$DIR/tls/client.key" ] && return 0
  local t=$DIR/tls
  mkdir -p "$t"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=elemta test CA" \
    -keyout "$t/ca.key" -out "$t/ca.crt" 2> /dev/null
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=elemta test redis $who" \
      -keyout "$t/$who.key" -out "$t/$who.csr" 2> /dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=%s\n' \
      "$([ $who = server ] && echo serverAuth || echo clientAuth)" > "$t/$who.ext"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 30 \
      -extfile "$t/$who.ext" -out "$t/$who.crt" 2> /dev/null
  done
  chmod 644 "$t"/*.key
}

start() {
  local t=$EPOCHREALTIME
  mkdir -p "$DIR"/{run,logs,conf,data}
  if ! command -v redis-server > /dev/null || ! dpkg-query -W -f='${Status}' redis-sentinel 2>/dev/null | grep -q 'install ok installed'; then
    [ "$(id -u)" = 0 ] || die "redis-server and redis-sentinel are missing: run as root to install them"
    log "installing redis-server redis-sentinel"
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-sentinel openssl; } \
      > "$DIR/logs/apt.log" 2>&1 || { tail -20 "$DIR/logs/apt.log"; die "apt-get install failed"; }
  fi
  command -v redis-sentinel > /dev/null || die "no redis-sentinel"
  [ -e "$DIR/.gitignore" ] || printf '*\n' > "$DIR/.gitignore"
  exec 9> "$DIR/.lock"
  flock -w 300 9 || die "another redis-ha.sh holds $DIR/.lock"

  # Sentinel: the data nodes, then the sentinels (their config files are theirs to rewrite).
  local i port conf
  for i in 0 1; do
    port=${SENTINEL_DATA[$i]} conf=$DIR/conf/sentinel-data-$port.conf
    mkdir -p "$DIR/data/sentinel-data-$port"
    if [ ! -s "$conf" ]; then
      { common_conf "sentinel-data-$port"
        printf 'port %s\nrequirepass %s\nmasterauth %s\nreplica-announce-ip 127.0.0.1\n' "$port" "$DATA_PASS" "$DATA_PASS"
        [ "$i" = 1 ] && printf 'replicaof 127.0.0.1 %s\n' "${SENTINEL_DATA[0]}"
      } > "$conf"
    fi
    run_node "sentinel-data-$port" "$conf" "$port" -a "$DATA_PASS"
  done
  for port in "${SENTINELS[@]}"; do
    conf=$DIR/conf/sentinel-$port.conf
    mkdir -p "$DIR/data/sentinel-$port"
    if [ ! -s "$conf" ]; then
      { common_conf "sentinel-$port"
        printf 'port %s\nrequirepass %s\nsentinel announce-ip 127.0.0.1\n' "$port" "$SENTINEL_PASS"
        printf 'sentinel monitor %s 127.0.0.1 %s 2\n' "$MASTER" "${SENTINEL_DATA[0]}"
        printf 'sentinel auth-pass %s %s\nsentinel down-after-milliseconds %s 1000\n' "$MASTER" "$DATA_PASS" "$MASTER"
        printf 'sentinel failover-timeout %s 3000\nsentinel parallel-syncs %s 1\nsentinel sentinel-pass %s\n' "$MASTER" "$MASTER" "$SENTINEL_PASS"
      } > "$conf"
    fi
    run_node "sentinel-$port" "$conf" "$port" -a "$SENTINEL_PASS" -- --sentinel
  done

  # Cluster: three masters sharing the 16384 slots.
  for port in "${CLUSTER[@]}"; do
    conf=$DIR/conf/cluster-$port.conf
    mkdir -p "$DIR/data/cluster-$port"
    [ -s "$conf" ] || { common_conf "cluster-$port"
      printf 'port %s\ncluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\ncluster-announce-ip 127.0.0.1\n' "$port"; } > "$conf"
    run_node "cluster-$port" "$conf" "$port"
  done
  for port in "${CLUSTER[@]}"; do wait_for "cluster node $port" cli -p "$port" ping; done
  if ! cli -p "${CLUSTER[0]}" cluster info | grep -q 'cluster_state:ok'; then
    if [ "$(cli -p "${CLUSTER[0]}" cluster info | sed -n 's/^cluster_slots_assigned:\([0-9]*\).*/\1/p')" = 0 ]; then
      # Not cli's 5 s: the create waits for the nodes to agree ("Waiting for the
      # cluster to join"), one poll a second, and took over 5 s in a CI rehearsal.
      timeout 60 redis-cli --no-auth-warning -h 127.0.0.1 --cluster create "${CLUSTER[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
        > "$DIR/logs/cluster-create.log" 2>&1 \
        || { tail -20 "$DIR/logs/cluster-create.log"; die "redis-cli --cluster create failed"; }
    fi
  fi
  cluster_ok() { local p; for p in "${CLUSTER[@]}"; do cli -p "$p" cluster info | grep -q 'cluster_state:ok' || return 1; done; }
  wait_for "cluster state ok" cluster_ok

  # TLS, with client certificates and an ACL user.
  certs
  conf=$DIR/conf/tls.conf
  mkdir -p "$DIR/data/tls"
  [ -s "$conf" ] || { common_conf tls
    printf 'port 0\ntls-port %s\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients yes\n' \
      "$TLS_PORT" "$DIR/tls/server.crt" "$DIR/tls/server.key" "$DIR/tls/ca.crt"
    printf 'user default off\nuser %s on >%s ~* &* +@all\n' "$TLS_USER" "$TLS_PASS"; } > "$conf"
  run_node tls "$conf" "$TLS_PORT" --tls --cacert "$DIR/tls/ca.crt" --cert "$DIR/tls/client.crt" --key "$DIR/tls/client.key" --user "$TLS_USER" --pass "$TLS_PASS"

  for port in "${SENTINEL_DATA[@]}"; do wait_for "sentinel data node $port" cli -p "$port" -a "$DATA_PASS" ping; done
  sentinels_ok() { # every sentinel knows a master with a replica and the two other sentinels
    local p
    for p in "${SENTINELS[@]}"; do
      cli -p "$p" -a "$SENTINEL_PASS" sentinel master "$MASTER" | tr '\n' ' ' | grep -q 'num-other-sentinels 2 .*num-slaves 1\|num-slaves 1 .*num-other-sentinels 2' || return 1
      cli -p "$p" -a "$SENTINEL_PASS" sentinel master "$MASTER" | tr '\n' ' ' | grep -q 'flags master ' || return 1
    done
  }
  wait_for "sentinels" sentinels_ok
  for port in "${SENTINELS[@]}"; do # also for sentinels started with an older config
    cli -p "$port" -a "$SENTINEL_PASS" sentinel set "$MASTER" failover-timeout 3000 > /dev/null
  done
  replica_synced() { # one master, the other node its replica with the link up: Sentinel can promote it
    local p info masters=0 synced=0
    for p in "${SENTINEL_DATA[@]}"; do
      info=$(cli -p "$p" -a "$DATA_PASS" info replication | tr -d '\r') || return 1
      if grep -q '^role:master' <<< "$info"; then masters=$((masters + 1)); fi
      if grep -q '^master_link_status:up' <<< "$info" && grep -q '^master_sync_in_progress:0' <<< "$info"; then synced=$((synced + 1)); fi
    done
    [ $masters = 1 ] && [ $synced = 1 ]
  }
  wait_for "replica in sync" replica_synced
  replica_seen() { # every sentinel sees the replica up with its link ok: it can be promoted
    local p r
    for p in "${SENTINELS[@]}"; do
      r=$(cli -p "$p" -a "$SENTINEL_PASS" sentinel replicas "$MASTER" | tr '\n' ' ')
      grep -q 'flags slave ' <<< "$r" && grep -q 'master-link-status ok ' <<< "$r" || return 1
    done
  }
  wait_for "sentinels see the replica" replica_seen
  wait_for "tls" tlscli ping

  cat > "$DIR/env.sh.tmp" <<ENV
# Written by tools/testenv/redis-ha.sh; removed by its stop. Source it: . $DIR/env.sh
export ELEMTA_TEST_REDIS_SENTINEL=$(printf '127.0.0.1:%s,' "${SENTINELS[@]}" | sed 's/,$//')
export ELEMTA_TEST_REDIS_SENTINEL_MASTER=$MASTER
export ELEMTA_TEST_REDIS_SENTINEL_PASSWORD=$SENTINEL_PASS
export ELEMTA_TEST_REDIS_SENTINEL_DATA_PASSWORD=$DATA_PASS
export ELEMTA_TEST_REDIS_CLUSTER=$(printf '127.0.0.1:%s,' "${CLUSTER[@]}" | sed 's/,$//')
export ELEMTA_TEST_REDIS_TLS=127.0.0.1:$TLS_PORT
export ELEMTA_TEST_REDIS_TLS_DIR='$DIR/tls'
export ELEMTA_TEST_REDIS_TLS_USER=$TLS_USER
export ELEMTA_TEST_REDIS_TLS_PASSWORD=$TLS_PASS
export ELEMTA_TEST_REDIS_HA_SCRIPT='$HERE/redis-ha.sh'
export ELEMTA_TEST_REDIS_HA_DIR='$DIR'
ENV
  mv "$DIR/env.sh.tmp" "$DIR/env.sh"
  log "sentinel, cluster and tls ready in $(ms_since "$t") ms (env: $DIR/env.sh)"
}

stop() {
  [ -d "$DIR/run" ] || { log "nothing to stop: no $DIR"; return 0; }
  rm -f "$DIR/env.sh"
  local pf pid
  for pf in "$DIR"/run/*.pid; do
    [ -e "$pf" ] || continue
    if alive "$pf"; then pid=$(cat "$pf"); kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for pf in "$DIR"/run/*.pid; do
    [ -e "$pf" ] || continue
    pid=$(cat "$pf")
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
  done
  rm -rf "$DIR"
  log "stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
