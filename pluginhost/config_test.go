package pluginhost

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clamConfig struct {
	Socket  string            `toml:"socket"`
	Timeout registry.Duration `toml:"timeout"`
	Chunk   int               `toml:"chunk_size"`
}

func (c *clamConfig) Validate() error {
	if c.Chunk > 1<<20 {
		return fmt.Errorf("chunk_size %d is over the 1 MiB limit", c.Chunk)
	}
	return nil
}

type rspamdConfig struct {
	URL   string `toml:"url"`
	Rules []struct {
		Pattern string `toml:"pattern"`
	} `toml:"rules"`
}

type dkimConfig struct {
	Selector   string `toml:"selector"`
	PrivateKey string `toml:"private_key"`
}

// seedRegistry registers plugins under the names and config keys of the
// original design document's example, with the plugin code reduced to the
// adapter-driven scanner.
func seedRegistry(t *testing.T) *catalog.Catalog {
	t.Helper()
	var regs []func()
	add := func(r func()) { regs = append(regs, r) }
	newScanner := func(registry.Host) (scanner, error) { return scanner{}, nil }
	av := []registry.PluginType{registry.PluginTypeAntivirus}
	add(module(registry.Module[clamConfig, scanner]{Name: "clamav", Types: av, Stages: []registry.Stage{registry.PostReception},
		Config: func() clamConfig { return clamConfig{Socket: "/run/clamd.sock", Chunk: 8192} },
		New:    func(_ clamConfig, h registry.Host) (scanner, error) { return newScanner(h) }}))
	add(module(registry.Module[rspamdConfig, scanner]{Name: "rspamd", Types: av,
		New: func(_ rspamdConfig, h registry.Host) (scanner, error) { return newScanner(h) }}))
	add(module(registry.Module[dkimConfig, scanner]{Name: "dkim", Types: av,
		New: func(_ dkimConfig, h registry.Host) (scanner, error) { return newScanner(h) }}))
	for _, n := range []string{"spf", "dmarc"} {
		add(module(registry.Module[struct{}, scanner]{Name: n, Types: av,
			New: func(_ struct{}, h registry.Host) (scanner, error) { return newScanner(h) }}))
	}
	return newCatalog(regs...)
}

