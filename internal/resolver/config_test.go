package resolver

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

func TestConfigTOML(t *testing.T) {
	const doc = `
servers = ["127.0.0.1:5353", "::1", "[::1]:5353"]
timeout = 2
attempts = 3
cache_size = 500
min_ttl = "30s"
max_ttl = 3600
negative_ttl = "1m30s"
static = "zone.txt"
`
	cfg := DefaultConfig()
	if err := toml.NewDecoder(strings.NewReader(doc)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(&cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := Config{
		Servers: []string{"127.0.0.1:5353", "::1", "[::1]:5353"},
		Timeout: registryDuration(2 * time.Second), Attempts: 3, CacheSize: 500,
		MinTTL: registryDuration(30 * time.Second), MaxTTL: registryDuration(time.Hour),
		NegativeTTL: registryDuration(90 * time.Second), Static: "zone.txt",
	}
	if !slices.Equal(cfg.Servers, want.Servers) || cfg.Timeout != want.Timeout || cfg.Attempts != want.Attempts ||
		cfg.CacheSize != want.CacheSize || cfg.MinTTL != want.MinTTL || cfg.MaxTTL != want.MaxTTL ||
		cfg.NegativeTTL != want.NegativeTTL || cfg.Static != want.Static || cfg.Offline {
		t.Fatalf("decoded %+v\nwant    %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	r, err := New(Config{Servers: []string{"192.0.2.53"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.timeout != DefaultTimeout || r.attempts != DefaultAttempts || r.cache.max != DefaultCacheSize ||
		r.maxTTL != DefaultMaxTTL || r.negTTL != DefaultNegativeTTL || r.minTTL != 0 {
		t.Fatalf("defaults not applied: %+v", r)
	}
	if got := r.Servers(); !slices.Equal(got, []string{"192.0.2.53:53"}) {
		t.Fatalf("Servers() = %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"zero value", Config{}, ""},
		{"IPv6 with port", Config{Servers: []string{"[2001:db8::53]:5353"}}, ""},
		{"hostname server", Config{Servers: []string{"dns.example.com:53"}}, `"dns.example.com" is not an IP address`},
		{"garbage server", Config{Servers: []string{"1.2.3.4:5:6"}}, "dns: servers:"},
		{"bad port", Config{Servers: []string{"127.0.0.1:99999"}}, "bad port"},
		{"negative attempts", Config{Attempts: -1}, "attempts = -1"},
		{"negative cache", Config{CacheSize: -5}, "cache_size = -5"},
		{"min above max", Config{MinTTL: registryDuration(time.Hour), MaxTTL: registryDuration(time.Minute)}, "min_ttl (1h0m0s) is larger than max_ttl (1m0s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			mustContain(t, err.Error(), tc.want)
			if _, nerr := New(tc.cfg, Options{}); nerr == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# comment\nsearch example.org\nnameserver 192.0.2.1\nnameserver 2001:db8::53\noptions ndots:1\n")
	r, err := New(Config{}, Options{ResolvConf: good})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); !slices.Equal(got, []string{"192.0.2.1:53", "[2001:db8::53]:53"}) {
		t.Fatalf("servers from resolv.conf: %v", got)
	}
	empty := write("empty", "search example.org\n")
	if _, err := New(Config{}, Options{ResolvConf: empty}); err == nil || !strings.Contains(err.Error(), "names no nameserver") {
		t.Fatalf("resolv.conf without nameserver: %v", err)
	}
	if _, err := New(Config{}, Options{ResolvConf: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("missing resolv.conf: %v", err)
	}
	// configured servers win: resolv.conf is not read at all
	if _, err := New(Config{Servers: []string{"127.0.0.1"}}, Options{ResolvConf: filepath.Join(dir, "missing")}); err != nil {
		t.Fatalf("servers configured, resolv.conf missing: %v", err)
	}
}
