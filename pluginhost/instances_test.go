package pluginhost

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type tagConfig struct {
	Tag string `toml:"tag"`
}

type tagger struct {
	tag     string
	dataDir string
}

func (p *tagger) HandleStage(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Tag", Value: p.tag}}}, nil
}

// instanceCatalog registers "tag", configurable, and "after-tag", which
// must run after every instance of tag.
func instanceCatalog() func() {
	return func() {
		registry.Register(registry.Module[tagConfig, *tagger]{Name: "tag", Types: []registry.PluginType{registry.PluginTypeCustom},
			Stages: []registry.Stage{registry.PostReception}, Config: func() tagConfig { return tagConfig{Tag: "default"} },
			New: func(c tagConfig, h registry.Host) (*tagger, error) {
				return &tagger{tag: c.Tag, dataDir: h.DataDir}, nil
			}})
		registry.Register(registry.Module[struct{}, *tagger]{Name: "after-tag", Types: []registry.PluginType{registry.PluginTypeCustom},
			Stages: []registry.Stage{registry.PostReception}, After: []string{"tag"},
			New: func(struct{}, registry.Host) (*tagger, error) { return &tagger{tag: "last"}, nil }})
	}
}

func TestInstancesAreConfiguredAndRunApart(t *testing.T) {
	cfg, err := parseConfig(newCatalog(instanceCatalog()), "t.toml", []byte(`[plugins]
plugins = ["after-tag", "tag", "tag/second"]
[plugins.tag]
tag = "one"
[plugins."tag/second"]
tag = "two"
timeout = 3
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"tag", "tag/second"}, cfg.Instances("tag"))
	second, err := cfg.Settings("tag/second")
	require.NoError(t, err)
	assert.Equal(t, "tag", second.Type)
	assert.Equal(t, "two", second.Value.(*tagConfig).Tag)
	assert.Equal(t, 3e9, float64(second.Timeout))
	unconfigured, err := cfg.Settings("tag/third")
	require.NoError(t, err)
	assert.Equal(t, "default", unconfigured.Value.(*tagConfig).Tag, "an instance without a table gets the defaults")

	m := NewManager(cfg, WithHost(registry.Host{DataDir: "/data"}))
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	assert.Equal(t, [][]string{{"tag", "tag/second"}, {"after-tag"}}, m.Waves(registry.PostReception),
		"an ordering constraint by plugin name holds for every instance")
	p1, _ := m.Plugin("tag")
	p2, _ := m.Plugin("tag/second")
	assert.Equal(t, "/data", p1.(*tagger).dataDir)
	assert.Equal(t, filepath.Join("/data", "instances", "second"), p2.(*tagger).dataDir, "a named instance gets a data directory of its own")

	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	var names []string
	for _, r := range sr.Results {
		names = append(names, r.Plugin)
	}
	assert.Equal(t, []string{"after-tag", "tag", "tag/second"}, names, "results name the instance, in config order")
	assert.Equal(t, []registry.Field{{Name: "X-Tag", Value: "last"}, {Name: "X-Tag", Value: "one"}, {Name: "X-Tag", Value: "two"}}, sr.AddHeaders)
	var stats []string
	for _, s := range m.Stats() {
		stats = append(stats, s.Name)
	}
	assert.Equal(t, []string{"after-tag", "tag", "tag/second"}, stats)
}

func TestInstanceIDErrors(t *testing.T) {
	tests := []struct{ name, toml, want string }{
		{"bad instance name", "[plugins]\nplugins = [\"tag/Second\"]\n", `plugin instance "tag/Second": instance name: invalid name "Second"`},
		{"empty instance name", "[plugins]\nplugins = [\"tag/\"]\n", `plugin instance "tag/": instance name: invalid name ""`},
		{"two slashes", "[plugins]\nplugins = [\"tag/a/b\"]\n", `instance name: invalid name "a/b"`},
		{"unknown plugin", "[plugins]\nplugins = [\"nosuch/a\"]\n", `enables "nosuch/a", which is not compiled into this binary`},
		{"listed twice", "[plugins]\nplugins = [\"tag/a\", \"tag/a\"]\n", `lists "tag/a" twice`},
		{"bad table", "[plugins.\"tag/A\"]\ntag = \"x\"\n", `t.toml:1:2: plugins."tag/A": plugin instance "tag/A": instance name: invalid name "A"`},
		{"unknown key in an instance", "[plugins.\"tag/a\"]\ncolour = 1\n", `t.toml:2:1: plugins."tag/a": unknown key "colour" (plugin tag accepts: isolation, max_requests, memory_limit, on_error, remove_on_error, stages, tag, timeout, workers)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(newCatalog(instanceCatalog()), "t.toml", []byte(tt.toml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
