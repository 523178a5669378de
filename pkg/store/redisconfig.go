package store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/registry"
)

// Defaults and bounds of the Redis connection keys.
const (
	DefaultRedisMaxRetries = 1
	MaxRedisPoolSize       = 10000
	MaxRedisMaxRetries     = 10
	MaxRedisTimeout        = time.Minute
)

// RedisConfig is how a process reaches Redis: the [store] table of the
// host's config file, whose one pool every Redis user of the process
// shares (registry.Host.Redis). Exactly one of redis_addr (one server),
// redis_sentinel_master with redis_sentinel_addrs (Sentinel), or
// redis_cluster_addrs (Cluster) chooses the server; none of them means no
// shared pool.
type RedisConfig struct {
	Addr             string   `toml:"redis_addr"`
	SentinelMaster   string   `toml:"redis_sentinel_master"`
	SentinelAddrs    []string `toml:"redis_sentinel_addrs"`
	SentinelUsername string   `toml:"redis_sentinel_username"`
	SentinelPassword string   `toml:"redis_sentinel_password"`
	ClusterAddrs     []string `toml:"redis_cluster_addrs"`
	// Username and Password authenticate to the data nodes (ACL user, or
	// requirepass with no username).
	Username string `toml:"redis_username"`
	Password string `toml:"redis_password"`
	// DB is the database number; a Cluster only has 0.
	DB int `toml:"redis_db"`
	// TLS turns TLS on for every connection (data nodes and sentinels);
	// the CA file replaces the system roots, the certificate and key (both
	// or neither) are the client's. ServerName defaults to each address's host.
	TLS           bool   `toml:"redis_tls"`
	TLSCAFile     string `toml:"redis_tls_ca_file"`
	TLSCertFile   string `toml:"redis_tls_cert_file"`
	TLSKeyFile    string `toml:"redis_tls_key_file"`
	TLSServerName string `toml:"redis_tls_server_name"`
	// PoolSize bounds the open connections per server; 0 is go-redis's
	// default, 10 per CPU.
	PoolSize int `toml:"redis_pool_size"`
	// Timeout bounds dialing, each read and write, and the wait for a free
	// pooled connection (each unless set on its own).
	Timeout      registry.Duration `toml:"redis_timeout"`
	DialTimeout  registry.Duration `toml:"redis_dial_timeout"`
	ReadTimeout  registry.Duration `toml:"redis_read_timeout"`
	WriteTimeout registry.Duration `toml:"redis_write_timeout"`
	PoolTimeout  registry.Duration `toml:"redis_pool_timeout"`
	// MaxRetries is how often a failed command is retried (-1: never).
	MaxRetries int `toml:"redis_max_retries"`
}

// DefaultRedisConfig returns the defaults of the [store] table: no server
// (no shared pool), 1s timeouts, one retry.
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{Timeout: registry.Duration(DefaultRedisTimeout), MaxRetries: DefaultRedisMaxRetries}
}

// Enabled reports whether c names a server.
func (c RedisConfig) Enabled() bool {
	return c.Addr != "" || c.SentinelMaster != "" || len(c.SentinelAddrs) > 0 || len(c.ClusterAddrs) > 0
}

// Mode names the kind of deployment: "single", "sentinel" or "cluster".
func (c RedisConfig) Mode() string {
	switch {
	case c.SentinelMaster != "" || len(c.SentinelAddrs) > 0:
		return "sentinel"
	case len(c.ClusterAddrs) > 0:
		return "cluster"
	}
	return "single"
}

// String describes the server for logs, never its credentials
// ("redis 10.0.0.5:6379", "redis sentinel mymaster", "redis cluster 10.0.0.1:7000,...").
func (c RedisConfig) String() string {
	switch c.Mode() {
	case "sentinel":
		return "redis sentinel " + c.SentinelMaster
	case "cluster":
		return "redis cluster " + strings.Join(c.ClusterAddrs, ",")
	}
	return "redis " + c.Addr
}

