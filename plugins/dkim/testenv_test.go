package dkim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pkg/testenv/dnstest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// TestRealDNS signs at pre-queue and verifies at post-reception through the
// Manager and executor, with the public keys served by the loopback unbound
// of tools/testenv (zone example.test, keys in $ELEMTA_TEST_KEYS).
func TestRealDNS(t *testing.T) {
	resolver := dnstest.Resolver(t)
	keys := testenv.Require(t, testenv.Keys)
	msg := strings.ReplaceAll(testMsg, "example.com", "example.test")
	for _, tc := range []struct {
		name, selector, key string
		want                registry.AuthResult
		reason              string
	}{
		{"rsa-2048 pkcs8", "rsa2048", "rsa2048.pem", registry.AuthPass, ""},
		{"rsa-2048 pkcs1", "rsa2048", "rsa2048.pkcs1.pem", registry.AuthPass, ""},
		{"rsa-1024, the minimum", "rsa1024", "rsa1024.pem", registry.AuthPass, ""},
		{"ed25519 pkcs8", "ed25519", "ed25519.pem", registry.AuthPass, ""},
		{"ed25519 seed", "ed25519", "ed25519.seed", registry.AuthPass, ""},
		{"published key is another one", "mismatch", "rsa2048.pem", registry.AuthFail, "signature did not verify"},
		{"revoked key", "revoked", "rsa2048.pem", registry.AuthPermError, "key revoked"},
		{"no key record (NXDOMAIN)", "absent", "rsa2048.pem", registry.AuthPermError, "no key for signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toml := fmt.Sprintf("[plugins]\nplugins = [\"dkim\"]\n[plugins.dkim]\ntimeout = \"5s\"\n[plugins.dkim.domains.\"example.test\"]\nselector = %q\nprivate_key = %q\n",
				tc.selector, filepath.Join(keys, tc.key))
			cfg, err := pluginhost.ParseConfig("t.toml", []byte(toml))
			if err != nil {
				t.Fatal(err)
			}
			m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: resolver}))
			if err := m.LoadPlugins(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			pc := registry.NewProcessingContext(parse(t, []byte(msg), registry.Envelope{AuthUser: "alice"}), nil)
			sr, err := m.ExecuteStage(context.Background(), registry.PreQueue, pc)
			if err != nil || len(sr.AddHeaders) != 1 {
				t.Fatalf("pre-queue: %v %+v", err, sr.Results)
			}
			out := pc.Message.Rewrite(sr.AddHeaders, nil)
			pc = registry.NewProcessingContext(parse(t, out, registry.Envelope{}), nil)
			if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
				t.Fatal(err)
			}
			got, ok := registry.Find[*registry.DKIMResult](pc)
			if !ok || len(got.Signatures) != 1 {
				t.Fatalf("no DKIM result: %+v", pc.Results())
			}
			s := got.Signatures[0]
			if s.Result != tc.want || !strings.Contains(s.Reason, tc.reason) || s.Domain != "example.test" || s.Selector != tc.selector {
				t.Fatalf("got %+v, want %s (%s)", s, tc.want, tc.reason)
			}
		})
	}
}
