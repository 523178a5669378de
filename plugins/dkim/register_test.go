package dkim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// The seed design's config: a default selector and key. Parsing it must work
// on any machine (`elemta config check`); starting must fail clearly where
// the key file does not exist.
const seedConfig = `
[plugins]
enabled = true
plugins = ["dkim"]

[plugins.dkim]
selector = "default"
private_key = "/app/keys/dkim.key"
`

func TestSeedConfig(t *testing.T) {
	cfg, err := pluginhost.ParseConfig("elemta.toml", []byte(seedConfig))
	if err != nil {
		t.Fatalf("config check: %v", err)
	}
	pc, err := cfg.Settings("dkim")
	if err != nil {
		t.Fatal(err)
	}
	c := pc.Value.(*Config)
	if c.Selector != "default" || c.PrivateKey != "/app/keys/dkim.key" || !c.Verify || c.Canonicalization != "relaxed/relaxed" {
		t.Fatalf("decoded %+v", c)
	}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: &fakeResolver{}}))
	err = m.LoadPlugins(context.Background())
	if err == nil || !strings.Contains(err.Error(), "plugin dkim: start") || !strings.Contains(err.Error(), "/app/keys/dkim.key") {
		t.Fatalf("LoadPlugins() = %v, want a start error naming the key file", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"per-domain tables", `
[plugins.dkim.domains."example.com"]
selector = "s1"
private_key = "/k1"
[plugins.dkim.domains."example.org"]
selector = "s2"
private_key = "/k2"
sign_unauthenticated = true
`, ""},
		{"unknown key", "[plugins.dkim]\nselektor = \"x\"\n", `unknown key "selektor"`},
		{"wrong type", "[plugins.dkim]\nmax_signatures = \"ten\"\n", "max_signatures"},
		{"key_cache_size over the limit", "[plugins.dkim]\nkey_cache_size = 100001\n", "key_cache_size = 100001: must be between 0 and 100000"},
		{"negative key_cache_size", "[plugins.dkim]\nkey_cache_size = -1\n", "key_cache_size = -1: must be between 0 and 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pluginhost.ParseConfig("t.toml", []byte("[plugins]\nplugins = [\"dkim\"]\n"+tc.toml))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ParseConfig() = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pc, _ := cfg.Settings("dkim")
			c := pc.Value.(*Config)
			if len(c.Domains) != 2 || !c.Domains["example.org"].SignUnauthenticated || c.Domains["example.com"].Selector != "s1" {
				t.Fatalf("decoded %+v", c.Domains)
			}
		})
	}
}

// TestStages runs the plugin through the Manager and executor: verify at
// post-reception, sign at pre-queue, and the signature verifies.
func TestStages(t *testing.T) {
	key := privateCopy(t, filepath.Join("testdata", "dkimpy", "ed25519test.key"))
	toml := fmt.Sprintf("[plugins]\nplugins = [\"dkim\"]\n[plugins.dkim.domains.\"example.com\"]\nselector = \"ed\"\nprivate_key = %q\n", key)
	cfg, err := pluginhost.ParseConfig("t.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResolver{txt: map[string]string{"ed._domainkey.example.com": record(t, "ed25519test.dns")}}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: res}))
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	pc := registry.NewProcessingContext(parse(t, []byte(testMsg), registry.Envelope{AuthUser: "alice"}), nil)
	sr, err := m.ExecuteStage(context.Background(), registry.PreQueue, pc)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.AddHeaders) != 1 || sr.AddHeaders[0].Name != "DKIM-Signature" {
		t.Fatalf("pre-queue added %+v (%+v)", sr.AddHeaders, sr.Results[0])
	}
	out := pc.Message.Rewrite(sr.AddHeaders, sr.RemoveHeaders)

	for _, tc := range []struct {
		name string
		raw  []byte
		want registry.AuthResult
	}{
		{"as signed", out, registry.AuthPass},
		{"body tampered", []byte(strings.Replace(string(out), "noon", "ten", 1)), registry.AuthFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := registry.NewProcessingContext(parse(t, tc.raw, registry.Envelope{}), nil)
			if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
				t.Fatal(err)
			}
			got, ok := registry.Find[*registry.DKIMResult](pc)
			if !ok || len(got.Signatures) != 1 || got.Signatures[0].Result != tc.want {
				t.Fatalf("DKIMResult %+v, want %s", got, tc.want)
			}
		})
	}
}

// key_cache_size: 0 (no cache) and the limit are accepted and decoded.
func TestKeyCacheSizeBounds(t *testing.T) {
	for _, n := range []int{0, 100000} {
		cfg, err := pluginhost.ParseConfig("t.toml", fmt.Appendf(nil, "[plugins]\nplugins = [\"dkim\"]\n[plugins.dkim]\nkey_cache_size = %d\n", n))
		if err != nil {
			t.Fatal(err)
		}
		pc, _ := cfg.Settings("dkim")
		if got := pc.Value.(*Config).KeyCacheSize; got != n {
			t.Fatalf("key_cache_size = %d decoded as %d", n, got)
		}
	}
	if DefaultConfig().KeyCacheSize != DefaultKeyCacheSize {
		t.Fatal("the default is not DefaultKeyCacheSize")
	}
}
