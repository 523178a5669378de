#!/usr/bin/env bash
# tools/testenv/postfix-milter.sh - the Postfix instance in front of `elemta milter` (internal/milter's
# end-to-end tests). Called by start.sh (section "Postfix + milter") and stop.sh; not meant to be run
# alone. A private instance of Debian's postfix: its own main.cf/master.cf under $PFM/etc, its queue
# under $PFM/spool, listening only on 127.0.0.1:$POSTFIX_MILTER_PORT, every message for example.test
# delivered by virtual(8) into the one Maildir $PFM/vmail/example.test/postmaster/new/, and every SMTP
# session passed to the milter at inet:127.0.0.1:$MILTER_PORT (milter_default_action = tempfail, so
# while no milter listens Postfix answers 451 and nothing slips through unfiltered).
# SASL: Cyrus sasldb with one user, alice / "s3cret pass" (PLAIN and LOGIN, plaintext allowed on
# loopback), so an authenticated submission reaches the milter with {auth_authen}.
#
#   postfix-milter.sh start STATE_DIR POSTFIX_PORT MILTER_PORT
#   postfix-milter.sh stop  STATE_DIR
set -euo pipefail
cmd=$1 PFM=$2/postfix-milter

if [ "$cmd" = stop ]; then
  [ -f "$PFM/etc/main.cf" ] || exit 0
  if postfix -c "$PFM/etc" status >/dev/null 2>&1; then postfix -c "$PFM/etc" stop >/dev/null 2>&1; echo "[testenv] postfix-milter stopped"; fi
  exit 0
fi

PORT=$3 MILTER_PORT=$4
if ! command -v postfix >/dev/null || ! command -v saslpasswd2 >/dev/null; then
  echo "[testenv] postfix-milter: installing postfix sasl2-bin libsasl2-modules"
  # debconf "No configuration": the package writes no /etc/postfix/main.cf; a temporary policy-rc.d
  # keeps its scripts from starting the system instance on port 25
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from elemta tools/testenv/postfix-milter.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d; own_policy=1; trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix sasl2-bin libsasl2-modules \
    > "$2/logs/apt-postfix-milter.log" 2>&1 || { tail -20 "$2/logs/apt-postfix-milter.log"; exit 1; }
  if [ $own_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi
mkdir -p "$PFM/etc/sasl" "$PFM/spool" "$PFM/data" "$PFM/vmail"
chown postfix "$PFM/data"; chown 65534:65534 "$PFM/vmail"
cp /usr/share/postfix/master.cf.dist "$PFM/etc/master.cf"
# the smtpd listener: only loopback, only our port, not chrooted (sasldb and the milter are outside)
sed -i "s/^smtp \+inet .*/127.0.0.1:$PORT inet n - n - - smtpd/" "$PFM/etc/master.cf"
grep -q '^postlog' "$PFM/etc/master.cf" || echo 'postlog unix-dgram n - n - 1 postlogd' >> "$PFM/etc/master.cf"
cat > "$PFM/etc/main.cf" <<CF
# written by tools/testenv/postfix-milter.sh
compatibility_level = 3.6
queue_directory = $PFM/spool
data_directory = $PFM/data
myhostname = pf.example.test
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
maillog_file = $PFM/postfix.log
maillog_file_prefixes = $PFM
virtual_mailbox_domains = example.test
virtual_mailbox_maps = static:example.test/postmaster/
virtual_mailbox_base = $PFM/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# the milter (internal/milter/README.md has the same settings for production)
smtpd_milters = inet:127.0.0.1:$MILTER_PORT
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 30s
milter_content_timeout = 60s
milter_connect_macros = j {daemon_name} {client_addr} {client_name} v
milter_helo_macros = {tls_version} {cipher}
milter_mail_macros = i {auth_type} {auth_authen} {mail_addr}
milter_rcpt_macros = i {rcpt_addr}
milter_end_of_data_macros = i
# SASL for the authenticated-submission test
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $PFM/etc/sasl
smtpd_sasl_local_domain = pf.example.test
smtpd_sasl_security_options = noanonymous
CF
cat > "$PFM/etc/sasl/smtpd.conf" <<SASL
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $PFM/etc/sasldb2
SASL
printf '%s' 's3cret pass' | saslpasswd2 -p -c -f "$PFM/etc/sasldb2" -u pf.example.test alice
chown root:postfix "$PFM/etc/sasldb2"; chmod 640 "$PFM/etc/sasldb2"
postfix -c "$PFM/etc" check || { echo "[testenv] postfix-milter: postfix check failed (log: $PFM/postfix.log)" >&2; exit 1; }
if postfix -c "$PFM/etc" status >/dev/null 2>&1; then
  postfix -c "$PFM/etc" reload >/dev/null 2>&1
  echo "[testenv] postfix-milter already running on 127.0.0.1:$PORT (config reloaded)"
  exit 0
fi
if ss -Hltn "sport = :$PORT" | grep -q .; then
  echo "[testenv] ERROR: postfix-milter: port $PORT is used by another process; set ELEMTA_TESTENV_POSTFIX_MILTER_PORT" >&2; exit 1
fi
postfix -c "$PFM/etc" start >/dev/null 2>&1
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "[testenv] postfix-milter on 127.0.0.1:$PORT, milter expected at 127.0.0.1:$MILTER_PORT (config $PFM/etc)"; exit 0
  fi
  sleep 0.1
done
echo "[testenv] ERROR: postfix-milter did not answer on $PORT (log: $PFM/postfix.log)" >&2; exit 1
