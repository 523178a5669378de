#!/usr/bin/env bash
# tools/testenv/postfix.sh STATE_DIR - configure and start (or stop, with "stop" as 2nd argument) a
# private Postfix instance that Elemta's interop tests use as a real peer. Called by start.sh and
# stop.sh; never touches the system's /etc/postfix or port 25. The postfix package is installed by
# start.sh (with debconf "No configuration").
#
#   127.0.0.1:$POSTFIX_PORT       smtpd as Debian ships it (8BITMIME, SMTPUTF8)
#   127.0.0.1:$POSTFIX_7BIT_PORT  the same with smtpd_discard_ehlo_keywords = 8bitmime: a peer without 8BITMIME
#   mail for example.test         virtual(8) Maildir: $STATE/postfix/vmail/example.test/postmaster/new/
#   mail for elemta.test          relayed to [127.0.0.1]:$POSTFIX_NEXTHOP_PORT, where a test starts Elemta
# Logs: $STATE/postfix/postfix.log.
set -euo pipefail
STATE=$1
MODE=${2:-start}
POSTFIX_PORT=${ELEMTA_TESTENV_POSTFIX_PORT:-10025}
POSTFIX_7BIT_PORT=${ELEMTA_TESTENV_POSTFIX_7BIT_PORT:-10026}
POSTFIX_NEXTHOP_PORT=${ELEMTA_TESTENV_POSTFIX_NEXTHOP_PORT:-12526}
P=$STATE/postfix
log() { printf '[testenv] %s\n' "$*"; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }
running() { [ -s "$P/spool/pid/master.pid" ] && postfix -c "$P/etc" status >/dev/null 2>&1; }

if [ "$MODE" = stop ]; then
  [ -d "$P/etc" ] || { log "postfix: not configured"; exit 0; }
  if running; then postfix -c "$P/etc" stop >/dev/null 2>&1 && log "postfix stopped"; else log "postfix: not running"; fi
  exit 0
fi

command -v postfix >/dev/null || die "postfix is not installed (start.sh installs Debian's package)"
mkdir -p "$P/etc" "$P/spool" "$P/data" "$P/vmail"
chown postfix "$P/data"; chown 65534:65534 "$P/vmail"
cp /usr/share/postfix/master.cf.dist "$P/etc/master.cf.new" 2>/dev/null || cp /etc/postfix/master.cf "$P/etc/master.cf.new"
# the smtpd listeners: only loopback, only our ports
sed -i "s/^smtp \+inet .*/127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd\n127.0.0.1:$POSTFIX_7BIT_PORT inet n - n - - smtpd\n  -o smtpd_discard_ehlo_keywords=8bitmime/" "$P/etc/master.cf.new"
grep -q '^postlog' "$P/etc/master.cf.new" || echo 'postlog unix-dgram n - n - 1 postlogd' >>"$P/etc/master.cf.new"
cat >"$P/etc/main.cf.new" <<CF
# Written by tools/testenv/postfix.sh - rewritten at every start.
compatibility_level = 3.6
queue_directory = $P/spool
data_directory = $P/data
myhostname = pf.example.test
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $P/postfix.log
maillog_file_prefixes = $P
smtputf8_enable = yes
virtual_mailbox_domains = example.test
virtual_mailbox_maps = static:example.test/postmaster/
virtual_mailbox_base = $P/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
relay_domains = elemta.test
transport_maps = inline:{ elemta.test=smtp:[127.0.0.1]:$POSTFIX_NEXTHOP_PORT }
# a test's Elemta may not be up yet: retry soon
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
CF
changed=0
for f in main.cf master.cf; do
  cmp -s "$P/etc/$f.new" "$P/etc/$f" || changed=1
  mv "$P/etc/$f.new" "$P/etc/$f"
done
postfix -c "$P/etc" check || die "postfix check failed for $P/etc (log: $P/postfix.log)"
if running; then
  if [ $changed = 1 ]; then postfix -c "$P/etc" reload >/dev/null 2>&1; log "postfix reloaded (config changed)"; else log "postfix already running"; fi
else
  postfix -c "$P/etc" start >/dev/null 2>&1 || die "postfix did not start (log: $P/postfix.log)"
fi
for port in "$POSTFIX_PORT" "$POSTFIX_7BIT_PORT"; do
  ok=0
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { ok=1; break; }; sleep 0.1; done
  [ $ok = 1 ] || die "postfix does not answer on 127.0.0.1:$port (log: $P/postfix.log)"
done
log "postfix on 127.0.0.1:$POSTFIX_PORT and :$POSTFIX_7BIT_PORT (no 8BITMIME), config $P/etc"
