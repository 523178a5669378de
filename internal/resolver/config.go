package resolver

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/elemta/elemta/registry"
)

// Config is the [dns] table of the configuration file:
//
//	[dns]
//	servers = ["127.0.0.1:5353", "[::1]:5353"] # default: the nameservers of /etc/resolv.conf
//	timeout = 5                                # per query and server, seconds or "1500ms"
//	attempts = 2                               # rounds over the server list
//	cache_size = 10000                         # cached answers (RRsets and negative answers)
//	min_ttl = 0                                # clamp of every TTL, positive and negative
//	max_ttl = "24h"
//	negative_ttl = 60                          # for NXDOMAIN/NODATA answers that carry no SOA
//	static = "zone.txt"                        # RFC 1035 master file; its answers win
//	offline = false                            # true: never ask a server; unknown names are NXDOMAIN
//
// A zero value in Timeout, Attempts, CacheSize, MaxTTL or NegativeTTL means
// the default (see DefaultConfig); MinTTL's default is zero.
type Config struct {
	Servers     []string          `toml:"servers"`
	Timeout     registry.Duration `toml:"timeout"`
	Attempts    int               `toml:"attempts"`
	CacheSize   int               `toml:"cache_size"`
	MinTTL      registry.Duration `toml:"min_ttl"`
	MaxTTL      registry.Duration `toml:"max_ttl"`
	NegativeTTL registry.Duration `toml:"negative_ttl"`
	Static      string            `toml:"static"`
	Offline     bool              `toml:"offline"`
}

// Defaults of the [dns] table.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultAttempts    = 2
	DefaultCacheSize   = 10000
	DefaultMaxTTL      = 24 * time.Hour
	DefaultNegativeTTL = 60 * time.Second
)

// DefaultConfig returns the [dns] table with every default filled in.
func DefaultConfig() Config {
	return Config{
		Timeout:     registry.Duration(DefaultTimeout),
		Attempts:    DefaultAttempts,
		CacheSize:   DefaultCacheSize,
		MaxTTL:      registry.Duration(DefaultMaxTTL),
		NegativeTTL: registry.Duration(DefaultNegativeTTL),
	}
}

// withDefaults fills the zero fields of c with the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Attempts == 0 {
		c.Attempts = d.Attempts
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = d.MaxTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = d.NegativeTTL
	}
	return c
}

// Validate reports the first invalid setting, naming its key.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Attempts < 1 {
		return fmt.Errorf("dns: attempts = %d: must be at least 1", c.Attempts)
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("dns: cache_size = %d: must not be negative", c.CacheSize)
	}
	if c.MinTTL > c.MaxTTL {
		return fmt.Errorf("dns: min_ttl (%v) is larger than max_ttl (%v)", c.MinTTL, c.MaxTTL)
	}
	for _, s := range c.Servers {
		if _, err := serverAddr(s); err != nil {
			return fmt.Errorf("dns: servers: %w", err)
		}
	}
	return nil
}

// serverAddr turns "192.0.2.1", "192.0.2.1:5353", "::1", "[::1]:5353" into
// host:port, port 53 by default. Only IP addresses are accepted: resolving
// the name of a nameserver would need a nameserver.
func serverAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: want an IP address with an optional port (\"127.0.0.1:5353\", \"[::1]:53\"): %w", s, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	if p, err := net.LookupPort("udp", port); err != nil || p == 0 {
		return "", fmt.Errorf("%q: bad port %q", s, port)
	}
	return net.JoinHostPort(ip.String(), port), nil
}
