package config

import (
	"strings"
	"testing"
)

// TestStoreTable: [store] is checked at parse (config check), errors name
// the file and the key, and a valid table describes the shared pool.
func TestStoreTable(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"none", "", ""},
		{"cluster", "[store]\nredis_cluster_addrs = [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]\nredis_pool_size = 50\n", ""},
		{"sentinel", "[store]\nredis_sentinel_master = \"m\"\nredis_sentinel_addrs = [\"10.0.0.1:26379\"]\nredis_sentinel_password = \"p\"\nredis_timeout = \"250ms\"\n", ""},
		{"unknown key", "[store]\nredis_adr = \"h:1\"\n", `c.toml:4:1: unknown key "redis_adr" in [store]`},
		{"bad address", "[store]\nredis_addr = \"h\"\n", `c.toml:4:1: [store]: redis_addr: "h": want host:port`},
		{"cluster db", "[store]\nredis_cluster_addrs = [\"h:1\"]\nredis_db = 2\n", "c.toml:5:1: [store]: redis_db: 2: a Redis Cluster has only database 0"},
		{"missing CA", "[store]\nredis_addr = \"h:1\"\nredis_tls = true\nredis_tls_ca_file = \"/nonexistent/ca.crt\"\n", "c.toml:6:1: [store]: redis_tls_ca_file: open /nonexistent/ca.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte("[plugins]\nplugins = []\n"+tc.toml))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Parse: %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Store.Enabled(); got != (tc.toml != "") {
				t.Errorf("shared pool enabled: %v", got)
			}
		})
	}
}
