#!/usr/bin/env bash
# tools/testenv/start.sh - install (if missing), configure and start the loopback-only services that
# Elemta's integration tests talk to, on Debian 12 without systemd and without internet:
#
#   unbound  authoritative test DNS    127.0.0.1:5353 and [::1]:5353, udp+tcp (zone: see README.md)
#   redis    127.0.0.1:16379
#   clamd    127.0.0.1:3310 and a unix socket in the state dir (EICAR + clam.exe test signatures only)
#   rspamd   127.0.0.1:11333 normal worker, 127.0.0.1:11334 controller, 127.0.0.1:11332 proxy
#   postfix  127.0.0.1:10025, and :10026 without 8BITMIME; relays elemta.test to 127.0.0.1:12526 (postfix.sh)
#   postfix  127.0.0.1:10027, its milter at 127.0.0.1:18891 (postfix-milter.sh; internal/milter's tests)
#
# Everything lives in a state directory ($ELEMTA_TESTENV_DIR, default <repo>/.testenv): configs,
# DKIM test keys, logs, pid files, rspamd's database (kept, so later starts take about a second), and
# env.sh, which exports the ELEMTA_TEST_* variables the Go tests read (pkg/testenv).
#
# Idempotent: a service that already runs from our pid file and answers is left alone. Safe to call
# from several shells at once (a lock in the state dir serialises them). Stop with stop.sh.
# Needs root: apt-get, and rspamd drops privileges to _rspamd.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE=${ELEMTA_TESTENV_DIR:-$REPO/.testenv}
DNS_PORT=${ELEMTA_TESTENV_DNS_PORT:-5353}
REDIS_PORT=${ELEMTA_TESTENV_REDIS_PORT:-16379}
CLAMD_PORT=${ELEMTA_TESTENV_CLAMD_PORT:-3310}
RSPAMD_PORT=${ELEMTA_TESTENV_RSPAMD_PORT:-11333}
RSPAMD_CONTROLLER_PORT=${ELEMTA_TESTENV_RSPAMD_CONTROLLER_PORT:-11334}
RSPAMD_PROXY_PORT=${ELEMTA_TESTENV_RSPAMD_PROXY_PORT:-11332}
# Postfix in front of `elemta milter` (section 6b, tools/testenv/postfix-milter.sh): its SMTP port, and
# the port its smtpd_milters points at, where internal/milter's tests listen
POSTFIX_MILTER_PORT=${ELEMTA_TESTENV_POSTFIX_MILTER_PORT:-10027}
MILTER_PORT=${ELEMTA_TESTENV_MILTER_PORT:-18891}
START_TIMEOUT=${ELEMTA_TESTENV_START_TIMEOUT:-180}   # seconds, per service
POSTFIX_PORT=${ELEMTA_TESTENV_POSTFIX_PORT:-10025}
POSTFIX_7BIT_PORT=${ELEMTA_TESTENV_POSTFIX_7BIT_PORT:-10026}
POSTFIX_NEXTHOP_PORT=${ELEMTA_TESTENV_POSTFIX_NEXTHOP_PORT:-12526}
export ELEMTA_TESTENV_POSTFIX_PORT=$POSTFIX_PORT ELEMTA_TESTENV_POSTFIX_7BIT_PORT=$POSTFIX_7BIT_PORT \
  ELEMTA_TESTENV_POSTFIX_NEXTHOP_PORT=$POSTFIX_NEXTHOP_PORT
PKGS=(clamav-daemon clamav-testfiles rspamd redis-server unbound python3-dkim python3-spf python3-authres
      opendkim-tools bind9-dnsutils curl swaks openssl iproute2 postfix prometheus)

