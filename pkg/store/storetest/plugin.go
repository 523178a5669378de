package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/elemta/elemta/pluginhost"
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
func LoadPlugins(t testing.TB, doc, dir string, clock *Clock) (*pluginhost.Manager, *LogRecorder) {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(doc))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", doc, err)
	}
	logs := &LogRecorder{}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{
		Logger: slog.New(logs.Handler()), Clock: clock, DataDir: dir,
	}))
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, logs
}

// LoadError parses the config doc and returns what loading its plugins
// says, with the data directory a temporary one: the check of a plugin's
// config that only New can make.
func LoadError(t testing.TB, doc string) error {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{DataDir: t.TempDir()}))
	err = m.LoadPlugins(context.Background())
	m.Close()
	return err
}

// BenchChecks runs a benchmark per backend with one caller
// ("<backend>/single") and GOMAXPROCS×8 callers ("<backend>/parallel"),
// reporting checks/s. setup builds one check on the store that storeKeys
// (Backend.TOML) describe; it is not timed.
func BenchChecks(b *testing.B, setup func(b *testing.B, storeKeys string) (check func())) {
	for _, be := range Backends() {
		for _, parallel := range []bool{false, true} {
			name := be.Name + "/single"
			if parallel {
				name = be.Name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				check := setup(b, be.TOML(b))
				b.ResetTimer()
				if parallel {
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							check()
						}
					})
				} else {
					for b.Loop() {
						check()
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
			})
		}
	}
}