// Validate checks every key, reading the TLS files, so `elemta config
// check` reports what NewClient would refuse. Each error names its key.
func (c RedisConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	modes := 0
	if c.Addr != "" {
		modes++
		if err := checkAddr(c.Addr); err != nil {
			bad("redis_addr", "%v", err)
		}
	}
	if c.SentinelMaster != "" || len(c.SentinelAddrs) > 0 {
		modes++
		if c.SentinelMaster == "" {
			bad("redis_sentinel_master", "empty while redis_sentinel_addrs is set")
		}
		if len(c.SentinelAddrs) == 0 {
			bad("redis_sentinel_addrs", "empty while redis_sentinel_master is set")
		}
		for i, a := range c.SentinelAddrs {
			if err := checkAddr(a); err != nil {
				bad(fmt.Sprintf("redis_sentinel_addrs[%d]", i), "%v", err)
			}
		}
	} else if c.SentinelUsername != "" || c.SentinelPassword != "" {
		bad("redis_sentinel_password", "set without redis_sentinel_master")
	}
	if len(c.ClusterAddrs) > 0 {
		modes++
		for i, a := range c.ClusterAddrs {
			if err := checkAddr(a); err != nil {
				bad(fmt.Sprintf("redis_cluster_addrs[%d]", i), "%v", err)
			}
		}
		if c.DB != 0 {
			bad("redis_db", "%d: a Redis Cluster has only database 0", c.DB)
		}
	}
	if modes > 1 {
		bad("redis_addr", "choose one of redis_addr, redis_sentinel_master (with redis_sentinel_addrs) and redis_cluster_addrs")
	}
	if c.DB < 0 {
		bad("redis_db", "%d: must not be negative", c.DB)
	}
	if c.PoolSize < 0 || c.PoolSize > MaxRedisPoolSize {
		bad("redis_pool_size", "%d: want 0 (10 per CPU) to %d", c.PoolSize, MaxRedisPoolSize)
	}
	if c.MaxRetries < -1 || c.MaxRetries > MaxRedisMaxRetries {
		bad("redis_max_retries", "%d: want -1 (never) to %d", c.MaxRetries, MaxRedisMaxRetries)
	}
	if c.Timeout <= 0 || c.Timeout.D() > MaxRedisTimeout {
		bad("redis_timeout", "%v: want more than 0 and at most %v", c.Timeout.D(), MaxRedisTimeout)
	}
	for key, d := range map[string]registry.Duration{"redis_dial_timeout": c.DialTimeout,
		"redis_read_timeout": c.ReadTimeout, "redis_write_timeout": c.WriteTimeout, "redis_pool_timeout": c.PoolTimeout} {
		if d < 0 || d.D() > MaxRedisTimeout {
			bad(key, "%v: want 0 (redis_timeout) to %v", d.D(), MaxRedisTimeout)
		}
	}
	if !c.TLS {
		for key, v := range map[string]string{"redis_tls_ca_file": c.TLSCAFile, "redis_tls_cert_file": c.TLSCertFile,
			"redis_tls_key_file": c.TLSKeyFile, "redis_tls_server_name": c.TLSServerName} {
			if v != "" {
				bad(key, "set while redis_tls is false")
			}
		}
	} else if _, err := c.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	// Sorted: map iteration must never reorder a report.
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("%q: no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q: want 1 to 65535", a, port)
	}
	return nil
}

// tlsConfig reads the CA file and the client key pair.
func (c RedisConfig) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis_tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis_tls_ca_file: %s: no PEM certificate in it", c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile != "":
		kp, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis_tls_cert_file, redis_tls_key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	case c.TLSCertFile != "":
		return nil, errors.New("redis_tls_key_file: empty while redis_tls_cert_file is set")
	case c.TLSKeyFile != "":
		return nil, errors.New("redis_tls_cert_file: empty while redis_tls_key_file is set")
	}
	return tc, nil
}

func (c RedisConfig) timeouts() (dial, read, write, pool time.Duration) {
	or := func(d registry.Duration) time.Duration {
		if d > 0 {
			return d.D()
		}
		if c.Timeout > 0 {
			return c.Timeout.D()
		}
		return DefaultRedisTimeout
	}
	return or(c.DialTimeout), or(c.ReadTimeout), or(c.WriteTimeout), or(c.PoolTimeout)
}

// NewClient returns the client c describes: a plain client, a Sentinel
// failover client that follows the master, or a Cluster client. It does
// not connect. c must be valid (Validate) and Enabled.
func (c RedisConfig) NewClient() (redis.UniversalClient, error) {
	if !c.Enabled() {
		return nil, errors.New("redis: no server (redis_addr, redis_sentinel_master or redis_cluster_addrs)")
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	quietOnce.Do(func() { redis.SetLogger(debugLogger{}) })
	dial, read, write, pool := c.timeouts()
	retries := c.MaxRetries
	switch c.Mode() {
	case "sentinel":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs,
			SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword,
			Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tc,
			DialTimeout: dial, ReadTimeout: read, WriteTimeout: write, PoolTimeout: pool,
			ContextTimeoutEnabled: true, PoolSize: c.PoolSize, MaxRetries: retries,
			DisableIdentity: true,
		}), nil
	case "cluster":
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddrs, Username: c.Username, Password: c.Password, TLSConfig: tc,
			DialTimeout: dial, ReadTimeout: read, WriteTimeout: write, PoolTimeout: pool,
			ContextTimeoutEnabled: true, PoolSize: c.PoolSize, MaxRetries: retries,
			// A moved slot or a failed node costs a redirect each: allow a few.
			MaxRedirects:    3,
			DisableIdentity: true,
		}), nil
	}
	return redis.NewClient(&redis.Options{
		Addr: c.Addr, Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tc,
		DialTimeout: dial, ReadTimeout: read, WriteTimeout: write, PoolTimeout: pool,
		ContextTimeoutEnabled: true, PoolSize: c.PoolSize, MaxRetries: retries,
		// Do not ask the server for client-side caching metadata (keep the
		// handshake minimal for older servers).
		DisableIdentity: true,
	}), nil
}
