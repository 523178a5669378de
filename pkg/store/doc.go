// Package store holds the state of Elemta's greylist and ratelimit plugins,
// and of any plugin that needs the same primitives: an embedded bbolt file
// for one node, or a Redis server that several nodes share. Each operation
// is one atomic primitive (a bbolt write transaction, or one Lua script in
// Redis), never a read-modify-write from Go, so concurrent checks on one or
// many nodes cannot race:
//
//   - Greylist: check and update a (network, sender, recipient) triplet;
//   - Take: one event under a rate (GCRA: Count per Window, Burst at once);
//   - Acquire / Release: leased slots, for concurrency limits.
//
// Time is always passed in by the caller (the plugin's injectable clock,
// registry.Host.Clock); stores never read the wall clock for decisions.
// Store TTLs (Redis PEXPIRE, the bbolt sweeper) only remove records the
// logic already treats as gone.
//
// A plugin embeds Config in its own config struct (no toml tag), so the
// store keys (store, bolt_path, redis_addr, ...) sit in its table, builds a
// Handle in New and opens it in Start:
//
//	type Config struct {
//		store.Config
//		Limit int `toml:"limit"`
//	}
//
//	func New(cfg Config, host registry.Host) (*Plugin, error) {
//		if err := cfg.Config.Validate("myplugin"); err != nil {
//			return nil, err
//		}
//		path := filepath.Join(host.DataDir, "myplugin", "state.db")
//		return &Plugin{st: store.NewHostHandle(cfg.Config, host, path)}, nil
//	}
//
//	func (p *Plugin) Start(ctx context.Context) error { return p.st.Open(ctx) }
//	func (p *Plugin) Close() error                    { return p.st.Close() }
//
//	// in HandleStage:
//	res, err := p.st.Take(ctx, key, p.clock.Now(), store.Rate{Count: 100, Window: time.Hour})
//	p.st.Observe(err) // logs an outage once, and its recovery
//
// NewHostHandle gives the plugin the process's shared Redis pool
// (registry.Host.Redis, the host config's [store] table: one server,
// Sentinel or Cluster, with TLS) unless the plugin's table sets Redis
// connection keys of its own; RedisConfig is that table. Every script
// touches one hash slot, so the store runs on a Redis Cluster too. See
// README.md.
//
// Package storetest runs a plugin's tests against both backends (a bbolt
// file and the loopback test Redis of tools/testenv), and reaches the
// Sentinel, Cluster and TLS setups of tools/testenv/redis-ha.sh.
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package store
