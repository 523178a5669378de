package clamav

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
)

// TestSharedCache: two scanners on one Redis (two nodes) scan a message
// once; a value another writer put under the key is not trusted (scanned
// again, counted as an error); a new database version misses.
func TestSharedCache(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	addr, prefix := storetest.Redis(t)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	scanner := func() *Scanner {
		cfg := DefaultConfig()
		cfg.Servers = []string{tcp}
		cfg.CacheStore, cfg.CacheRedisPrefix = CacheRedis, prefix
		s, err := New(cfg, registry.Host{Redis: rc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.cache.known:
		case <-time.After(10 * time.Second):
			t.Fatal("database version not known 10s after Start")
		}
		return s
	}
	a, b := scanner(), scanner()
	msg := readMessage(t, "eicar-base64.eml")
	for i, st := range []struct {
		s          *Scanner
		wantCached bool
	}{{a, false}, {b, true}, {a, true}} {
		sr, cached, err := st.s.scan(ctx, msg)
		if err != nil || sr.Status != registry.StatusInfected || len(sr.Threats) == 0 || cached != st.wantCached {
			t.Fatalf("scan %d: %+v cached %v, %v; want infected, cached %v", i, sr, cached, err, st.wantCached)
		}
	}
	key := b.cache.key(msg)
	for _, bad := range []string{`{"s":"clean","t":["x"]}`, `{"s":"infected"}`, `{"s":"weird"}`, `not json`} {
		if err := rc.Set(ctx, prefix+key, bad, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if sr, cached, err := b.scan(ctx, msg); err != nil || cached || sr.Status != registry.StatusInfected {
			t.Fatalf("with %s in the cache: %+v cached %v, %v; want a fresh scan (infected)", bad, sr, cached, err)
		}
	}
	if got := b.CacheCounters(); got.Errors != 4 || got.Hits != 1 || got.Misses != 4 {
		t.Errorf("counters %+v, want 1 hit, and 4 misses and errors (the forged values)", got)
	}
	b.cache.version.Store("0.0.0/1") // as if clamd had loaded another database
	if _, cached, err := b.scan(ctx, msg); err != nil || cached {
		t.Fatalf("after a database update: cached %v, %v; want a scan", cached, err)
	}
}

// TestCacheConfig: the cache keys at their bounds.
func TestCacheConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"memory", func(c *Config) {}, ""},
		{"redis", func(c *Config) { c.CacheStore = CacheRedis }, ""},
		{"unknown store", func(c *Config) { c.CacheStore = "disk" }, `cache_store = "disk"`},
		{"hash tag in prefix", func(c *Config) { c.CacheRedisPrefix = "a{b}" }, "cache_redis_prefix"},
		{"interval 0", func(c *Config) { c.CacheVersionInterval = 0 }, "cache_version_interval"},
		{"interval 24h", func(c *Config) { c.CacheVersionInterval = registry.Duration(24 * time.Hour) }, ""},
		{"interval over 24h", func(c *Config) { c.CacheVersionInterval = registry.Duration(24*time.Hour + 1) }, "cache_version_interval"},
		{"negative ttl", func(c *Config) { c.CacheTTL = -1 }, "cache_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	if v := parseDBVersion("ClamAV 1.4.6/27834/Tue Nov 25 09:00:00 2026"); v != "1.4.6/27834" {
		t.Errorf("parseDBVersion = %q", v)
	}
	if v := parseDBVersion("ClamAV 1.4.6 x\x00"); v != "" {
		t.Errorf("parseDBVersion of a hostile reply = %q, want none", v)
	}
}
