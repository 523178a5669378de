package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// MinRSABits is the smallest RSA key RFC 8301 §3.2 lets a signer use;
// verifiers must refuse anything shorter.
const MinRSABits = 1024

// ErrMalformed is wrapped by every error about a key file's contents.
var ErrMalformed = errors.New("malformed key")

// Key is a loaded signing key.
type Key struct {
	Signer crypto.Signer
	// Algorithm is the DKIM a= value: "rsa-sha256" or "ed25519-sha256".
	Algorithm string
	// Bits is the RSA modulus size, 256 for Ed25519.
	Bits int
	// Path is the file the key came from ("" when parsed from memory).
	Path string
	// Warnings are problems that do not stop the key from being used,
	// such as a world-readable file.
	Warnings []string
}

// LoadFile reads and parses the key in path, and warns when the file can be
// read or written by users other than its owner and group.
func LoadFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dkimkey: load %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("dkimkey: load %s: not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkimkey: load %s: %w", path, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("dkimkey: load %s: %w", path, err)
	}
	k.Path = path
	k.Warnings = permissionWarnings(path, fi.Mode())
	return k, nil
}

func permissionWarnings(path string, mode fs.FileMode) []string {
	var w []string
	if mode&0o004 != 0 {
		w = append(w, fmt.Sprintf("private key %s is world-readable (mode %04o): chmod o-rwx it", path, mode.Perm()))
	}
	if mode&0o002 != 0 {
		w = append(w, fmt.Sprintf("private key %s is world-writable (mode %04o): chmod o-rwx it", path, mode.Perm()))
	}
	return w
}

// Parse parses a PEM private key (PKCS#1 RSA, PKCS#8 RSA or Ed25519) or a
// base64 Ed25519 seed (dkimpy's format).
func Parse(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return parseSeed(data)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: the PEM block is encrypted; store the key unencrypted (readable only by elemta)", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a private key (want \"RSA PRIVATE KEY\" or \"PRIVATE KEY\")", ErrMalformed, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, block.Type, err)
	}
	return fromKey(key)
}

func parseSeed(data []byte) (*Key, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil, fmt.Errorf("%w: empty file", ErrMalformed)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: neither PEM nor a base64 Ed25519 seed", ErrMalformed)
	}
	switch len(b) {
	case ed25519.SeedSize:
		return fromKey(ed25519.NewKeyFromSeed(b))
	case ed25519.PrivateKeySize:
		return fromKey(ed25519.PrivateKey(b))
	}
	return nil, fmt.Errorf("%w: base64 data of %d bytes is not an Ed25519 seed (32 bytes)", ErrMalformed, len(b))
}

func fromKey(key any) (*Key, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		bits := k.N.BitLen()
		if bits < MinRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits: RFC 8301 requires at least %d (2048 recommended)", ErrMalformed, bits, MinRSABits)
		}
		return &Key{Signer: k, Algorithm: "rsa-sha256", Bits: bits}, nil
	case ed25519.PrivateKey:
		return &Key{Signer: k, Algorithm: "ed25519-sha256", Bits: 256}, nil
	case *ed25519.PrivateKey:
		return fromKey(*k)
	}
	return nil, fmt.Errorf("%w: unsupported key type %T (want RSA or Ed25519)", ErrMalformed, key)
}

// TXTRecord returns the DKIM key record to publish for k at
// <selector>._domainkey.<domain>: "v=DKIM1; k=rsa; p=..." .
func (k *Key) TXTRecord() (string, error) {
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkimkey: encode public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkimkey: unsupported public key %T", k.Signer.Public())
}
