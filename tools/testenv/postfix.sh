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
. "$(dirname "${BASH_SOURCE[0]}")/postfix-lib.sh"

if [ "$MODE" = stop ]; then pf_stop "$P" postfix; exit 0; fi

command -v postfix >/dev/null || pf_die "postfix is not installed (start.sh installs Debian's package)"
pf_configure "$P" "127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd" \
  "127.0.0.1:$POSTFIX_7BIT_PORT inet n - n - - smtpd" "  -o smtpd_discard_ehlo_keywords=8bitmime"
cat >> "$P/etc/main.cf.new" <<CF
# tools/testenv/postfix.sh: the interop peer
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtputf8_enable = yes
relay_domains = elemta.test
transport_maps = inline:{ elemta.test=smtp:[127.0.0.1]:$POSTFIX_NEXTHOP_PORT }
# a test's Elemta may not be up yet: retry soon
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
CF
pf_run "$P" postfix "$POSTFIX_PORT" "$POSTFIX_7BIT_PORT"
pf_log "postfix on 127.0.0.1:$POSTFIX_PORT and :$POSTFIX_7BIT_PORT (no 8BITMIME), config $P/etc"
