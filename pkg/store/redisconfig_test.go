package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
)

// TestRedisConfigValidate: every key at its boundary; each error names it.
func TestRedisConfigValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := func(x time.Duration) registry.Duration { return registry.Duration(x) }
	tests := []struct {
		name string
		edit func(c *RedisConfig)
		want string // "" means valid
	}{
		{"no server: no pool", func(c *RedisConfig) {}, ""},
		{"one server", func(c *RedisConfig) { c.Addr = "10.0.0.5:6379" }, ""},
		{"no port", func(c *RedisConfig) { c.Addr = "10.0.0.5" }, "redis_addr: \"10.0.0.5\": want host:port"},
		{"port 0", func(c *RedisConfig) { c.Addr = "h:0" }, "redis_addr: \"h:0\": port \"0\": want 1 to 65535"},
		{"port 65535", func(c *RedisConfig) { c.Addr = "h:65535" }, ""},
		{"port 65536", func(c *RedisConfig) { c.Addr = "h:65536" }, "want 1 to 65535"},
		{"sentinel", func(c *RedisConfig) { c.SentinelMaster, c.SentinelAddrs = "m", []string{"h:26379"} }, ""},
		{"sentinel without master", func(c *RedisConfig) { c.SentinelAddrs = []string{"h:26379"} }, "redis_sentinel_master: empty"},
		{"sentinel without addrs", func(c *RedisConfig) { c.SentinelMaster = "m" }, "redis_sentinel_addrs: empty"},
		{"bad sentinel addr", func(c *RedisConfig) { c.SentinelMaster, c.SentinelAddrs = "m", []string{"h:1", "x"} }, "redis_sentinel_addrs[1]"},
		{"sentinel password alone", func(c *RedisConfig) { c.Addr, c.SentinelPassword = "h:1", "p" }, "redis_sentinel_password: set without"},
		{"cluster", func(c *RedisConfig) { c.ClusterAddrs = []string{"h:7000"} }, ""},
		{"cluster db", func(c *RedisConfig) { c.ClusterAddrs, c.DB = []string{"h:7000"}, 1 }, "redis_db: 1: a Redis Cluster has only database 0"},
		{"two modes", func(c *RedisConfig) { c.Addr, c.ClusterAddrs = "h:1", []string{"h:7000"} }, "choose one of"},
		{"negative db", func(c *RedisConfig) { c.Addr, c.DB = "h:1", -1 }, "redis_db: -1"},
		{"pool size max", func(c *RedisConfig) { c.Addr, c.PoolSize = "h:1", MaxRedisPoolSize }, ""},
		{"pool size over", func(c *RedisConfig) { c.Addr, c.PoolSize = "h:1", MaxRedisPoolSize+1 }, "redis_pool_size: 10001"},
		{"retries -1", func(c *RedisConfig) { c.Addr, c.MaxRetries = "h:1", -1 }, ""},
		{"retries -2", func(c *RedisConfig) { c.Addr, c.MaxRetries = "h:1", -2 }, "redis_max_retries: -2"},
		{"retries over", func(c *RedisConfig) { c.Addr, c.MaxRetries = "h:1", MaxRedisMaxRetries+1 }, "redis_max_retries: 11"},
		{"timeout 0", func(c *RedisConfig) { c.Addr, c.Timeout = "h:1", 0 }, "redis_timeout: 0s"},
		{"timeout max", func(c *RedisConfig) { c.Addr, c.Timeout = "h:1", d(MaxRedisTimeout) }, ""},
		{"timeout over", func(c *RedisConfig) { c.Addr, c.Timeout = "h:1", d(MaxRedisTimeout+1) }, "redis_timeout: 1m0.000000001s"},
		{"read timeout over", func(c *RedisConfig) { c.Addr, c.ReadTimeout = "h:1", d(MaxRedisTimeout+1) }, "redis_read_timeout"},
		{"negative pool timeout", func(c *RedisConfig) { c.Addr, c.PoolTimeout = "h:1", d(-1) }, "redis_pool_timeout"},
		{"tls file without tls", func(c *RedisConfig) { c.Addr, c.TLSCAFile = "h:1", notPEM }, "redis_tls_ca_file: set while redis_tls is false"},
		{"tls, system roots", func(c *RedisConfig) { c.Addr, c.TLS = "h:1", true }, ""},
		{"missing ca file", func(c *RedisConfig) { c.Addr, c.TLS, c.TLSCAFile = "h:1", true, filepath.Join(dir, "nope") }, "redis_tls_ca_file: open"},
		{"ca file not pem", func(c *RedisConfig) { c.Addr, c.TLS, c.TLSCAFile = "h:1", true, notPEM }, "no PEM certificate"},
		{"cert without key", func(c *RedisConfig) { c.Addr, c.TLS, c.TLSCertFile = "h:1", true, notPEM }, "redis_tls_key_file: empty"},
		{"key without cert", func(c *RedisConfig) { c.Addr, c.TLS, c.TLSKeyFile = "h:1", true, notPEM }, "redis_tls_cert_file: empty"},
		{"bad key pair", func(c *RedisConfig) { c.Addr, c.TLS, c.TLSCertFile, c.TLSKeyFile = "h:1", true, notPEM, notPEM }, "redis_tls_cert_file, redis_tls_key_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultRedisConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
			if err == nil && c.Enabled() {
				cl, err := c.NewClient()
				if err != nil {
					t.Fatalf("NewClient of a valid config: %v", err)
				}
				cl.Close()
			}
		})
	}
}

