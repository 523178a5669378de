package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/elemta/elemta/registry"
)

// Defaults of the store keys (the Redis prefix is each plugin's own).
const (
	DefaultRedisAddr       = "127.0.0.1:6379"
	DefaultRedisTimeout    = time.Second
	DefaultSweepInterval   = 10 * time.Minute
	DefaultBoltLockTimeout = time.Second
)

// Config holds the store keys of a plugin's table. A plugin embeds it in
// its own config without a toml tag, so the keys sit in the plugin's table
// ([plugins.greylist] store = "redis") next to its other keys.
//
// With store = "redis", a table that sets none of redis_addr, redis_db,
// redis_username, redis_password and redis_timeout uses the process's one
// pool (the host config's [store] table, registry.Host.Redis), or, when
// there is none, 127.0.0.1:6379 with a timeout of 1s. Setting any of them
// gives the plugin a pool of its own to that one server (Sentinel, Cluster
// and TLS are only in [store]). redis_prefix is always the plugin's own.
type Config struct {
	// The state store: "bolt" (a file under the data directory) or "redis".
	Store             string            `toml:"store"`
	BoltPath          string            `toml:"bolt_path"`
	BoltSweepInterval registry.Duration `toml:"bolt_sweep_interval"`
	BoltLockTimeout   registry.Duration `toml:"bolt_lock_timeout"`
	RedisAddr         string            `toml:"redis_addr"`
	RedisDB           int               `toml:"redis_db"`
	RedisUsername     string            `toml:"redis_username"`
	RedisPassword     string            `toml:"redis_password"`
	RedisPrefix       string            `toml:"redis_prefix"`
	RedisTimeout      registry.Duration `toml:"redis_timeout"`
}

// DefaultConfig returns the defaults: a bbolt file, or with store = "redis"
// the Redis on localhost, every key starting with redisPrefix.
func DefaultConfig(redisPrefix string) Config {
	return Config{
		Store:             KindBolt,
		BoltSweepInterval: registry.Duration(DefaultSweepInterval),
		BoltLockTimeout:   registry.Duration(DefaultBoltLockTimeout),
		RedisPrefix:       redisPrefix,
	}
}

// SingleProcess implements registry.SingleProcess: a bbolt file is locked
// by the one process that opens it, so a plugin with store = "bolt" cannot
// run in several worker processes (isolation = "process", workers > 1).
func (c Config) SingleProcess() string {
	if c.Store == KindBolt {
		return `store = "bolt" keeps the state in a file one process locks; use workers = 1 or store = "redis"`
	}
	return ""
}

// Validate checks the keys of the chosen store; each error starts with
// the plugin's name and names the key ("greylist: redis_addr: ..."). It
// takes the name, so it is not a registry.Validator of the plugins that
// embed Config: they validate when built, as before.
func (c Config) Validate(plugin string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", plugin, key, fmt.Sprintf(format, args...)))
	}
	switch c.Store {
	case KindBolt:
		if c.BoltSweepInterval <= 0 {
			bad("bolt_sweep_interval", "must be positive")
		}
		if c.BoltLockTimeout <= 0 {
			bad("bolt_lock_timeout", "must be positive")
		}
	case KindRedis:
		if c.RedisAddr != "" {
			if err := checkAddr(c.RedisAddr); err != nil {
				bad("redis_addr", "%v", err)
			}
		}
		if c.RedisTimeout < 0 || c.RedisTimeout.D() > MaxRedisTimeout {
			bad("redis_timeout", "%v: want 0 (the [store] pool's, or 1s) to %v", c.RedisTimeout.D(), MaxRedisTimeout)
		}
		if c.RedisDB < 0 {
			bad("redis_db", "%d: must not be negative", c.RedisDB)
		}
		if strings.ContainsAny(c.RedisPrefix, "{}") {
			bad("redis_prefix", "%q: must not contain { or } (the store adds hash tags)", c.RedisPrefix)
		}
	default:
		bad("store", "%q: want %q or %q", c.Store, KindBolt, KindRedis)
	}
	return errors.Join(errs...)
}

