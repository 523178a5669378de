// Package dkimkey loads DKIM and ARC signing keys and parses the public key
// records verifiers fetch from DNS.
//
// Private keys: RSA keys in PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8
// "PRIVATE KEY"), Ed25519 keys in PEM (PKCS#8 "PRIVATE KEY"), and Ed25519
// keys as dkimpy writes them (base64 of the 32-byte seed). It checks what a
// signer must: RSA keys of at least MinRSABits (RFC 8301 §3.2), and key
// files that others can read (Key.Warnings). Public keys: ParseRecord reads
// the text of a <selector>._domainkey.<domain> TXT record (RFC 6376 §3.6.1);
// its errors wrap ErrMalformed or ErrRevoked.
//
// Elemta's dkim and arc plugins load their keys with it:
//
//	key, err := dkimkey.LoadFile("/etc/elemta/dkim/default.key")
//	if err != nil {
//		return fmt.Errorf("load signing key: %w", err)
//	}
//	for _, w := range key.Warnings {
//		log.Warn(w)
//	}
//	txt, _ := key.TXTRecord() // what to publish: "v=DKIM1; k=rsa; p=..."
//	pub, err := dkimkey.ParseRecord(txt)
//	sig, _ := key.Sign(dkimkey.SHA256(data))
//	err = pub.Verify(key.Algorithm, dkimkey.SHA256(data), sig)
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package dkimkey