func TestRedisConfigString(t *testing.T) {
	for _, tc := range []struct {
		c    RedisConfig
		want string
	}{
		{RedisConfig{Addr: "h:1", Password: "secret"}, "redis h:1"},
		{RedisConfig{SentinelMaster: "m", SentinelAddrs: []string{"s:1"}, SentinelPassword: "secret"}, "redis sentinel m"},
		{RedisConfig{ClusterAddrs: []string{"a:1", "b:1"}, Password: "secret"}, "redis cluster a:1,b:1"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String = %q, want %q", got, tc.want)
		}
	}
}

// TestHostOptions: a plugin uses the host's pool unless its table sets a
// connection key of its own; a store on the shared pool never closes it.
func TestHostOptions(t *testing.T) {
	addr, prefix := storetest.Redis(t)
	shared := redis.NewClient(&redis.Options{Addr: addr})
	defer shared.Close()
	host := registry.Host{Redis: shared}
	for _, tc := range []struct {
		name   string
		edit   func(c *Config)
		shared bool
	}{
		{"no key of its own", func(c *Config) {}, true},
		{"prefix only", func(c *Config) { c.RedisPrefix = "x:" }, true},
		{"redis_addr", func(c *Config) { c.RedisAddr = addr }, false},
		{"redis_db", func(c *Config) { c.RedisDB = 1 }, false},
		{"redis_username", func(c *Config) { c.RedisUsername = "u" }, false},
		{"redis_password", func(c *Config) { c.RedisPassword = "p" }, false},
		{"redis_timeout", func(c *Config) { c.RedisTimeout = registry.Duration(time.Second) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig(prefix)
			c.Store = KindRedis
			tc.edit(&c)
			o := c.HostOptions(host, "unused")
			if got := o.Redis.Client == shared; got != tc.shared {
				t.Fatalf("uses the shared pool: %v, want %v (%+v)", got, tc.shared, o.Redis)
			}
			if !tc.shared && (o.Redis.Addr == "" || o.Redis.Timeout <= 0) {
				t.Errorf("own pool without its defaults: %+v", o.Redis)
			}
		})
	}
	c := DefaultConfig(prefix)
	c.Store = KindRedis
	if o := c.HostOptions(registry.Host{}, "unused"); o.Redis.Client != nil || o.Redis.Addr != DefaultRedisAddr {
		t.Errorf("without a shared pool: %+v, want %s", o.Redis, DefaultRedisAddr)
	}
	h := NewHostHandle(c, host, "unused")
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := shared.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the shared pool after a plugin closed its store: %v", err)
	}
}

// TestTLSRefused: the TLS server refuses a client without its
// certificate, and the client refuses a server its CA did not sign.
func TestTLSRefused(t *testing.T) {
	s := storetest.TLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ping := func(c RedisConfig) error {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		st, err := NewRedis(RedisOptions{Config: c, Prefix: "x:"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.Ping(ctx)
	}
	good := haConfig(s)
	good.MaxRetries = -1
	if err := ping(good); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	noCert := good
	noCert.TLSCertFile, noCert.TLSKeyFile = "", ""
	if err := ping(noCert); err == nil {
		t.Error("without a client certificate: ping succeeded")
	}
	otherCA := good
	otherCA.TLSCAFile = "" // the system roots do not know the test CA
	if err := ping(otherCA); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("with the system roots: %v, want a certificate error", err)
	}
	wrongUser := good
	wrongUser.Password = "wrong"
	if err := ping(wrongUser); err == nil {
		t.Error("with a wrong ACL password: ping succeeded")
	}
}