// Options returns the options c describes: the bbolt file is bolt_path, or
// defaultBoltPath when that is empty, and its sweeper reads the time from now.
func (c Config) Options(defaultBoltPath string, now func() time.Time) Options {
	o := Options{Kind: c.Store}
	switch c.Store {
	case KindBolt:
		path := c.BoltPath
		if path == "" {
			path = defaultBoltPath
		}
		o.Bolt = BoltOptions{Path: path, SweepInterval: c.BoltSweepInterval.D(), LockTimeout: c.BoltLockTimeout.D(), Now: now}
	case KindRedis:
		addr, timeout := c.RedisAddr, c.RedisTimeout.D()
		if addr == "" {
			addr = DefaultRedisAddr
		}
		if timeout <= 0 {
			timeout = DefaultRedisTimeout
		}
		o.Redis = RedisOptions{Addr: addr, DB: c.RedisDB, Username: c.RedisUsername,
			Password: c.RedisPassword, Prefix: c.RedisPrefix, Timeout: timeout}
	}
	return o
}

// OwnRedis reports whether the table sets a Redis connection key, so the
// plugin opens a pool of its own instead of using the shared one.
func (c Config) OwnRedis() bool {
	return c.RedisAddr != "" || c.RedisDB != 0 || c.RedisUsername != "" || c.RedisPassword != "" || c.RedisTimeout != 0
}

// HostOptions are Options with the host's shared Redis pool
// (registry.Host.Redis) when the table uses Redis and sets no connection
// key of its own.
func (c Config) HostOptions(host registry.Host, defaultBoltPath string) Options {
	now := time.Now
	if host.Clock != nil {
		now = host.Clock.Now
	}
	o := c.Options(defaultBoltPath, now)
	if c.Store == KindRedis && !c.OwnRedis() && host.Redis != nil {
		o.Redis = RedisOptions{Client: host.Redis, Prefix: c.RedisPrefix}
	}
	return o
}

// String names the store for logs and errors ("bolt /var/lib/elemta/greylist/greylist.db",
// "redis 127.0.0.1:6379"), never its credentials.
func (o Options) String() string {
	switch o.Kind {
	case KindBolt:
		return "bolt " + o.Bolt.Path
	case KindRedis:
		if o.Redis.Client != nil {
			return "redis (the [store] pool)"
		}
		if o.Redis.Config.Enabled() {
			return o.Redis.Config.String()
		}
		return "redis " + o.Redis.Addr
	}
	return ""
}

// Handle is the store of a plugin: described when the plugin is built,
// opened by its Start, closed by its Close. Calls go to the embedded Store
// (nil until Open); the plugin reports each call's outcome to the embedded
// Outage, which logs a failing store once per outage.
type Handle struct {
	Store
	*Outage
	opts Options
}

// NewHandle returns the handle of the store cfg describes (see
// Config.Options for defaultBoltPath and now), logging outages to log. cfg
// must be valid (Config.Validate).
func NewHandle(cfg Config, defaultBoltPath string, log *slog.Logger, now func() time.Time) *Handle {
	opts := cfg.Options(defaultBoltPath, now)
	return &Handle{Outage: NewOutage(log, opts.String(), now), opts: opts}
}

// NewHostHandle is NewHandle with what the host hands the plugin: its
// logger, its clock, and its shared Redis pool, which the plugin uses
// unless its table sets Redis connection keys of its own (Config).
func NewHostHandle(cfg Config, host registry.Host, defaultBoltPath string) *Handle {
	opts := cfg.HostOptions(host, defaultBoltPath)
	log := host.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if host.Clock != nil {
		now = host.Clock.Now
	}
	return &Handle{Outage: NewOutage(log, opts.String(), now), opts: opts}
}

// Open opens the store. An unreachable Redis does not make it fail: the
// outage is logged (once) and the plugin's on_error applies until Redis
// answers.
func (h *Handle) Open(ctx context.Context) error {
	st, err := Open(h.opts)
	if err != nil {
		return fmt.Errorf("open %s: %w", h.opts, err)
	}
	h.Store = st
	if h.opts.Kind == KindRedis {
		h.Observe(st.Ping(ctx))
	}
	return nil
}

// Ping reports whether the store answers.
func (h *Handle) Ping(ctx context.Context) error {
	if h.Store == nil {
		return errors.New("store not open (Start did not run)")
	}
	return h.Store.Ping(ctx)
}

// Close closes the store; safe without Open and twice.
func (h *Handle) Close() error {
	if h.Store == nil {
		return nil
	}
	return h.Store.Close()
}
