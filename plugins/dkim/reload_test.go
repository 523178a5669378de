package dkim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/registry"
)

// TestReloadReadsReplacedKey is what a config reload does with a key file
// replaced on disk: the instance already serving keeps the key it read at
// Start, the new instance (built and started by the reload) signs with the
// new key, and both verify against the selector's record of their time.
func TestReloadReadsReplacedKey(t *testing.T) {
	dir := filepath.Join("testdata", "dkimpy")
	keyFile := filepath.Join(t.TempDir(), "dkim.key")
	if err := os.WriteFile(keyFile, readFile(t, filepath.Join(dir, "test.private")), 0o600); err != nil {
		t.Fatal(err)
	}
	res := &fakeResolver{txt: map[string]string{"sel._domainkey.example.com": record(t, "test.txt")}}
	cfg := DefaultConfig()
	cfg.Domains = map[string]DomainConfig{"example.com": {Selector: "sel", PrivateKey: keyFile}}
	old := newPlugin(t, cfg, res, nil)

	// The key is rotated: a new file at the same path (written beside it
	// and renamed over, as a deployment would), the record follows.
	tmp := keyFile + ".new"
	if err := os.WriteFile(tmp, readFile(t, filepath.Join(dir, "ed25519test.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, keyFile); err != nil {
		t.Fatal(err)
	}
	cur := newPlugin(t, cfg, res, nil)

	verify := func(p *Plugin, msg []byte) registry.AuthResult {
		t.Helper()
		got, err := p.VerifySignature(context.Background(), parse(t, msg, registry.Envelope{}))
		if err != nil || len(got.Signatures) != 1 {
			t.Fatalf("verify: %v %+v", err, got)
		}
		return got.Signatures[0].Result
	}
	fromOld := signed(t, old, []byte(testMsg), "example.com")
	if !strings.Contains(string(fromOld), "a=rsa-sha256;") {
		t.Fatalf("the serving instance changed keys under its feet: %s", fromOld)
	}
	if r := verify(old, fromOld); r != registry.AuthPass {
		t.Fatalf("old key before the record changes: %s", r)
	}
	fromNew := signed(t, cur, []byte(testMsg), "example.com")
	if !strings.Contains(string(fromNew), "a=ed25519-sha256;") {
		t.Fatalf("the reloaded instance did not read the replaced key file: %s", fromNew)
	}
	res.txt["sel._domainkey.example.com"] = record(t, "ed25519test.dns")
	if r := verify(cur, fromNew); r != registry.AuthPass {
		t.Fatalf("new key against the new record: %s", r)
	}
}
