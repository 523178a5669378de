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
//		return &Plugin{st: store.NewHandle(cfg.Config, path, host.Logger, host.Clock.Now)}, nil
//	}
//
//	func (p *Plugin) Start(ctx context.Context) error { return p.st.Open(ctx) }
//	func (p *Plugin) Close() error                    { return p.st.Close() }
//
//	// in HandleStage:
//	res, err := p.st.Take(ctx, key, p.clock.Now(), store.Rate{Count: 100, Window: time.Hour})
//	p.st.Observe(err) // logs an outage once, and its recovery
//
// Package storetest runs a plugin's tests against both backends (a bbolt
// file and the loopback test Redis of tools/testenv).
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package store
