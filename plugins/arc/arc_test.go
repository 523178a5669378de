package arc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// testAuthres stands in for the authres plugin: it adds our
// Authentication-Results header at post-reception.
type testAuthres struct{}

func (testAuthres) HandleStage(ctx context.Context, s registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{AddHeaders: []registry.Field{
		{Name: "Authentication-Results", Value: "mx.example.org; spf=pass smtp.mailfrom=example.com"},
		{Name: "Authentication-Results", Value: "mx.example.org; dkim=none"},
	}}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, testAuthres]{
		Name: "arctest-authres", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception},
		New:    func(struct{}, registry.Host) (testAuthres, error) { return testAuthres{}, nil },
	})
}

var (
	keyOnce sync.Once
	keyPEM  []byte
)

// writeKey writes a 1024-bit RSA key (generated once per run) and returns
// its path and DNS record.
func writeKey(t testing.TB, mode os.FileMode) (string, string) {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	})
	path := filepath.Join(t.TempDir(), "arc.key")
	if err := os.WriteFile(path, keyPEM, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	k, err := dkimkey.Parse(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := k.TXTRecord()
	return path, txt
}

func parse(t testing.TB, raw []byte, env registry.Envelope) *registry.Message {
	t.Helper()
	m, err := registry.ParseMessage(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStages runs two forwarding hops through the Manager: verify at
// post-reception, seal at pre-queue with the session's Authentication-Results.
func TestStages(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	toml := fmt.Sprintf("[plugins]\nplugins = [\"arctest-authres\", \"arc\"]\n[plugins.arc]\ndomain = \"example.org\"\nselector = \"arc\"\nprivate_key = %q\nauthserv_id = \"mx.example.org\"\n", key)
	cfg, err := pluginhost.ParseConfig("t.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: res, Hostname: "mx.example.org"}))
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	msg := []byte(testMsg)
	for hop, want := range []struct {
		result    registry.AuthResult
		instances int
		aar       string
	}{
		{registry.AuthNone, 0, "i=1; mx.example.org; spf=pass smtp.mailfrom=example.com; dkim=none"},
		{registry.AuthPass, 1, "i=2; mx.example.org; spf=pass"},
		{registry.AuthPass, 2, "i=3;"},
	} {
		pc := registry.NewProcessingContext(parse(t, msg, registry.Envelope{}), nil)
		if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
			t.Fatal(err)
		}
		got, ok := registry.Find[*registry.ARCResult](pc)
		if !ok || got.Result != want.result || got.Instances != want.instances {
			t.Fatalf("hop %d: ARC result %+v, want %s with %d sets", hop+1, got, want.result, want.instances)
		}
		if want.instances > 0 && got.OldestPass != 1 {
			t.Errorf("hop %d: oldest-pass %d, want 1", hop+1, got.OldestPass)
		}
		pre, err := m.ExecuteStage(context.Background(), registry.PreQueue, pc)
		if err != nil {
			t.Fatal(err)
		}
		if len(pre.AddHeaders) != 3 || pre.AddHeaders[0].Name != hdrSeal || !strings.HasPrefix(headerfold.Unfold(pre.AddHeaders[2].Value), want.aar) {
			t.Fatalf("hop %d: pre-queue added %+v (%s)", hop+1, pre.AddHeaders, pre.Results[0].Details)
		}
		wantCV := map[registry.AuthResult]string{registry.AuthNone: "cv=none", registry.AuthPass: "cv=pass"}[want.result]
		if !strings.Contains(pre.AddHeaders[0].Value, wantCV) {
			t.Fatalf("hop %d: seal %q, want %s", hop+1, pre.AddHeaders[0].Value, wantCV)
		}
		msg = pc.Message.Rewrite(pre.AddHeaders, nil) // the forwarder's own AR is not written: this hop's only
	}
}

func TestSealFor(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	chained := func() []byte {
		p := newPlugin(t, Config{Verify: true, MaxInstances: 50, Domain: "example.org", Selector: "arc", PrivateKey: key, SealFor: SealAll, Headers: DefaultHeaders}, res)
		m := parse(t, []byte(testMsg), registry.Envelope{})
		if err := p.SealMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		return m.Rewrite(nil, nil)
	}()
	for _, tc := range []struct {
		sealFor string
		msg     []byte
		env     registry.Envelope
		seal    bool
	}{
		{SealAll, []byte(testMsg), registry.Envelope{AuthUser: "alice"}, true},
		{SealChained, []byte(testMsg), registry.Envelope{}, false},
		{SealChained, chained, registry.Envelope{}, true},
		{SealUnauthenticated, []byte(testMsg), registry.Envelope{AuthUser: "alice"}, false},
		{SealUnauthenticated, []byte(testMsg), registry.Envelope{}, true},
	} {
		t.Run(fmt.Sprintf("%s/auth=%v/chain=%v", tc.sealFor, tc.env.AuthUser != "", bytes.Contains(tc.msg, []byte(hdrSeal))), func(t *testing.T) {
			c := DefaultConfig()
			c.Domain, c.Selector, c.PrivateKey, c.SealFor = "example.org", "arc", key, tc.sealFor
			p := newPlugin(t, c, res)
			r, err := p.HandleStage(context.Background(), registry.PreQueue, registry.NewProcessingContext(parse(t, tc.msg, tc.env), nil))
			if err != nil {
				t.Fatal(err)
			}
			if (len(r.AddHeaders) == 3) != tc.seal {
				t.Fatalf("sealed=%v (%s), want %v", len(r.AddHeaders) == 3, r.Details, tc.seal)
			}
		})
	}
}

func newPlugin(t testing.TB, c Config, res registry.Resolver) *Plugin {
	t.Helper()
	p, err := New(c, registry.Host{Resolver: res, Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// chainOf returns testMsg sealed n times by us.
func chainOf(t testing.TB, n int, res *fakeResolver, key string) []byte {
	c := DefaultConfig()
	c.Domain, c.Selector, c.PrivateKey = "example.org", "arc", key
	p := newPlugin(t, c, res)
	msg := []byte(testMsg)
	for range n {
		m := parse(t, msg, registry.Envelope{})
		if err := p.SealMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		msg = m.Rewrite(nil, nil)
	}
	return msg
}

// TestMaxInstances checks the limit at its boundary, for verifying and sealing.
func TestMaxInstances(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	msg := chainOf(t, 3, res, key)
	for _, tc := range []struct {
		limit    int
		want     registry.AuthResult
		canSeal  bool
		sealNote string
	}{
		{4, registry.AuthPass, true, ""},
		{3, registry.AuthPass, false, "already has 3 sets"},
		{2, registry.AuthFail, false, "more than the limit of 2"},
	} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			c := DefaultConfig()
			c.MaxInstances, c.Domain, c.Selector, c.PrivateKey = tc.limit, "example.org", "arc", key
			p := newPlugin(t, c, res)
			got, err := p.VerifyChain(context.Background(), parse(t, msg, registry.Envelope{}))
			if err != nil || got.Result != tc.want {
				t.Fatalf("VerifyChain = %+v, %v; want %s", got, err, tc.want)
			}
			err = p.SealMessage(context.Background(), parse(t, msg, registry.Envelope{}))
			if (err == nil) != tc.canSeal || (err != nil && !strings.Contains(err.Error(), tc.sealNote)) {
				t.Fatalf("SealMessage = %v, want sealed=%v (%s)", err, tc.canSeal, tc.sealNote)
			}
		})
	}
}

func TestChainProblems(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	good := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	msg := string(chainOf(t, 2, good, key))
	for _, tc := range []struct {
		name   string
		msg    string
		res    *fakeResolver
		want   registry.AuthResult
		reason string
	}{
		{"two good sets", msg, good, registry.AuthPass, ""},
		{"instance 2 renumbered 3 (gap)", strings.ReplaceAll(msg, "i=2;", "i=3;"), good, registry.AuthFail, "instance 2 missing"},
		{"duplicate seal", strings.Replace(msg, "ARC-Seal:", "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x; s=y; b=AA==\r\nARC-Seal:", 1), good, registry.AuthFail, "appears twice"},
		{"instance 51", strings.ReplaceAll(msg, "i=2;", "i=51;"), good, registry.AuthFail, "out of range"},
		{"AMS of the newest set tampered", strings.Replace(msg, "noon", "ten", 1), good, registry.AuthFail, "body hash did not verify"},
		{"seal 1 cv changed", strings.Replace(msg, "cv=none", "cv=pass", 1), good, registry.AuthFail, "want none"},
		{"DNS SERVFAIL", msg, &fakeResolver{errs: map[string]error{"arc._domainkey.example.org": &net.DNSError{Err: "server misbehaving", IsTemporary: true}}}, registry.AuthTempError, "server misbehaving"},
		{"no key record", msg, &fakeResolver{}, registry.AuthFail, "no key record"},
		{"revoked key", msg, &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": "v=DKIM1; p="}}, registry.AuthFail, "key revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := validate(context.Background(), tc.res, parse(t, []byte(tc.msg), registry.Envelope{}), MaxInstances)
			if got.Result != tc.want || !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("got %s (%s), want %s (%s)", got.Result, got.Reason, tc.want, tc.reason)
			}
		})
	}
}

func TestValidateConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"max_instances 1", func(c *Config) { c.MaxInstances = 1 }, ""},
		{"max_instances 0", func(c *Config) { c.MaxInstances = 0 }, "between 1 and 50"},
		{"max_instances 50", func(c *Config) { c.MaxInstances = 50 }, ""},
		{"max_instances 51", func(c *Config) { c.MaxInstances = 51 }, "between 1 and 50"},
		{"key without domain", func(c *Config) { c.PrivateKey = "/k" }, "go together"},
		{"all three", func(c *Config) { c.PrivateKey, c.Domain, c.Selector = "/k", "example.org", "s" }, ""},
		{"bad seal_for", func(c *Config) { c.SealFor = "some" }, "seal_for"},
		{"no from", func(c *Config) { c.Headers = []string{"to"} }, "include \"from\""},
		{"arc-seal in headers", func(c *Config) { c.Headers = append(c.Headers, "ARC-Seal") }, "cannot be signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestStartKeyProblems(t *testing.T) {
	worldReadable, _ := writeKey(t, 0o644)
	private, _ := writeKey(t, 0o600)
	for _, tc := range []struct {
		name, key, wantErr, wantLog string
	}{
		{"private key", private, "", ""},
		{"world-readable", worldReadable, "", "world-readable"},
		{"missing", filepath.Join(t.TempDir(), "none.key"), "private_key: dkimkey: load", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Domain, c.Selector, c.PrivateKey = "example.org", "arc", tc.key
			var logs bytes.Buffer
			p, _ := New(c, registry.Host{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Resolver: &fakeResolver{}})
			err := p.Start(context.Background())
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Start() = %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(logs.String(), tc.wantLog) || (tc.wantLog == "" && logs.Len() > 0) {
				t.Fatalf("logs %q, want %q", logs.String(), tc.wantLog)
			}
			if tc.wantErr != "" {
				if err := p.SealMessage(context.Background(), parse(t, []byte(testMsg), registry.Envelope{})); err == nil {
					t.Fatal("sealed without a key")
				}
			}
		})
	}
}

