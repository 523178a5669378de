// Package clamav scans messages for malware with ClamAV's clamd, over a
// unix socket or TCP, with INSTREAM. See README.md.
package clamav

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Scanner]{
		Name:        "clamav",
		Version:     "1.0.0",
		Description: "scans messages for malware with clamd (INSTREAM over a unix socket or TCP)",
		Types:       []registry.PluginType{registry.PluginTypeAntivirus},
		Stages:      []registry.Stage{registry.PostReception},
		Produces:    []any{(*registry.ScanResult)(nil)},
		Config:      DefaultConfig,
		New:         New,
	})
}

// DefaultSocket is the clamd socket used when neither socket nor servers is set
// (Debian's clamav-daemon).
const DefaultSocket = "/var/run/clamav/clamd.ctl"

// Limits on config values.
const (
	MinChunkSize = 1 << 10  // 1 KiB
	MaxChunkSize = 16 << 20 // 16 MiB
	MinMaxReply  = 64
)

// Config is the [plugins.clamav] table.
type Config struct {
	// Socket is clamd's unix socket; Servers more clamd addresses (unix
	// paths or host:port), tried after Socket in order.
	Socket  string   `toml:"socket"`
	Servers []string `toml:"servers"`
	// Timeout bounds one scan when it runs outside a stage (the executor
	// applies the same `timeout` to stages).
	Timeout        registry.Duration `toml:"timeout"`
	ConnectTimeout registry.Duration `toml:"connect_timeout"`
	// ChunkSize is the INSTREAM chunk size in bytes.
	ChunkSize int `toml:"chunk_size"`
	// MaxSize is the largest message sent to clamd, in bytes; larger ones,
	// and those clamd refuses ("INSTREAM size limit exceeded"), get OnSizeLimit.
	MaxSize int64 `toml:"max_size"`
	// OnLimitsExceeded is the verdict for a message clamd did not scan
	// completely: it reported a "Heuristics.Limits.Exceeded.*" name
	// (MaxRecursion, MaxFiles, MaxFileSize, MaxScanSize, ...), and, unless
	// OnSizeLimit says otherwise, a message over max_size or StreamMaxLength.
	OnLimitsExceeded registry.Action `toml:"on_limits_exceeded"`
	// OnSizeLimit is "" (the same as OnLimitsExceeded), "error" (the plugin
	// fails and on_error applies) or an action: accept, quarantine,
	// tempfail, reject.
	OnSizeLimit string `toml:"on_size_limit"`
	// MaxReplySize bounds one clamd reply, in bytes.
	MaxReplySize int `toml:"max_reply_size"`
	// MaxIdleConns is how many IDSESSION connections are kept per server;
	// 0 opens a connection per scan.
	MaxIdleConns int               `toml:"max_idle_conns"`
	IdleTimeout  registry.Duration `toml:"idle_timeout"`
	// RetryAfter is how long a failed server is tried last.
	RetryAfter registry.Duration `toml:"retry_after"`
	// CacheTTL and CacheSize bound the result cache; either 0 turns it off.
	CacheTTL  registry.Duration `toml:"cache_ttl"`
	CacheSize int               `toml:"cache_size"`
	// CacheStore is "memory" (this process) or "redis" (the [store] pool,
	// shared by every node); CacheRedisPrefix starts its keys.
	CacheStore       string `toml:"cache_store"`
	CacheRedisPrefix string `toml:"cache_redis_prefix"`
	// CacheVersionInterval is how often clamd's VERSION (its signature
	// database, part of every cache key) is asked for.
	CacheVersionInterval registry.Duration `toml:"cache_version_interval"`
	// InfectedAction is the verdict for an infected message.
	InfectedAction registry.Action `toml:"infected_action"`
	// AddHeaders adds X-Virus-Scanned and X-Virus-Status (and removes
	// those fields when the message arrived with them).
	AddHeaders bool `toml:"add_headers"`
}

// DefaultConfig returns the defaults documented in README.md.
func DefaultConfig() Config {
	return Config{
		Timeout:              registry.Duration(30 * time.Second),
		ConnectTimeout:       registry.Duration(2 * time.Second),
		ChunkSize:            64 << 10,
		MaxSize:              25 << 20,
		OnLimitsExceeded:     registry.Quarantine,
		MaxReplySize:         4096,
		MaxIdleConns:         4,
		IdleTimeout:          registry.Duration(10 * time.Second),
		RetryAfter:           registry.Duration(10 * time.Second),
		CacheTTL:             registry.Duration(time.Hour),
		CacheSize:            10000,
		CacheStore:           CacheMemory,
		CacheRedisPrefix:     DefaultCacheRedisPrefix,
		CacheVersionInterval: registry.Duration(DefaultCacheVersionInterval),
		InfectedAction:       registry.Reject,
	}
}

