#!/usr/bin/python3
"""Interop helper for Elemta's ARC tests: runs dkimpy's ARC (Debian python3-dkim).

Run with /usr/bin/python3. The message is read from stdin. DNS answers come only
from a JSON file mapping "selector._domainkey.domain." to the TXT record text.

  seal   --selector S --domain D --key FILE --srv-id ID --dns FILE.json [--timestamp T]
         -> verifies the incoming chain with dkimpy, adds "Authentication-Results: ID;
            arc=<cv>" (dkimpy takes the new seal's cv= from it, and only seals when such a
            header exists), and writes the new ARC set + that header + message to stdout.
  verify --dns FILE.json -> prints "<cv> <number of sets> <reason>"
"""
import argparse, json, sys
import dkim


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cmd', choices=['seal', 'verify'])
    ap.add_argument('--selector')
    ap.add_argument('--domain')
    ap.add_argument('--key')
    ap.add_argument('--srv-id')
    ap.add_argument('--timestamp', type=int)
    ap.add_argument('--dns')
    a = ap.parse_args()
    msg = sys.stdin.buffer.read()

    with open(a.dns) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        name = name.decode('ascii') if isinstance(name, bytes) else name
        txt = records.get(name if name.endswith('.') else name + '.')
        return txt.encode('ascii') if txt is not None else None

    cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    cv = cv.decode() if cv else 'none'
    if a.cmd == 'verify':
        print(cv, len(results), reason)
        return

    if cv == 'none' and results:
        # dkimpy reports a chain whose newest seal says cv=fail as cv=none ("the chain is
        # terminated") and, like RFC 8617 §5.1, does not seal on top of it.
        sys.stderr.write('not sealed: %s\n' % reason)
        sys.stdout.buffer.write(msg)
        return
    with open(a.key, 'rb') as f:
        key = f.read()
    msg = ('Authentication-Results: %s; arc=%s\r\n' % (a.srv_id, cv)).encode() + msg
    headers = dkim.arc_sign(msg, a.selector.encode(), a.domain.encode(), key,
                            a.srv_id.encode(), timestamp=a.timestamp)
    if not headers:
        sys.exit('dkimpy arc_sign produced nothing')
    sys.stdout.buffer.write(b''.join(headers) + msg)


if __name__ == '__main__':
    main()