func TestSeedExampleLoadsAsWritten(t *testing.T) {
	data, err := os.ReadFile("testdata/seed.toml")
	require.NoError(t, err)
	cfg, err := parseConfig(seedRegistry(t), "seed.toml", data)
	require.NoError(t, err)

	assert.True(t, cfg.Enabled)
	assert.Equal(t, []string{"clamav", "rspamd", "dkim", "spf", "dmarc"}, cfg.Plugins)
	require.Len(t, cfg.Warnings, 1)
	assert.Contains(t, cfg.Warnings[0], `plugins.directory = "/app/plugins" is ignored: plugins are compiled into the binary now`)

	clam, err := cfg.Settings("clamav")
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, clam.Timeout, "timeout = 30 means seconds")
	assert.Equal(t, &clamConfig{Socket: "/var/run/clamav/clamd.ctl", Timeout: registry.Duration(30 * time.Second), Chunk: 8192}, clam.Value,
		"file values override defaults; unset keys keep them")
	rs, _ := cfg.Settings("rspamd")
	assert.Equal(t, 10*time.Second, rs.Timeout)
	assert.Equal(t, &rspamdConfig{URL: "http://rspamd:11333"}, rs.Value)
	dk, _ := cfg.Settings("dkim")
	assert.Equal(t, &dkimConfig{Selector: "default", PrivateKey: "/app/keys/dkim.key"}, dk.Value)
	assert.Equal(t, DefaultTimeout, dk.Timeout)
	spf, _ := cfg.Settings("spf")
	assert.Equal(t, &struct{}{}, spf.Value)
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"unknown key in a plugin table", "[plugins]\nplugins = [\"clamav\"]\n\n[plugins.clamav]\nsocket = \"/s\"\nsokcet = \"/t\"\n",
			[]string{`cfg.toml:6:1: plugins.clamav: unknown key "sokcet" (plugin clamav accepts: chunk_size, isolation, max_requests, memory_limit, on_error, remove_on_error, socket, stages, timeout, workers)`}},
		{"wrong type", "[plugins.clamav]\nsocket = 3310\n",
			[]string{"cfg.toml:2:10: plugins.clamav.socket: cannot decode TOML integer into struct field", "of type string"}},
		{"bad duration", "[plugins.clamav]\ntimeout = \"soon\"\n",
			[]string{`cfg.toml:2:11: plugins.clamav.timeout: invalid duration "soon"`}},
		{"bad on_error", "[plugins.clamav]\non_error = \"explode\"\n",
			[]string{"cfg.toml:2:", `unknown action "explode" (valid: accept, quarantine, tempfail, reject)`}},
		{"plugin not compiled in", "[plugins]\nplugins = [\"clamav\", \"sophos\"]\n",
			[]string{`plugins.plugins enables "sophos", which is not compiled into this binary; compiled in: clamav, dkim, dmarc, rspamd, spf. To add a plugin, list it in plugins.yaml and rebuild (`}},
		{"table of a plugin not compiled in", "[plugins.sophos]\nsocket = \"x\"\n",
			[]string{`cfg.toml:1:2: unknown key "plugins.sophos": no plugin "sophos" is compiled into this binary`}},
		{"unknown plugins setting", "[plugins]\nenable = true\n",
			[]string{`cfg.toml:2:1: unknown key "plugins.enable": no plugin "enable" is compiled into this binary, and it is not a [plugins] setting (enabled, directory`}},
		{"unknown key in a nested table", "[plugins.rspamd]\nurl = \"u\"\n[[plugins.rspamd.rules]]\npattern = \"a\"\n[[plugins.rspamd.rules]]\npatern = \"b\"\n",
			[]string{`cfg.toml:6:1: plugins.rspamd.rules: unknown key "patern" (see the README of plugin rspamd)`}},
		{"config value validation", "[plugins.clamav]\nchunk_size = 2000000\n",
			[]string{"cfg.toml:2:1: [plugins.clamav]: chunk_size 2000000 is over the 1 MiB limit"}},
		{"listed twice", "[plugins]\nplugins = [\"spf\", \"spf\"]\n", []string{`plugins.plugins lists "spf" twice`}},
		{"stage the plugin cannot run in", "[plugins.clamav]\nstages = [\"pre-queue\"]\n",
			[]string{"[plugins.clamav]: stages: plugin clamav cannot run at pre-queue (it supports [post-reception])"}},
		{"unknown stage", "[plugins.clamav]\nstages = [\"later\"]\n", []string{`unknown stage "later"`}},
		{"zero timeout", "[plugins.clamav]\ntimeout = 0\n", []string{"cfg.toml:2:1: [plugins.clamav]: timeout: must be positive"}},
		{"max_concurrency", "[plugins]\nmax_concurrency = 0\n", []string{"plugins.max_concurrency = 0: must be at least 1"}},
		{"negative idle_workers", "[plugins]\nidle_workers = -1\n", []string{"plugins.idle_workers = -1: must be between 0 and 4096"}},
		{"idle_workers over the limit", "[plugins]\nidle_workers = 4097\n", []string{"plugins.idle_workers = 4097: must be between 0 and 4096"}},
		{"syntax error", "[plugins\n", []string{"cfg.toml:1:"}},
		{"several errors at once", "[plugins.clamav]\nbogus = 1\n[plugins.dkim]\nselektor = \"x\"\n",
			[]string{`cfg.toml:2:1: plugins.clamav: unknown key "bogus"`, `cfg.toml:4:1: plugins.dkim: unknown key "selektor"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(seedRegistry(t), "cfg.toml", []byte(tt.toml))
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestOtherSectionsBelongToTheHost(t *testing.T) {
	cfg, err := parseConfig(seedRegistry(t), "cfg.toml", []byte("[dns]\nservers = [\"127.0.0.1:5353\"]\n[plugins]\nplugins = [\"spf\"]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"spf"}, cfg.Plugins)
}

func TestDurations(t *testing.T) {
	tests := map[string]time.Duration{
		`30`: 30 * time.Second, `0.5`: 500 * time.Millisecond, `"1m30s"`: 90 * time.Second,
		`"250ms"`: 250 * time.Millisecond, `'2s'`: 2 * time.Second, `1_000`: 1000 * time.Second,
	}
	for in, want := range tests {
		var d registry.Duration
		require.NoError(t, d.UnmarshalTOML([]byte(in)), in)
		assert.Equal(t, want, d.D(), in)
	}
	for _, bad := range []string{`-1`, `"-5s"`, `"soon"`, `true`, `[1]`} {
		var d registry.Duration
		assert.Error(t, d.UnmarshalTOML([]byte(bad)), bad)
	}
}

func TestDisabledPluginsLoadNothing(t *testing.T) {
	cfg, err := parseConfig(seedRegistry(t), "cfg.toml", []byte("[plugins]\nenabled = false\nplugins = [\"spf\"]\n"))
	require.NoError(t, err)
	m := NewManager(cfg)
	require.NoError(t, m.LoadPlugins(t.Context()))
	assert.Empty(t, m.Loaded())
}

func TestKnownKeysIncludeEmbeddedStructs(t *testing.T) {
	type Store struct {
		Addr string `toml:"redis_addr"`
	}
	type cfg struct {
		Store
		Delay  registry.Duration `toml:"delay"`
		hidden int
	}
	assert.Equal(t, []string{"delay", "isolation", "max_requests", "memory_limit", "on_error", "redis_addr", "remove_on_error", "stages", "timeout", "workers"}, knownKeys(&cfg{}))
}

// TestValidateErrorsEachOnALine: several problems of one plugin table are
// each one line with the file, the line of its key and the table.
func TestValidateErrorsEachOnALine(t *testing.T) {
	cat := newCatalog(module(registry.Module[multiConfig, handlerFunc]{
		Name: "multi", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		New: func(multiConfig, registry.Host) (handlerFunc, error) { return nil, nil },
	}))
	_, err := parseConfig(cat, "m.toml", []byte("[plugins]\nplugins = [\"multi\", \"multi/b\"]\n[plugins.multi]\na = -1\nb = -2\n[plugins.\"multi/b\"]\n\nb = -3\n"))
	require.Error(t, err)
	assert.Equal(t, `m.toml:4:1: [plugins.multi]: a = -1: must not be negative
m.toml:5:1: [plugins.multi]: b = -2: must not be negative
m.toml:8:1: [plugins."multi/b"]: b = -3: must not be negative`, err.Error())
}

type multiConfig struct {
	A int `toml:"a"`
	B int `toml:"b"`
}

func (c *multiConfig) Validate() error {
	var errs []error
	if c.A < 0 {
		errs = append(errs, fmt.Errorf("a = %d: must not be negative", c.A))
	}
	if c.B < 0 {
		errs = append(errs, fmt.Errorf("b = %d: must not be negative", c.B))
	}
	return errors.Join(errs...)
}