func TestVerifyHonoursContext(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	msg := chainOf(t, 1, res, key)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := newPlugin(t, DefaultConfig(), res)
	if _, err := p.VerifyChain(ctx, parse(t, msg, registry.Envelope{})); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("VerifyChain on a cancelled context = %v", err)
	}
}

// TestLineEnds seals a message stored with bare LF line ends; the chain
// verifies as written out and in CRLF form.
func TestLineEnds(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	c := DefaultConfig()
	c.Domain, c.Selector, c.PrivateKey = "example.org", "arc", key
	p := newPlugin(t, c, res)
	msg := []byte(strings.ReplaceAll(testMsg, "\r\n", "\n"))
	for range 2 {
		m := parse(t, msg, registry.Envelope{})
		if err := p.SealMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		msg = m.Rewrite(nil, nil)
	}
	if bytes.Contains(msg, []byte("\r")) {
		t.Fatalf("CR in the sealed LF message:\n%s", msg)
	}
	for _, form := range [][]byte{msg, bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))} {
		got, err := p.VerifyChain(context.Background(), parse(t, form, registry.Envelope{}))
		if err != nil || got.Result != registry.AuthPass || got.Instances != 2 {
			t.Fatalf("got %+v, %v", got, err)
		}
	}
}

// TestSealMessageReadsTheSessionFromItsContext checks that the capability
// method builds ARC-Authentication-Results from the session's results when
// ctx carries the ProcessingContext, and carries only arc= without it.
func TestSealMessageReadsTheSessionFromItsContext(t *testing.T) {
	key, txt := writeKey(t, 0o600)
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}
	c := DefaultConfig()
	c.Domain, c.Selector, c.PrivateKey = "example.org", "arc", key
	p := newPlugin(t, c, res)

	aar := func(ctx context.Context) string {
		m := parse(t, []byte(testMsg), registry.Envelope{})
		if err := p.SealMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		for _, f := range m.AddedHeaders() {
			if strings.EqualFold(f.Name, "ARC-Authentication-Results") {
				return f.Value
			}
		}
		t.Fatal("no ARC-Authentication-Results added")
		return ""
	}
	if got := aar(context.Background()); strings.Contains(got, "spf=") {
		t.Errorf("without a session: %q, want no spf=", got)
	}
	pc := registry.NewProcessingContext(parse(t, []byte(testMsg), registry.Envelope{}), nil)
	pc.AddResult(&registry.Result{Plugin: "spf", Data: &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "example.com"}})
	if got := aar(registry.WithProcessingContext(context.Background(), pc)); !strings.Contains(got, "spf=pass") {
		t.Errorf("with a session: %q, want spf=pass", got)
	}
}