log() { printf '[testenv] %s\n' "$*"; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }
ms_since() { local s=${1/./} n=${EPOCHREALTIME/./}; echo $(( (10#$n - 10#$s) / 1000 )); }
[ "$(id -u)" = 0 ] || die "run as root (apt-get install; rspamd drops privileges to _rspamd)"
T_ALL=$EPOCHREALTIME

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
RUN=$STATE/run LOGS=$STATE/logs KEYS=$STATE/keys
mkdir -p "$RUN" "$LOGS" "$KEYS"
# the state dir never shows up in git status
[ -e "$STATE/.gitignore" ] || printf '# written by tools/testenv/start.sh\n*\n' > "$STATE/.gitignore"
# one start/stop at a time per state dir
exec 9> "$STATE/.lock"
flock -w 600 9 || die "another start.sh/stop.sh holds $STATE/.lock for more than 10 minutes"

# ---------------------------------------------------------------- 1. packages
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  t=$EPOCHREALTIME
  log "installing: ${missing[*]}"
  # Without systemd the packages' scripts start services through invoke-rc.d (freshclam then tries the
  # internet; the distribution's rspamd/redis/unbound grab ports). A policy-rc.d that exits 101 stops that.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from elemta tools/testenv/start.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  # postfix: install the binaries only, no system instance (postfix.sh runs a private one)
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq > "$LOGS/apt-update.log" 2>&1 || { tail -20 "$LOGS/apt-update.log"; die "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$LOGS/apt-install.log" 2>&1 \
    || { tail -30 "$LOGS/apt-install.log"; die "apt-get install failed (log: $LOGS/apt-install.log)"; }
  if [ $own_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  log "packages installed in $(ms_since "$t") ms"
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- helpers
pid_alive() { # pidfile cmdline-substring
  local pf=$1 pat=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$pat"
}
port_busy() { ss -Hltn "sport = :$1" | grep -q . || ss -Hlun "sport = :$1" | grep -q .; }

probe_dns() {
  dig +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 pass.example.test TXT +short 2>/dev/null | grep -q 'v=spf1'
}
probe_redis() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
probe_clamd() {
  local reply=''
  { exec 3<>"/dev/tcp/127.0.0.1/$CLAMD_PORT"; } 2>/dev/null || return 1
  printf 'zPING\0' >&3
  IFS= read -r -d '' -t 3 reply <&3 || true
  exec 3>&- 3<&-
  [ "$reply" = PONG ]
}
probe_rspamd() { # /ping answers "pong\r\n" on both workers
  curl -sf --max-time 2 "http://127.0.0.1:$RSPAMD_PORT/ping" | grep -q '^pong' &&
  curl -sf --max-time 2 "http://127.0.0.1:$RSPAMD_CONTROLLER_PORT/ping" | grep -q '^pong'
}

# start NAME CMDLINE-PATTERN PROBE PORT LOGFILE CMD...   (CMD must stay in the foreground)
start() {
  local name=$1 pat=$2 probe=$3 port=$4 out=$5; shift 5
  local pf=$RUN/$name.pid t=$EPOCHREALTIME pid=''
  if pid_alive "$pf" "$pat"; then
    if $probe; then log "$name already running (pid $(cat "$pf"))"; return; fi
    die "$name (pid $(cat "$pf")) runs but does not answer on port $port; run stop.sh first (log: $out)"
  fi
  rm -f "$pf"
  if port_busy "$port"; then
    die "$name: port $port is used by another process ($(ss -Hltnup "sport = :$port" | head -1)); pick another port with ELEMTA_TESTENV_*_PORT"
  fi
  # the child writes its own pid and then execs the daemon, so the pid file names the daemon itself
  # (fd 9, the lock, is closed for the daemon: it must not hold the lock for its whole life)
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pf" "$@" > "$out" 2>&1 < /dev/null 9>&- &
  for _ in $(seq 250); do [ -s "$pf" ] && break; sleep 0.02; done
  [ -s "$pf" ] || die "$name: no pid file after 5 s"
  pid=$(cat "$pf")
  until $probe; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$out"; die "$name exited during startup (log: $out)"; }
    (( $(ms_since "$t") < START_TIMEOUT * 1000 )) || { tail -20 "$out"; die "$name not answering after ${START_TIMEOUT}s (log: $out)"; }
    sleep 0.1
  done
  log "$name started (pid $pid), answering after $(ms_since "$t") ms"
}

# ---------------------------------------------------------------- 2. DKIM test keys (kept between runs)
# NAME.pem       private key, PKCS#8 PEM (Go: x509.ParsePKCS8PrivateKey; openssl; dkimpy for RSA)
# NAME.pkcs1.pem the same RSA key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY")
# ed25519.seed   the ed25519 key as dkimpy wants it: base64 of the 32-byte seed
# NAME.dns       the DKIM TXT record text published for selector NAME
umask 077
gen_rsa() { # name bits
  [ -s "$KEYS/$1.pem" ] || openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$KEYS/$1.pem" 2>/dev/null
  [ -s "$KEYS/$1.pkcs1.pem" ] || openssl pkey -in "$KEYS/$1.pem" -traditional -out "$KEYS/$1.pkcs1.pem"
  [ -s "$KEYS/$1.dns" ] || printf 'v=DKIM1; k=rsa; p=%s\n' \
    "$(openssl pkey -in "$KEYS/$1.pem" -pubout -outform DER | base64 -w0)" > "$KEYS/$1.dns"
}
gen_rsa rsa2048 2048
gen_rsa rsa1024 1024
gen_rsa other-rsa2048 2048   # published under selector "mismatch": signatures by rsa2048.pem fail there
[ -s "$KEYS/ed25519.pem" ] || openssl genpkey -algorithm ed25519 -out "$KEYS/ed25519.pem"
# PKCS#8 DER of an ed25519 key ends with the 32-byte seed; the SPKI DER ends with the raw public key
[ -s "$KEYS/ed25519.seed" ] || openssl pkey -in "$KEYS/ed25519.pem" -outform DER | tail -c 32 | base64 -w0 > "$KEYS/ed25519.seed"
[ -s "$KEYS/ed25519.dns" ] || printf 'v=DKIM1; k=ed25519; p=%s\n' \
  "$(openssl pkey -in "$KEYS/ed25519.pem" -pubout -outform DER | tail -c 32 | base64 -w0)" > "$KEYS/ed25519.dns"
umask 022
chmod 700 "$KEYS"

# ---------------------------------------------------------------- 3. unbound: the test zone
D=$STATE/dns; mkdir -p "$D"
rr() { printf "    local-data: '%s'\n" "$*"; }
txt() { # NAME TEXT -> a TXT local-data line, the text split into <=255-byte strings
  local s=$2 out=""
  while [ -n "$s" ]; do out="$out \"${s:0:255}\""; s=${s:255}; done
  printf "    local-data: '%s 300 IN TXT%s'\n" "$1" "$out"
}
spf_ok='ip4:127.0.0.0/8 ip4:192.0.2.0/24 ip6:::1/128 ip6:2001:db8::/32'
{ cat <<EOF
# Written by tools/testenv/start.sh - do not edit, it is rewritten at every start.
# Authoritative-only test DNS on loopback. It never recurses and never sends a packet off the host:
# every name outside local-data gets an immediate NXDOMAIN from the "." static zone.
server:
    port: $DNS_PORT
    interface: 127.0.0.1
    interface: ::1
    access-control: 127.0.0.0/8 allow
    access-control: ::1/128 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$D"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    outgoing-interface: 127.0.0.1
    num-threads: 1
    local-zone: "." static
    # drop unbound's built-in reverse data (127.0.0.1 -> localhost.): PTRs come from the zone below only
    local-zone: "127.in-addr.arpa." nodefault
    local-zone: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa." nodefault
    # negative answers carry this SOA: negative TTL = min(SOA TTL, minimum) = 60 s (RFC 2308)
    local-data: ". 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"
    # unbound has a built-in "test." zone (RFC 6761) whose SOA says 10800 s; replace it by ours
    local-zone: "test." static
    local-data: "test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"
EOF
  # example.test: the domain where everything passes (SPF pass from loopback, DKIM keys, DMARC p=reject)
  rr "example.test. 300 IN A 127.0.0.1"
  rr "example.test. 300 IN AAAA ::1"
  rr "example.test. 300 IN MX 10 mail.example.test."
  rr "example.test. 300 IN MX 20 mail2.example.test."
  rr "mail.example.test. 300 IN A 127.0.0.1"
  rr "mail.example.test. 300 IN AAAA ::1"
  rr "mail2.example.test. 300 IN A 192.0.2.2"
  txt example.test. "v=spf1 $spf_ok -all"
  txt _dmarc.example.test. "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"
  for k in rsa2048 rsa1024 ed25519; do txt "$k._domainkey.example.test." "$(tr -d '\n' < "$KEYS/$k.dns")"; done
  txt mismatch._domainkey.example.test. "$(tr -d '\n' < "$KEYS/other-rsa2048.dns")"
  txt revoked._domainkey.example.test. "v=DKIM1; k=rsa; p="
  rr "alias.example.test. 300 IN CNAME example.test."
  rr "sub.example.test. 300 IN A 127.0.0.1"
  txt sub.example.test. "v=spf1 $spf_ok -all"
  txt multi.example.test. "first record"
  rr 'multi.example.test. 300 IN TXT "second " "record in two strings"'
  rr "nullmx.example.test. 300 IN MX 0 ."
  # SPF results, one domain each (client IP 127.0.0.x / ::1 / 192.0.2.x passes where "pass" applies)
  txt pass.example.test. "v=spf1 $spf_ok -all"
  rr "pass.example.test. 300 IN A 127.0.0.1"
  txt fail.example.test. "v=spf1 -all"
  txt softfail.example.test. "v=spf1 ~all"
  txt neutral.example.test. "v=spf1 ?all"
  txt permerror.example.test. "v=spf1 ip4:not-an-address -all"
  txt include.example.test. "v=spf1 include:pass.example.test -all"
  txt mx.example.test. "v=spf1 mx:example.test -all"
  txt a.example.test. "v=spf1 a:mail.example.test -all"
  txt voidlimit.example.test. "v=spf1 a:v1.example.test a:v2.example.test a:v3.example.test -all"
  txt twospf.example.test. "v=spf1 -all"
  txt twospf.example.test. "v=spf1 +all"
  rr "none.example.test. 300 IN A 127.0.0.1"    # exists, no TXT: SPF none, NODATA for TXT
  # DMARC failures: separate organisational domains, so relaxed alignment with example.test never passes
  for p in reject quarantine none; do
    txt "dmarc-$p.test." "v=spf1 -all"
    rr "dmarc-$p.test. 300 IN MX 10 mail.example.test."
    txt "_dmarc.dmarc-$p.test." "v=DMARC1; p=$p"
  done
  txt _dmarc.dmarc-pct.test. "v=DMARC1; p=reject; pct=0"
  txt dmarc-pct.test. "v=spf1 -all"
  txt _dmarc.dmarc-strict.test. "v=DMARC1; p=reject; adkim=s; aspf=s"
  txt dmarc-strict.test. "v=spf1 $spf_ok -all"
  # reverse DNS
  printf '    local-data-ptr: "127.0.0.1 mail.example.test."\n'
  printf '    local-data-ptr: "::1 mail.example.test."\n'
  printf '    local-data-ptr: "192.0.2.2 mail2.example.test."\n'
  printf 'remote-control:\n    control-enable: no\n'
} > "$D/unbound.conf"
unbound-checkconf "$D/unbound.conf" > "$LOGS/unbound-checkconf.log" 2>&1 \
  || { cat "$LOGS/unbound-checkconf.log"; die "unbound-checkconf rejected $D/unbound.conf"; }
# libunbound config for opendkim-testkey (-x $D/opendkim-testkey.conf)
cat > "$D/libunbound.conf" <<EOF
server:
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$DNS_PORT
EOF
printf 'ResolverConfiguration %s\n' "$D/libunbound.conf" > "$D/opendkim-testkey.conf"

# ---------------------------------------------------------------- 4. clamd: config + local signatures
C=$STATE/clamav; mkdir -p "$C/db"
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
# clamd refuses to start with an empty database; these local signatures are reported as NAME.UNOFFICIAL
printf 'Eicar-Test-Signature:0:*:%s\n' "$(printf '%s' "$EICAR" | od -An -tx1 | tr -d ' \n')" > "$C/db/eicar.ndb"
# MD5:size:name of /usr/share/clamav-testfiles/clam.exe (matches the clamav-testfiles samples)
echo 'aa15bcf478d165efd2065190eb473bcb:544:ClamAV-Test-File' > "$C/db/clamav-test.hdb"
# Scan limits: low enough that a test exceeds each one cheaply (plugins/clamav/limits_test.go reads them
# from this file), high enough for every other test (the largest message scanned for real is 1 MiB, the
# benchmark's; 26 MiB tests StreamMaxLength). AlertExceedsMax makes clamd say
# "Heuristics.Limits.Exceeded.<limit> FOUND" instead of "OK" for a scan cut short. MaxFileSize applies to
# the whole message too: a message over 5M is "Exceeded.MaxFileSize" here.
cat > "$C/clamd.conf.new" <<EOF
# Written by tools/testenv/start.sh: loopback TCP + unix socket, local test signatures only, no freshclam.
Foreground yes
DatabaseDirectory $C/db
TCPSocket $CLAMD_PORT
TCPAddr 127.0.0.1
LocalSocket $C/clamd.sock
LocalSocketMode 666
FixStaleSocket yes
LogFile $C/clamd.log
LogTime yes
StreamMaxLength 25M
AlertExceedsMax yes
MaxRecursion 8
MaxFiles 100
MaxFileSize 5M
MaxScanSize 10M
EOF
# clamd reads its config only at startup: a clamd of ours running with another config is stopped here,
# so the start below brings it back with this one (a no-op run leaves a clamd with the same config alone).
if ! cmp -s "$C/clamd.conf.new" "$C/clamd.conf" && pid_alive "$RUN/clamd.pid" "clamd -c $C/clamd.conf"; then
  pid=$(cat "$RUN/clamd.pid")
  log "clamd.conf changed: restarting clamd (pid $pid)"
  kill -TERM "$pid"
  # gone or a zombie (init reaps the daemons it inherited, maybe late)
  running() { local st; st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }
  for _ in $(seq 400); do running "$pid" || break; sleep 0.05; done
  running "$pid" && die "clamd (pid $pid) still runs 20 s after SIGTERM; run stop.sh"
  rm -f "$RUN/clamd.pid"
fi
mv "$C/clamd.conf.new" "$C/clamd.conf"

# ---------------------------------------------------------------- 5. rspamd: local.d overrides
R=$STATE/rspamd; mkdir -p "$R/local.d" "$R/db" "$R/run" "$R/log"
printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$RSPAMD_PORT" > "$R/local.d/worker-normal.inc"
printf 'bind_socket = "127.0.0.1:%s";\n' "$RSPAMD_CONTROLLER_PORT" > "$R/local.d/worker-controller.inc"
printf 'bind_socket = "127.0.0.1:%s";\n' "$RSPAMD_PROXY_PORT" > "$R/local.d/worker-proxy.inc"
cat > "$R/local.d/options.inc" <<EOF
# never /etc/resolv.conf: all DNS goes to the loopback test DNS
dns {
  nameserver = ["127.0.0.1:$DNS_PORT"];
  timeout = 1s;
  retransmits = 1;
}
EOF
printf 'servers = "127.0.0.1:%s";\n' "$REDIS_PORT" > "$R/local.d/redis.conf"
printf 'type = "file";\nfilename = "%s";\nlevel = "info";\n' "$R/log/rspamd.log" > "$R/local.d/logging.inc"
# fuzzy_check resolves public hosts with the system resolver while loading its config
echo 'enabled = false;' > "$R/local.d/fuzzy_check.conf"
# greylisting makes verdicts depend on time ("soft reject" at first sight)
echo 'enabled = false;' > "$R/local.d/greylist.conf"
# rspamd skips SPF/DKIM/DMARC for loopback client IPs unless told otherwise
for m in spf dkim dmarc; do printf 'check_local = true;\ncheck_authed = true;\n' > "$R/local.d/$m.conf"; done
chown -R _rspamd:_rspamd "$R/db" "$R/run" "$R/log"

# ---------------------------------------------------------------- 6. start: DNS and redis before rspamd
start unbound "unbound -d -c $D/unbound.conf" probe_dns "$DNS_PORT" "$LOGS/unbound.log" \
  unbound -d -c "$D/unbound.conf"
mkdir -p "$STATE/redis"
start redis "redis-server 127.0.0.1:$REDIS_PORT" probe_redis "$REDIS_PORT" "$LOGS/redis.log" \
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no --dir "$STATE/redis" \
    --save '' --appendonly no --logfile ''
start clamd "clamd -c $C/clamd.conf" probe_clamd "$CLAMD_PORT" "$LOGS/clamd.out" \
  clamd -c "$C/clamd.conf"
start rspamd "rspamd: main process" probe_rspamd "$RSPAMD_PORT" "$LOGS/rspamd.out" \
  rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf \
    "--var=LOCAL_CONFDIR=$R" "--var=DBDIR=$R/db" "--var=RUNDIR=$R/run" "--var=LOGDIR=$R/log"

# ---------------------------------------------------------------- 6a. postfix: a real SMTP peer
"$HERE/postfix.sh" "$STATE"
# ---------------------------------------------------------------- 6b. Postfix + milter (internal/milter)
# A private Postfix on 127.0.0.1:$POSTFIX_MILTER_PORT whose smtpd_milters is inet:127.0.0.1:$MILTER_PORT.
# Kept apart from any other Postfix instance of this script: own directory ($STATE/postfix-milter),
# own ports, own script.
"$HERE/postfix-milter.sh" start "$STATE" "$POSTFIX_MILTER_PORT" "$MILTER_PORT" 9>&-
# ---------------------------------------------------------------- 6b. end

# ---------------------------------------------------------------- 7. env file for the Go tests
cat > "$STATE/env.sh.tmp" <<EOF
# Written by tools/testenv/start.sh; removed by stop.sh. Source it: . $STATE/env.sh
export ELEMTA_TESTENV_DIR='$STATE'
export ELEMTA_TEST_DNS=127.0.0.1:$DNS_PORT
export ELEMTA_TEST_DNS6=[::1]:$DNS_PORT
export ELEMTA_TEST_CLAMD=127.0.0.1:$CLAMD_PORT
export ELEMTA_TEST_CLAMD_SOCKET='$C/clamd.sock'
export ELEMTA_TEST_RSPAMD=http://127.0.0.1:$RSPAMD_PORT
export ELEMTA_TEST_RSPAMD_CONTROLLER=http://127.0.0.1:$RSPAMD_CONTROLLER_PORT
export ELEMTA_TEST_RSPAMD_PROXY=127.0.0.1:$RSPAMD_PROXY_PORT
export ELEMTA_TEST_REDIS=127.0.0.1:$REDIS_PORT
export ELEMTA_TEST_KEYS='$KEYS'
export ELEMTA_TEST_POSTFIX=127.0.0.1:$POSTFIX_PORT
export ELEMTA_TEST_POSTFIX_7BIT=127.0.0.1:$POSTFIX_7BIT_PORT
export ELEMTA_TEST_POSTFIX_NEXTHOP=127.0.0.1:$POSTFIX_NEXTHOP_PORT
export ELEMTA_TEST_POSTFIX_MAILDIR='$STATE/postfix/vmail/example.test/postmaster'
# 6b. Postfix + milter: Postfix's SMTP address, where the milter must listen, the Maildir it delivers to
export ELEMTA_TEST_POSTFIX_MILTER=127.0.0.1:$POSTFIX_MILTER_PORT
export ELEMTA_TEST_POSTFIX_MILTER_LISTEN=127.0.0.1:$MILTER_PORT
export ELEMTA_TEST_POSTFIX_MILTER_MAILDIR='$STATE/postfix-milter/vmail/example.test/postmaster'
EOF
mv "$STATE/env.sh.tmp" "$STATE/env.sh"
log "all services up in $(ms_since "$T_ALL") ms; environment: . $STATE/env.sh"
