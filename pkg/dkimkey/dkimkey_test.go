//go:debug rsa1024min=0

package dkimkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pemBytes(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes(t, "PRIVATE KEY", der)
}

func TestParse(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1023, err := rsa.GenerateKey(rand.Reader, 1023)
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	ed := ed25519.NewKeyFromSeed(seed)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		data    []byte
		algo    string
		bits    int
		wantErr string
	}{
		{"rsa pkcs1", pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), "rsa-sha256", 1024, ""},
		{"rsa pkcs8", pkcs8(t, rsa1024), "rsa-sha256", 1024, ""},
		{"rsa 1023 bits refused", pkcs8(t, rsa1023), "", 0, "RSA key of 1023 bits"},
		{"ed25519 pkcs8", pkcs8(t, ed), "ed25519-sha256", 256, ""},
		{"ed25519 seed (dkimpy)", []byte(base64.StdEncoding.EncodeToString(seed) + "\n"), "ed25519-sha256", 256, ""},
		{"ed25519 64-byte key", []byte(base64.StdEncoding.EncodeToString(ed)), "ed25519-sha256", 256, ""},
		{"base64 of wrong length", []byte(base64.StdEncoding.EncodeToString(seed[:31])), "", 0, "31 bytes"},
		{"empty", nil, "", 0, "empty file"},
		{"garbage", []byte("not a key"), "", 0, "neither PEM nor"},
		{"ecdsa unsupported", pkcs8(t, ec), "", 0, "unsupported key type"},
		{"public key block", pemBytes(t, "PUBLIC KEY", []byte{1}), "", 0, `"PUBLIC KEY" is not a private key`},
		{"encrypted", pemBytes(t, "ENCRYPTED PRIVATE KEY", []byte{1}), "", 0, "encrypted"},
		{"corrupt pkcs1", pemBytes(t, "RSA PRIVATE KEY", []byte{1, 2, 3}), "", 0, "RSA PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Parse(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse() error = %v, want ErrMalformed containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(): %v", err)
			}
			if k.Algorithm != tc.algo || k.Bits != tc.bits {
				t.Errorf("got %s/%d, want %s/%d", k.Algorithm, k.Bits, tc.algo, tc.bits)
			}
			txt, err := k.TXTRecord()
			if err != nil || !strings.HasPrefix(txt, "v=DKIM1; k="+strings.TrimSuffix(tc.algo, "-sha256")+"; p=") {
				t.Errorf("TXTRecord() = %q, %v", txt, err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	seed := base64.StdEncoding.EncodeToString(make([]byte, 32))
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		wantErr  string
		warnings []string
	}{
		{"private file", write("ok.key", seed, 0o600), "", nil},
		{"group readable is fine", write("group.key", seed, 0o640), "", nil},
		{"world readable warns", write("world.key", seed, 0o644), "", []string{"world-readable (mode 0644)"}},
		{"world writable warns", write("ww.key", seed, 0o606), "", []string{"world-readable", "world-writable"}},
		{"missing file", filepath.Join(dir, "nope.key"), "no such file", nil},
		{"directory", dir, "not a regular file", nil},
		{"malformed", write("bad.key", "junk", 0o600), "bad.key: malformed key", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadFile(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadFile() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Path != tc.path || len(k.Warnings) != len(tc.warnings) {
				t.Fatalf("got path %q warnings %q, want %d warnings", k.Path, k.Warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.Contains(k.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, k.Warnings[i], w)
				}
			}
		})
	}
}
