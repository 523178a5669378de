package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/elemta/elemta/registry"
)

// Backend writes the store keys of a plugin's table for one kind of store.
type Backend struct {
	Name string
	// TOML returns the store keys for a test. Every call for Redis gives a
	// prefix of its own: nodes that share a store share one call's keys.
	TOML func(t testing.TB) string
}

// Backends are a bbolt file (under the node's data directory) and the test
// Redis (see Redis).
func Backends() []Backend {
	return []Backend{
		{"bolt", func(testing.TB) string { return `store = "bolt"` + "\n" }},
		{"redis", func(t testing.TB) string {
			addr, prefix := Redis(t)
			return fmt.Sprintf("store = \"redis\"\nredis_addr = %q\nredis_prefix = %q\n", addr, prefix)
		}},
	}
}

// LoadPlugins parses the config doc and loads its plugins into a Manager
// whose host keeps its data in dir, tells the time with clock and logs into
// the returned recorder. The manager is closed when the test ends.
func LoadPlugins(t testing.TB, doc, dir string, clock *Clock) (*registry.Manager, *LogRecorder) {
	t.Helper()
	cfg, err := registry.ParseConfig("test.toml", []byte(doc))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", doc, err)
	}
	logs := &LogRecorder{}
	m := registry.NewManager(cfg, registry.WithHost(registry.Host{
		Logger: slog.New(logs.Handler()), Clock: clock, DataDir: dir,
	}))
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, logs
}
