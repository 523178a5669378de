package dkim

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/elemta/elemta/registry"
)

// fakeResolver answers TXT queries from a map; missing names are NXDOMAIN.
type fakeResolver struct {
	txt  map[string]string // name without trailing dot -> record
	errs map[string]error
	mu   sync.Mutex
	seen []string
}

func (r *fakeResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	r.seen = append(r.seen, name)
	r.mu.Unlock()
	if err := r.errs[name]; err != nil {
		return nil, err
	}
	if v, ok := r.txt[name]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeResolver) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "not in fake", IsNotFound: true}
}

func (r *fakeResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, &net.DNSError{Err: "not in fake", IsNotFound: true}
}

func (r *fakeResolver) LookupAddr(context.Context, string) ([]string, error) {
	return nil, &net.DNSError{Err: "not in fake", IsNotFound: true}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record reads a key record file, trimmed.
func record(t testing.TB, name string) string {
	return strings.TrimSpace(string(readFile(t, filepath.Join("testdata", "dkimpy", name))))
}

// privateCopy copies a key file to a 0600 file in a temporary directory.
func privateCopy(t testing.TB, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(dst, readFile(t, path), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// toCRLF turns bare LF line ends into CRLF.
func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func parse(t testing.TB, raw []byte, env registry.Envelope) *registry.Message {
	t.Helper()
	m, err := registry.ParseMessage(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newPlugin builds (New validates) and starts a plugin like the Manager does.
func newPlugin(t testing.TB, cfg Config, res registry.Resolver, logs *bytes.Buffer) *Plugin {
	t.Helper()
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	p, err := New(cfg, registry.Host{Resolver: res, Logger: slog.New(slog.NewTextHandler(logs, nil)), Clock: registry.SystemClock{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// signed returns raw with the plugin's DKIM-Signature for domain prepended,
// as Message.Rewrite writes it out.
func signed(t testing.TB, p *Plugin, raw []byte, domain string) []byte {
	t.Helper()
	m := parse(t, raw, registry.Envelope{})
	if err := p.SignMessage(context.Background(), m, domain); err != nil {
		t.Fatal(err)
	}
	return m.Rewrite(nil, nil)
}

func results(r *registry.DKIMResult) []registry.AuthResult {
	var out []registry.AuthResult
	for _, s := range r.Signatures {
		out = append(out, s.Result)
	}
	return out
}

func newLogger(w *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func chmod(path string, mode os.FileMode) error { return os.Chmod(path, mode) }
