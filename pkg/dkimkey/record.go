package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrRevoked is returned for a key record with an empty p= (RFC 6376 §3.6.1).
var ErrRevoked = errors.New("key revoked")

// ErrShortKey is wrapped by the error for an RSA key of fewer than
// MinRSABits bits (RFC 8301 §3.2).
var ErrShortKey = errors.New("RSA key too short")

// PublicKey is a parsed DKIM key record (RFC 6376 §3.6.1), as DKIM and ARC
// verifiers fetch from <selector>._domainkey.<domain>.
type PublicKey struct {
	Key crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey
	// KeyType is the k= value: "rsa" or "ed25519".
	KeyType string
	// Hashes is the h= list; nil means any.
	Hashes []string
	Bits   int
}

// ParseRecord parses the text of a DKIM key record. Errors wrap
// ErrMalformed or ErrRevoked; RSA keys under MinRSABits are refused
// (RFC 8301 §3.2), as are records whose s= excludes email.
func ParseRecord(txt string) (*PublicKey, error) {
	tags := map[string]string{}
	for i, part := range strings.Split(txt, ";") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			if strings.TrimSpace(part) == "" {
				continue
			}
			return nil, fmt.Errorf("%w: key record error: tag %q has no value", ErrMalformed, strings.TrimSpace(part))
		}
		if k == "v" && i != 0 {
			return nil, fmt.Errorf("%w: key record v= is not the first tag", ErrMalformed)
		}
		tags[k] = strings.Join(strings.Fields(v), "")
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("%w: incompatible public key version: key record version %q (want DKIM1)", ErrMalformed, v)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, fmt.Errorf("%w: key syntax error: key record has no p=", ErrMalformed)
	}
	if p == "" {
		return nil, ErrRevoked
	}
	if s, ok := tags["s"]; ok && !hasAny(s, "email", "*") {
		return nil, fmt.Errorf("%w: inappropriate service: key record s=%s is not for email", ErrMalformed, s)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: key syntax error: key record p=: %w", ErrMalformed, err)
	}
	pk := &PublicKey{KeyType: tags["k"]}
	if pk.KeyType == "" {
		pk.KeyType = "rsa"
	}
	if h, ok := tags["h"]; ok {
		pk.Hashes = strings.Split(h, ":")
	}
	switch pk.KeyType {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			if pub, err = x509.ParsePKCS1PublicKey(der); err != nil {
				return nil, fmt.Errorf("%w: key syntax error: key record p= is not an RSA public key: %w", ErrMalformed, err)
			}
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: key syntax error: key record k=rsa holds a %T", ErrMalformed, pub)
		}
		pk.Key, pk.Bits = rk, rk.N.BitLen()
		if pk.Bits < MinRSABits {
			return nil, fmt.Errorf("%w: %w: %d bits (RFC 8301: at least %d)", ErrMalformed, ErrShortKey, pk.Bits, MinRSABits)
		}
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key syntax error: ed25519 key of %d bytes", ErrMalformed, len(der))
		}
		pk.Key, pk.Bits = ed25519.PublicKey(der), 256
	default:
		return nil, fmt.Errorf("%w: unsupported key algorithm: unknown key type k=%s", ErrMalformed, pk.KeyType)
	}
	return pk, nil
}

// Verify checks sig over the SHA-256 hash of the signed data for the
// signing algorithm algo ("rsa-sha256" or "ed25519-sha256").
func (pk *PublicKey) Verify(algo string, hashed, sig []byte) error {
	keyType, hash, _ := strings.Cut(algo, "-")
	if hash != "sha256" {
		return fmt.Errorf("unsupported algorithm %q", algo)
	}
	if keyType != pk.KeyType {
		return fmt.Errorf("algorithm %s does not match key type %s", algo, pk.KeyType)
	}
	if pk.Hashes != nil && !hasAny(strings.Join(pk.Hashes, ":"), "sha256") {
		return fmt.Errorf("key record h= does not allow sha256")
	}
	switch k := pk.Key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, hashed, sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, hashed, sig) {
			return errors.New("ed25519: invalid signature")
		}
		return nil
	}
	return fmt.Errorf("unsupported key %T", pk.Key)
}

// Sign signs the SHA-256 hash of the signed data with k.
func (k *Key) Sign(hashed []byte) ([]byte, error) {
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		return k.Signer.Sign(nil, hashed, crypto.Hash(0))
	}
	return k.Signer.Sign(rand.Reader, hashed, crypto.SHA256)
}

// SHA256 is a convenience for callers hashing canonical data.
func SHA256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func hasAny(list string, want ...string) bool {
	for _, v := range strings.Split(list, ":") {
		for _, w := range want {
			if strings.TrimSpace(v) == w {
				return true
			}
		}
	}
	return false
}
