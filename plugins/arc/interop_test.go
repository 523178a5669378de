package arc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
)

const python = testenv.Python

const testMsg = "From: Alice <alice@example.com>\r\n" +
	"To: list@example.org\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <lunch-1@example.com>\r\n" +
	"\r\n" +
	"Shall we  meet at noon?\r\n"

func dkimpyARC(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", "arc_helper.py")}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("arc_helper %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// interopEnv is an RSA-2048 sealing key known to both implementations.
type interopEnv struct {
	keyFile, dnsFile string
	key              *dkimkey.Key
	res              *fakeResolver
}

func newInteropEnv(t *testing.T) *interopEnv {
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &interopEnv{keyFile: filepath.Join(dir, "arc.key"), dnsFile: filepath.Join(dir, "dns.json")}
	// PKCS#1: the form dkimpy reads.
	if err := os.WriteFile(e.keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.key, err = dkimkey.LoadFile(e.keyFile); err != nil {
		t.Fatal(err)
	}
	txt, _ := e.key.TXTRecord()
	e.res = &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	b, _ := json.Marshal(map[string]string{"arc._domainkey.example.org.": txt})
	if err := os.WriteFile(e.dnsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// hop seals msg as forwarder number n, with dkimpy ('d') or us ('o').
func (e *interopEnv) hop(t *testing.T, who byte, n int, msg []byte) []byte {
	t.Helper()
	srv := fmt.Sprintf("hop%d.example.org", n)
	switch who {
	case 'd':
		return dkimpyARC(t, msg, "seal", "--selector", "arc", "--domain", "example.org",
			"--key", e.keyFile, "--srv-id", srv, "--dns", e.dnsFile, "--timestamp", fmt.Sprint(time.Now().Unix()))
	case 'o':
		m, err := registry.ParseMessage(msg, registry.Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		s := &sealer{domain: "example.org", selector: "arc", key: e.key, headers: DefaultHeaders}
		fields, why, err := sealMessage(context.Background(), s, e.res, m, srv, "", time.Now(), MaxInstances)
		if err != nil {
			t.Fatal(err)
		}
		if fields == nil {
			t.Logf("hop %d not sealed: %s", n, why)
		}
		return m.Rewrite(fields, nil)
	}
	t.Fatalf("unknown sealer %c", who)
	return nil
}

// verdicts returns our result and dkimpy's cv for msg.
func (e *interopEnv) verdicts(t *testing.T, msg []byte) (*registry.ARCResult, string) {
	t.Helper()
	m, err := registry.ParseMessage(msg, registry.Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	ours := validate(context.Background(), e.res, m, MaxInstances)
	theirs := strings.TrimSpace(string(dkimpyARC(t, msg, "verify", "--dns", e.dnsFile)))
	return ours, theirs
}

// TestInteropDKIMPy seals chains with dkimpy and with us, one to three
// hops, alternating, and verifies the result with both; tampering with the
// body or a sealed header after any hop fails in both.
func TestInteropDKIMPy(t *testing.T) {
	testenv.RequireTool(t, python, "dkim")
	e := newInteropEnv(t)
	tampers := map[string]func([]byte) []byte{
		"body":   func(b []byte) []byte { return bytes.Replace(b, []byte("noon"), []byte("one!"), 1) },
		"header": func(b []byte) []byte { return bytes.Replace(b, []byte("Subject: Lunch"), []byte("Subject: Lunch?"), 1) },
	}
	for _, chain := range []string{"d", "o", "do", "od", "dod", "odo"} {
		// tamperAt 0: untouched; k: after hop k.
		for tamperAt := 0; tamperAt <= len(chain); tamperAt++ {
			for _, kind := range []string{"body", "header"} {
				if tamperAt == 0 && kind == "header" {
					continue
				}
				name := chain + "/untouched"
				if tamperAt > 0 {
					name = fmt.Sprintf("%s/%s tampered after hop %d", chain, kind, tamperAt)
				}
				t.Run(name, func(t *testing.T) {
					msg := []byte(testMsg)
					for i := range len(chain) {
						msg = e.hop(t, chain[i], i+1, msg)
						if tamperAt == i+1 {
							msg = tampers[kind](msg)
						}
					}
					ours, theirs := e.verdicts(t, msg)
					want := "pass"
					if tamperAt > 0 {
						want = "fail"
					}
					// dkimpy 1.1.4 reports a chain whose newest seal says cv=fail as
					// "none ... the chain is terminated"; RFC 8617 §5.2 step 2 says fail.
					theirsOK := strings.HasPrefix(theirs, want+" ") ||
						want == "fail" && strings.HasPrefix(theirs, "none ") && strings.Contains(theirs, "reported failure")
					if string(ours.Result) != want || !theirsOK {
						t.Fatalf("ours: %s (%s), dkimpy: %s; want %s", ours.Result, ours.Reason, theirs, want)
					}
					if want == "pass" && ours.Instances != len(chain) {
						t.Fatalf("ours found %d sets, want %d", ours.Instances, len(chain))
					}
				})
			}
		}
	}
}
