package pluginhost

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

type boltish struct {
	Store string `toml:"store"`
}

func (c boltish) SingleProcess() string {
	if c.Store == "bolt" {
		return "bolt locks its file"
	}
	return ""
}

type boltPlugin struct{}

func (boltPlugin) HandleStage(_ context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{}, nil
}

func TestIsolationKeys(t *testing.T) {
	cat := catalog.Capture(func() {
		registry.Register(registry.Module[boltish, boltPlugin]{
			Name: "boltish", Description: "d", Types: []registry.PluginType{registry.PluginTypeFilter},
			Stages: []registry.Stage{registry.PostReception},
			Config: func() boltish { return boltish{Store: "bolt"} },
			New:    func(boltish, registry.Host) (boltPlugin, error) { return boltPlugin{}, nil },
		})
	})
	for _, tc := range []struct {
		name, body string
		want       Isolation
		err        string
	}{
		{"defaults", "", Isolation{Mode: IsolationNone, MemoryLimit: DefaultMemoryLimit, Workers: 1, MaxRequests: DefaultMaxRequests}, ""},
		{"process with units", "isolation = \"process\"\nmemory_limit = \"1GiB\"\nmax_requests = 0\n", Isolation{Mode: IsolationProcess, MemoryLimit: 1 << 30, Workers: 1, MaxRequests: 0}, ""},
		{"bytes", "isolation = \"process\"\nmemory_limit = 67108864\n", Isolation{Mode: IsolationProcess, MemoryLimit: 64 << 20, Workers: 1, MaxRequests: DefaultMaxRequests}, ""},
		{"redis store, many workers", "store = \"redis\"\nisolation = \"process\"\nworkers = 64\n", Isolation{Mode: IsolationProcess, MemoryLimit: DefaultMemoryLimit, Workers: 64, MaxRequests: DefaultMaxRequests}, ""},
		{"unknown mode", "isolation = \"thread\"\n", Isolation{}, `unknown isolation "thread"`},
		{"memory below the minimum", "isolation = \"process\"\nmemory_limit = \"63MiB\"\n", Isolation{}, "memory_limit = 66060288: must be between 64MiB and 1TiB"},
		{"memory above the maximum", "isolation = \"process\"\nmemory_limit = \"2TiB\"\n", Isolation{}, "must be between 64MiB and 1TiB"},
		{"bad size", "isolation = \"process\"\nmemory_limit = \"lots\"\n", Isolation{}, `t.toml:7:16: plugins.boltish.memory_limit: invalid size "lots"`},
		{"no workers", "isolation = \"process\"\nworkers = 0\n", Isolation{}, "workers = 0: must be between 1 and 64"},
		{"too many workers", "store = \"redis\"\nisolation = \"process\"\nworkers = 65\n", Isolation{}, "workers = 65: must be between 1 and 64"},
		{"negative max_requests", "isolation = \"process\"\nmax_requests = -1\n", Isolation{}, "max_requests = -1: must not be negative"},
		{"limit without isolation", "memory_limit = \"128MiB\"\n", Isolation{}, `memory_limit applies only with isolation = "process"`},
		{"bolt with two workers", "isolation = \"process\"\nworkers = 2\n", Isolation{}, `workers = 2 with isolation = "process": bolt locks its file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "[plugins]\nplugins = [\"boltish\"]\n\n[plugins.boltish]\n" + tc.body
			cfg, err := parseConfig(cat, "t.toml", []byte(strings.Replace(doc, "[plugins.boltish]\n", "[plugins.boltish]\n\n", 1)))
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			pc, err := cfg.Settings("boltish")
			require.NoError(t, err)
			assert.Equal(t, tc.want, pc.Isolation)
		})
	}
}