// servers returns the clamd addresses to use, in order.
func (c Config) servers() ([]server, error) {
	addrs := c.Servers
	if c.Socket != "" {
		addrs = append([]string{c.Socket}, addrs...)
	}
	if len(addrs) == 0 {
		addrs = []string{DefaultSocket}
	}
	var out []server
	var errs []error
	for _, a := range addrs {
		s, err := parseServer(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// sizeLimitAction parses OnSizeLimit: ok false means "error"; empty means
// OnLimitsExceeded.
func (c Config) sizeLimitAction() (registry.Action, bool, error) {
	switch v := strings.TrimSpace(c.OnSizeLimit); {
	case v == "":
		return c.OnLimitsExceeded, true, nil
	case strings.EqualFold(v, "error"):
		return 0, false, nil
	}
	a, err := registry.ParseAction(c.OnSizeLimit)
	if err != nil {
		return 0, false, fmt.Errorf("on_size_limit: %w (or \"error\")", err)
	}
	return a, true, nil
}

// OwnedHeaders implements registry.HeaderOwner: with add_headers, the
// fields this plugin writes. When a scan fails (clamd down, on_error
// applies) the host removes the ones the message arrived with, so a
// forged "X-Virus-Status: Clean" never passes for a scan that did not
// happen.
func (c *Config) OwnedHeaders() []string {
	if !c.AddHeaders {
		return nil
	}
	return []string{"X-Virus-Scanned", "X-Virus-Status"}
}

var _ registry.HeaderOwner = (*Config)(nil)

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. All problems are reported at once, each naming its key; the
// registry adds the file and table.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Socket != "" {
		if _, err := parseServer(c.Socket); err != nil {
			bad("socket: %w", err)
		}
	}
	for i, a := range c.Servers {
		if _, err := parseServer(a); err != nil {
			bad("servers[%d]: %w", i, err)
		}
	}
	if c.Timeout <= 0 {
		bad("timeout must be positive")
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout must be positive")
	}
	if c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize {
		bad("chunk_size = %d: must be from %d to %d bytes", c.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if c.MaxSize < 1 || c.MaxSize > 1<<32-1 {
		bad("max_size = %d: must be from 1 to 4294967295 bytes", c.MaxSize)
	}
	if _, _, err := c.sizeLimitAction(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxReplySize < MinMaxReply {
		bad("max_reply_size = %d: must be at least %d bytes", c.MaxReplySize, MinMaxReply)
	}
	if c.MaxIdleConns < 0 {
		bad("max_idle_conns = %d: must not be negative", c.MaxIdleConns)
	}
	if c.MaxIdleConns > 0 && c.IdleTimeout <= 0 {
		bad("idle_timeout must be positive when max_idle_conns > 0")
	}
	if c.CacheSize < 0 {
		bad("cache_size = %d: must not be negative", c.CacheSize)
	}
	if c.CacheTTL < 0 {
		bad("cache_ttl must not be negative")
	}
	if c.CacheStore != CacheMemory && c.CacheStore != CacheRedis {
		bad("cache_store = %q: want %q or %q", c.CacheStore, CacheMemory, CacheRedis)
	}
	if strings.ContainsAny(c.CacheRedisPrefix, "{}") {
		bad("cache_redis_prefix = %q: must not contain { or }", c.CacheRedisPrefix)
	}
	if c.CacheVersionInterval <= 0 || c.CacheVersionInterval.D() > 24*time.Hour {
		bad("cache_version_interval = %v: want more than 0 and at most 24h", c.CacheVersionInterval.D())
	}
	if c.InfectedAction < registry.Accept || c.InfectedAction > registry.Reject {
		bad("infected_action: unknown action %d", int(c.InfectedAction))
	}
	if c.OnLimitsExceeded < registry.Accept || c.OnLimitsExceeded > registry.Reject {
		bad("on_limits_exceeded: unknown action %d", int(c.OnLimitsExceeded))
	}
	return errors.Join(errs...)
}
