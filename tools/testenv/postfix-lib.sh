# tools/testenv/postfix-lib.sh - what every private Postfix instance of the project shares (sourced by
# postfix.sh, postfix-milter.sh and tools/bench-postfix/start-postfix.sh; not run alone). An instance is
# a directory D with D/etc (main.cf, master.cf), D/spool, D/data and D/vmail; it listens only on the
# loopback ports its script names and never touches the system's /etc/postfix or port 25.
#
#   pf_install LOG [PKG...]        install postfix (and PKG...) from Debian if missing, no system instance
#   pf_configure D LISTENER...     write D/etc/master.cf.new (one smtpd line per LISTENER, e.g.
#                                  "127.0.0.1:10025 inet n - n - - smtpd") and the shared part of
#                                  D/etc/main.cf.new; the caller appends its own keys to main.cf.new
#   pf_run D NAME PORT...          install the .new files, check, start (or reload when the config
#                                  changed), wait until every PORT answers
#   pf_stop D NAME                 stop the instance if it runs

pf_log() { printf '[testenv] %s\n' "$*"; }
pf_die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

pf_install() {
  local log=$1; shift
  local pkgs=(postfix "$@") missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  pf_log "installing ${missing[*]}"
  # debconf "No configuration": the package writes no /etc/postfix/main.cf; a temporary policy-rc.d
  # keeps its scripts from starting the system instance on port 25
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from elemta tools/testenv/postfix-lib.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d; own_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$log" 2>&1 || rc=$?
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { tail -20 "$log"; pf_die "apt-get install ${missing[*]} failed (log: $log)"; }
}

pf_configure() {
  local d=$1; shift
  mkdir -p "$d/etc" "$d/spool" "$d/data" "$d/vmail"
  chown postfix "$d/data"; chown 65534:65534 "$d/vmail"
  local master=$d/etc/master.cf.new listeners='' l
  cp /usr/share/postfix/master.cf.dist "$master" 2>/dev/null || cp /etc/postfix/master.cf "$master"
  for l in "$@"; do listeners+="${listeners:+\\n}$l"; done
  # the smtpd listeners: only loopback, only our ports
  sed -i "s/^smtp \+inet .*/$listeners/" "$master"
  grep -q '^postlog' "$master" || echo 'postlog unix-dgram n - n - 1 postlogd' >> "$master"
  cat > "$d/etc/main.cf.new" <<CF
# Written by tools/testenv/postfix-lib.sh and the script that sourced it - rewritten at every start.
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
myhostname = pf.example.test
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtp_dns_support_level = disabled
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
virtual_mailbox_domains = example.test
virtual_mailbox_maps = static:example.test/postmaster/
virtual_mailbox_base = $d/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
CF
}

pf_running() { [ -s "$1/spool/pid/master.pid" ] && postfix -c "$1/etc" status >/dev/null 2>&1; }

pf_run() {
  local d=$1 name=$2; shift 2
  local changed=0 f port ok
  for f in main.cf master.cf; do
    cmp -s "$d/etc/$f.new" "$d/etc/$f" || changed=1
    mv "$d/etc/$f.new" "$d/etc/$f"
  done
  postfix -c "$d/etc" check || pf_die "$name: postfix check failed for $d/etc (log: $d/postfix.log)"
  if pf_running "$d"; then
    if [ $changed = 1 ]; then postfix -c "$d/etc" reload >/dev/null 2>&1; pf_log "$name reloaded (config changed)"; fi
  else
    for port in "$@"; do
      ! ss -Hltn "sport = :$port" | grep -q . || pf_die "$name: port $port is used by another process"
    done
    postfix -c "$d/etc" start >/dev/null 2>&1 || pf_die "$name did not start (log: $d/postfix.log)"
  fi
  for port in "$@"; do
    ok=0
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { ok=1; break; }; sleep 0.1; done
    [ $ok = 1 ] || pf_die "$name does not answer on 127.0.0.1:$port (log: $d/postfix.log)"
  done
}

pf_stop() {
  local d=$1 name=$2
  [ -f "$d/etc/main.cf" ] || { pf_log "$name: not configured"; return 0; }
  if pf_running "$d"; then postfix -c "$d/etc" stop >/dev/null 2>&1 && pf_log "$name stopped"; else pf_log "$name: not running"; fi
}
