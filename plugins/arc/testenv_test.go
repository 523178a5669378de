package arc

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

// TestRealDNS seals at pre-queue and verifies at post-reception through the
// executor, with keys served by the loopback unbound of tools/testenv.
func TestRealDNS(t *testing.T) {
	resolver := dnstest.Resolver(t)
	keys := testenv.Require(t, testenv.Keys)
	for _, tc := range []struct {
		name, selector, key string
		want                registry.AuthResult
		reason              string
	}{
		{"rsa-2048", "rsa2048", "rsa2048.pem", registry.AuthPass, ""},
		{"ed25519", "ed25519", "ed25519.pem", registry.AuthPass, ""},
		{"published key is another one", "mismatch", "rsa2048.pem", registry.AuthFail, "did not verify"},
		{"revoked key", "revoked", "rsa2048.pem", registry.AuthFail, "key revoked"},
		{"no key record", "absent", "rsa2048.pem", registry.AuthFail, "no key record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toml := fmt.Sprintf("[plugins]\nplugins = [\"arc\"]\n[plugins.arc]\ntimeout = \"5s\"\ndomain = \"example.test\"\nselector = %q\nprivate_key = %q\n",
				tc.selector, filepath.Join(keys, tc.key))
			cfg, err := pluginhost.ParseConfig("t.toml", []byte(toml))
			if err != nil {
				t.Fatal(err)
			}
			m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: resolver, Hostname: "mx.example.test"}))
			if err := m.LoadPlugins(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			pc := registry.NewProcessingContext(parse(t, []byte(testMsg), registry.Envelope{}), nil)
			sr, err := m.ExecuteStage(context.Background(), registry.PreQueue, pc)
			if err != nil || len(sr.AddHeaders) != 3 {
				t.Fatalf("pre-queue: %v %+v", err, sr.Results[0])
			}
			pc = registry.NewProcessingContext(parse(t, pc.Message.Rewrite(sr.AddHeaders, nil), registry.Envelope{}), nil)
			if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
				t.Fatal(err)
			}
			got, ok := registry.Find[*registry.ARCResult](pc)
			if !ok || got.Result != tc.want || !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("got %+v, want %s (%s)", got, tc.want, tc.reason)
			}
		})
	}
}
