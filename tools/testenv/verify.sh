#!/usr/bin/env bash
# tools/testenv/verify.sh - end-to-end checks of the services started by start.sh: DNS (udp, tcp, v4,
# v6, negative answers), redis, clamd (PING, INSTREAM over TCP and the unix socket), rspamd (ping,
# checkv2 with GTUBE), and the DKIM keys (sign with dkimpy, verify through the test DNS).
# Exits non-zero if any check fails.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${ELEMTA_TESTENV_DIR:-$(cd "$HERE/../.." && pwd)/.testenv}
[ -s "$STATE/env.sh" ] || { echo "[testenv] no $STATE/env.sh: run tools/testenv/start.sh first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$STATE/env.sh"
DNS_HOST=${ELEMTA_TEST_DNS%:*} DNS_PORT=${ELEMTA_TEST_DNS##*:}
REDIS_PORT=${ELEMTA_TEST_REDIS##*:}
pass=0 fail=0
check() { # description, expected (grep -E), actual
  if printf '%s' "$3" | grep -qE -- "$2"; then
    pass=$((pass + 1)); printf 'ok    %-46s %s\n' "$1" "$(printf '%s' "$3" | head -c 90 | tr '\n' ' ')"
  else
    fail=$((fail + 1)); printf 'FAIL  %-46s got: %s\n' "$1" "$(printf '%s' "$3" | head -c 300 | tr '\n' ' ')"
  fi
}
q() { dig +time=2 +tries=1 -p "$DNS_PORT" "$@"; }

check "dns SPF pass.example.test (udp)"     '^"v=spf1 ip4:127' "$(q +short @"$DNS_HOST" pass.example.test TXT)"
check "dns DKIM rsa2048 key (tcp, ::1)"     'v=DKIM1; k=rsa; p=MII' "$(q +short +tcp @::1 rsa2048._domainkey.example.test TXT)"
check "dns DKIM ed25519 key"                'v=DKIM1; k=ed25519; p=' "$(q +short @"$DNS_HOST" ed25519._domainkey.example.test TXT)"
check "dns MX example.test"                 '^10 mail.example.test.' "$(q +short @"$DNS_HOST" example.test MX)"
check "dns DMARC dmarc-reject.test"         'p=reject' "$(q +short @"$DNS_HOST" _dmarc.dmarc-reject.test TXT)"
check "dns PTR 127.0.0.1"                   '^mail.example.test.$' "$(q +short @"$DNS_HOST" -x 127.0.0.1)"
check "dns NXDOMAIN www.google.com (no recursion)" 'status: NXDOMAIN' "$(q @"$DNS_HOST" www.google.com A)"
check "dns NXDOMAIN carries the SOA (neg TTL)" 'IN[[:space:]]+SOA' "$(q @"$DNS_HOST" nope.example.test A)"
check "dns NODATA none.example.test TXT"    'status: NOERROR.*ANSWER: 0' "$(q @"$DNS_HOST" none.example.test TXT | tr '\n' ' ')"

check "redis PING"                          '^PONG$' "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping)"

TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
clam() { /usr/bin/python3 - "$@" <<'PY'  # OP ADDR [FILE]  (the heredoc is python's stdin: data goes by file)
import socket, struct, sys
op, addr = sys.argv[1], sys.argv[2]
if addr.startswith('/'):
    s = socket.socket(socket.AF_UNIX); s.connect(addr)
else:
    h, p = addr.rsplit(':', 1); s = socket.create_connection((h, int(p)))
s.settimeout(30)
if op == 'INSTREAM':
    data = open(sys.argv[3], 'rb').read()
    s.sendall(b'zINSTREAM\0')
    for i in range(0, len(data), 8192):
        s.sendall(struct.pack('>I', len(data[i:i + 8192])) + data[i:i + 8192])
    s.sendall(struct.pack('>I', 0))
else:
    s.sendall(b'z' + op.encode() + b'\0')
buf = b''
while not buf.endswith(b'\0'):
    d = s.recv(4096)
    if not d: break
    buf += d
print(buf.rstrip(b'\0').decode())
PY
}
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
check "clamd PING (tcp)"                    '^PONG$' "$(clam PING "$ELEMTA_TEST_CLAMD")"
check "clamd PING (unix socket)"            '^PONG$' "$(clam PING "$ELEMTA_TEST_CLAMD_SOCKET")"
check "clamd INSTREAM EICAR"                'Eicar-Test-Signature.UNOFFICIAL FOUND' "$(printf '%s' "$EICAR" > "$TMP/eicar"; clam INSTREAM "$ELEMTA_TEST_CLAMD" "$TMP/eicar")"
check "clamd INSTREAM clean (unix socket)"  '^stream: OK$' "$(echo 'a clean text' > "$TMP/clean"; clam INSTREAM "$ELEMTA_TEST_CLAMD_SOCKET" "$TMP/clean")"
# zips nested 12 deep (MaxRecursion is 8), the innermost file random so clamd's clean cache never answers
python3 -c 'import io, os, sys, zipfile
d = os.urandom(16).hex().encode()
for i in range(12):
    b = io.BytesIO(); z = zipfile.ZipFile(b, "w"); z.writestr("l%d" % i, d); z.close(); d = b.getvalue()
sys.stdout.buffer.write(d)' > "$TMP/deep.zip"
check "clamd AlertExceedsMax (MaxRecursion)"  'Heuristics.Limits.Exceeded.MaxRecursion FOUND' "$(clam INSTREAM "$ELEMTA_TEST_CLAMD" "$TMP/deep.zip")"
[ -e /usr/share/clamav-testfiles/clam.zip ] &&
  check "clamd INSTREAM clamav-testfiles/clam.zip" 'ClamAV-Test-File.UNOFFICIAL FOUND' "$(clam INSTREAM "$ELEMTA_TEST_CLAMD" /usr/share/clamav-testfiles/clam.zip)"

check "rspamd /ping"                        '^pong' "$(curl -s --max-time 5 "$ELEMTA_TEST_RSPAMD/ping")"
gtube=$(printf 'From: a@example.test\r\nTo: b@example.org\r\nSubject: gtube\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n')
check "rspamd checkv2 GTUBE -> reject"      '"action": ?"reject"' "$(printf '%s' "$gtube" | curl -s --max-time 20 -H 'IP: 127.0.0.2' --data-binary @- "$ELEMTA_TEST_RSPAMD/checkv2")"

# DKIM: sign with dkimpy using our keys, verify with dkimpy resolving through the test DNS
dkim_out=$(ELEMTA_TEST_DNS=$ELEMTA_TEST_DNS ELEMTA_TEST_KEYS=$ELEMTA_TEST_KEYS /usr/bin/python3 - <<'PY' 2>&1
import os, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
host, port = os.environ['ELEMTA_TEST_DNS'].rsplit(':', 1)
r.nameservers, r.port, r.lifetime = [host], int(port), 3
dns.resolver.default_resolver = r
keys = os.environ['ELEMTA_TEST_KEYS']
msg = b"From: a@example.test\r\nTo: b@example.org\r\nSubject: verify\r\n\r\nHello.\r\n"
out = []
for sel, key, alg in [(b'rsa2048', 'rsa2048.pem', b'rsa-sha256'), (b'ed25519', 'ed25519.seed', b'ed25519-sha256'),
                      (b'mismatch', 'rsa2048.pem', b'rsa-sha256')]:
    sig = dkim.sign(msg, sel, b'example.test', open(os.path.join(keys, key), 'rb').read(), signature_algorithm=alg)
    out.append('%s=%s' % (sel.decode(), 'pass' if dkim.verify(sig + msg) else 'fail'))
print(' '.join(out))
PY
)
check "dkimpy sign+verify via test DNS"     '^rsa2048=pass ed25519=pass mismatch=fail$' "$dkim_out"

ehlo() { /usr/bin/python3 -c 'import smtplib, sys
h, p = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(h, int(p), timeout=10); print(s.ehlo()[1].decode().replace("\n", " ")); s.quit()' "$1" 2>&1; }
check "postfix EHLO offers 8BITMIME, SMTPUTF8"  '8BITMIME.*SMTPUTF8' "$(ehlo "$ELEMTA_TEST_POSTFIX")"
check "postfix (7bit) EHLO lacks 8BITMIME"      '^[^8]*SMTPUTF8' "$(ehlo "$ELEMTA_TEST_POSTFIX_7BIT")"
check "python3-authres parses a folded field"   '^ok$' "$(/usr/bin/python3 -c 'import authres; authres.AuthenticationResultsHeader.parse("Authentication-Results: mx.example.test; spf=pass\r\n smtp.mailfrom=a@example.test"); print("ok")' 2>&1)"

echo "[testenv] verify: $pass passed, $fail failed"
[ "$fail" = 0 ]
