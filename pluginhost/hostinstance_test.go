package pluginhost

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// TestHostInstanceNamesEachInstance: every instance's Host says which
// instance it is, as its results do.
func TestHostInstanceNamesEachInstance(t *testing.T) {
	var mu sync.Mutex
	got := map[string]bool{}
	cat := newCatalog(module(registry.Module[struct{}, handlerFunc]{
		Name: "who", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		New: func(_ struct{}, h registry.Host) (handlerFunc, error) {
			mu.Lock()
			got[h.Instance] = true
			mu.Unlock()
			return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
				return &registry.Result{Details: h.Instance}, nil
			}, nil
		},
	}))
	cfg, err := parseConfig(cat, "test.toml", []byte("[plugins]\nplugins = [\"who\", \"who/b\"]\n"))
	require.NoError(t, err)
	m := NewManager(cfg)
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	assert.Equal(t, map[string]bool{"who": true, "who/b": true}, got)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	for _, r := range sr.Results {
		assert.Equal(t, r.Plugin, r.Details)
	}
}
