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
. "$(dirname "${BASH_SOURCE[0]}")/postfix-lib.sh"

if [ "$cmd" = stop ]; then pf_stop "$PFM" postfix-milter; exit 0; fi

PORT=$3 MILTER_PORT=$4
pf_install "$2/logs/apt-postfix-milter.log" sasl2-bin libsasl2-modules
mkdir -p "$PFM/etc/sasl"
# the smtpd listener: not chrooted (sasldb and the milter are outside)
pf_configure "$PFM" "127.0.0.1:$PORT inet n - n - - smtpd"
cat >> "$PFM/etc/main.cf.new" <<CF
# tools/testenv/postfix-milter.sh: Postfix in front of elemta milter
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
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
pf_run "$PFM" postfix-milter "$PORT"
pf_log "postfix-milter on 127.0.0.1:$PORT, milter expected at 127.0.0.1:$MILTER_PORT (config $PFM/etc)"
