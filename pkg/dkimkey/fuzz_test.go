package dkimkey

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRecord checks what ParseRecord promises for any DNS text:
// every error wraps ErrMalformed or is ErrRevoked; a key it returns is an
// RSA key of at least MinRSABits or an Ed25519 key, and publishing that
// key again (as TXTRecord writes it) parses to the same key.
func FuzzParseRecord(f *testing.F) {
	for _, name := range []string{"test.txt", "test2.txt", "ed25519test.dns", "badk.txt", "badversion.txt", "test_bad.txt", "brisbane.txt", "gmail-20120113.txt"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "plugins", "dkim", "testdata", "dkimpy", name)); err == nil {
			f.Add(strings.TrimSpace(string(b)))
		}
	}
	for _, s := range []string{
		"v=DKIM1; p=", "p=;v=DKIM1", "v=DKIM1; k=ed25519; p=AAAA", "k=rsa; h=sha1:sha256; s=email:*; t=y; p=MFww",
		"v=DKIM2; p=x", "v = DKIM1 ; p = M I I B", "novalue", ";;;", "k=ed25519; p=" + strings.Repeat("A", 43) + "=", "s=tlsrpt; p=AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		pk, err := ParseRecord(txt)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrRevoked) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrRevoked: %v", err)
			}
			if pk != nil {
				t.Fatalf("key %+v along with error %v", pk, err)
			}
			return
		}
		var der []byte
		switch pk.KeyType {
		case "rsa":
			if pk.Bits < MinRSABits {
				t.Fatalf("RSA key of %d bits accepted", pk.Bits)
			}
			if der, err = x509.MarshalPKIXPublicKey(pk.Key); err != nil {
				t.Fatal(err)
			}
		case "ed25519":
			if pk.Bits != 256 {
				t.Fatalf("ed25519 key of %d bits", pk.Bits)
			}
			der = pk.Key.(ed25519.PublicKey)
		default:
			t.Fatalf("key type %q accepted", pk.KeyType)
		}
		again, err := ParseRecord("v=DKIM1; k=" + pk.KeyType + "; p=" + base64.StdEncoding.EncodeToString(der))
		if err != nil {
			t.Fatalf("re-published key does not parse: %v", err)
		}
		if again.Bits != pk.Bits || again.KeyType != pk.KeyType || !keyEqual(again.Key, pk.Key) {
			t.Fatalf("re-published key differs: %+v vs %+v", again, pk)
		}
	})
}

func keyEqual(a, b any) bool {
	ea, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// FuzzParse checks the private key loader: every error wraps
// ErrMalformed, and a key it accepts signs data that its own published
// record verifies.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"test.private", "test2.private", "ed25519test.key", "rfc8032_7_1.key"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "plugins", "dkim", "testdata", "dkimpy", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"))
	f.Add([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 31))))
	f.Add([]byte("  \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		rec, err := k.TXTRecord()
		if err != nil {
			t.Fatalf("TXTRecord: %v", err)
		}
		pk, err := ParseRecord(rec)
		if err != nil {
			t.Fatalf("own record %q does not parse: %v", rec, err)
		}
		h := SHA256(data)
		sig, err := k.Sign(h)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if err := pk.Verify(k.Algorithm, h, sig); err != nil {
			t.Fatalf("own signature does not verify with own record: %v", err)
		}
	})
}
