package dkim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
)

const python = testenv.Python

// dkimpy runs testdata/dkimpy_helper.py with stdin and returns its stdout.
func dkimpy(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", "dkimpy_helper.py")}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

type interopKey struct {
	selector, algo string
	file           string // read by both dkimpy and us
	record         string
}

// interopKeys writes a fresh RSA-2048 key (PKCS#1 PEM, the form dkimpy reads)
// and an ed25519 key (base64 seed, dkimpy's form) and a DNS file for dkimpy.
func interopKeys(t *testing.T) (keys []interopKey, dnsFile string) {
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"rsa-sha256":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}),
		"ed25519-sha256": []byte(base64.StdEncoding.EncodeToString(ek.Seed()) + "\n"),
	}
	dns := map[string]string{}
	for _, algo := range []string{"rsa-sha256", "ed25519-sha256"} {
		k := interopKey{selector: strings.TrimSuffix(algo, "-sha256"), algo: algo, file: filepath.Join(dir, algo+".key")}
		if err := os.WriteFile(k.file, files[algo], 0o600); err != nil {
			t.Fatal(err)
		}
		loaded, err := dkimkey.LoadFile(k.file)
		if err != nil {
			t.Fatal(err)
		}
		if k.record, err = loaded.TXTRecord(); err != nil {
			t.Fatal(err)
		}
		dns[k.selector+"._domainkey.example.com."] = k.record
		keys = append(keys, k)
	}
	b, err := json.Marshal(dns)
	if err != nil {
		t.Fatal(err)
	}
	dnsFile = filepath.Join(dir, "dns.json")
	if err := os.WriteFile(dnsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return keys, dnsFile
}

var interopTampers = []struct {
	name string
	edit func(string) string
	pass bool
}{
	{"untouched", func(s string) string { return s }, true},
	{"body tampered", func(s string) string { return strings.Replace(s, "noon", "one", 1) }, false},
	{"signed header tampered", func(s string) string { return strings.Replace(s, "Subject: Lunch", "Subject: Lunch!", 1) }, false},
}

// TestInteropDKIMPy signs with dkimpy and verifies with us, and the other
// way round, for RSA and ed25519 under each canonicalization.
func TestInteropDKIMPy(t *testing.T) {
	testenv.RequireTool(t, python, "dkim")
	keys, dnsFile := interopKeys(t)
	res := &fakeResolver{txt: map[string]string{}}
	for _, k := range keys {
		res.txt[k.selector+"._domainkey.example.com"] = k.record
	}
	verifier := newPlugin(t, DefaultConfig(), res, nil)
	for _, k := range keys {
		for _, canon := range []string{"simple/simple", "relaxed/relaxed", "relaxed/simple", "simple/relaxed"} {
			cfg := DefaultConfig()
			cfg.Canonicalization = canon
			cfg.Domains = map[string]DomainConfig{"example.com": {Selector: k.selector, PrivateKey: k.file}}
			ours := string(signed(t, newPlugin(t, cfg, res, nil), []byte(testMsg), "example.com"))
			theirs := string(dkimpy(t, []byte(testMsg), "sign", "--selector", k.selector, "--domain", "example.com",
				"--key", k.file, "--algo", k.algo, "--canon", canon))
			for _, tc := range interopTampers {
				t.Run("dkimpy signs, we verify/"+k.algo+"/"+canon+"/"+tc.name, func(t *testing.T) {
					got, err := verifier.VerifySignature(context.Background(), parse(t, []byte(tc.edit(theirs)), registry.Envelope{}))
					if err != nil {
						t.Fatal(err)
					}
					if len(got.Signatures) != 1 || (got.Signatures[0].Result == registry.AuthPass) != tc.pass {
						t.Fatalf("got %+v, want pass=%v", got.Signatures, tc.pass)
					}
				})
				t.Run("we sign, dkimpy verifies/"+k.algo+"/"+canon+"/"+tc.name, func(t *testing.T) {
					out := strings.TrimSpace(string(dkimpy(t, []byte(tc.edit(ours)), "verify", "--dns", dnsFile)))
					if want := map[bool]string{true: "0 pass", false: "0 fail"}[tc.pass]; !strings.HasPrefix(out, want) {
						t.Fatalf("dkimpy says %q, want %q", out, want)
					}
				})
			}
		}
	}
}
