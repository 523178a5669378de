#!/usr/bin/python3
"""Interop helper for Elemta's DKIM tests: runs dkimpy (Debian python3-dkim).

Run with /usr/bin/python3 (the Debian module is not visible to other pythons).
The message is read from stdin. DNS answers come only from a JSON file mapping
"selector._domainkey.domain." to the TXT record text: this never touches DNS.

  sign   --selector S --domain D --key FILE [--algo rsa-sha256] [--canon relaxed/relaxed]
         [--headers from,to,...] [--length]      -> writes signature + message to stdout
  verify --dns FILE.json                         -> one line per DKIM-Signature: "<index> pass|fail"
"""
import argparse, json, sys
import dkim


def dnsfunc_from(path):
    with open(path) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        name = name.decode('ascii') if isinstance(name, bytes) else name
        if not name.endswith('.'):
            name += '.'
        txt = records.get(name)
        return txt.encode('ascii') if txt is not None else None
    return dnsfunc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cmd', choices=['sign', 'verify'])
    ap.add_argument('--selector')
    ap.add_argument('--domain')
    ap.add_argument('--key')
    ap.add_argument('--algo', default='rsa-sha256')
    ap.add_argument('--canon', default='relaxed/relaxed')
    ap.add_argument('--headers', default='')
    ap.add_argument('--length', action='store_true')
    ap.add_argument('--dns')
    a = ap.parse_args()
    msg = sys.stdin.buffer.read()

    if a.cmd == 'sign':
        with open(a.key, 'rb') as f:
            key = f.read()
        hc, _, bc = a.canon.partition('/')
        headers = [h.encode() for h in a.headers.split(',') if h] or None
        sig = dkim.sign(msg, a.selector.encode(), a.domain.encode(), key,
                        canonicalize=(hc.encode(), (bc or 'simple').encode()),
                        signature_algorithm=a.algo.encode(),
                        include_headers=headers, length=a.length)
        if not sig:
            sys.exit('dkimpy produced no signature')
        sys.stdout.buffer.write(sig + msg)
        return

    dnsfunc = dnsfunc_from(a.dns)
    d = dkim.DKIM(msg, minkey=1024)
    count = sum(1 for line in msg.split(b'\n')
                if line.lower().startswith(b'dkim-signature:'))
    for i in range(count):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print(f'{i} fail {e}')
            continue
        print(f'{i} {"pass" if ok else "fail"}')


if __name__ == '__main__':
    main()
