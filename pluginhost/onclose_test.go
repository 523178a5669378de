package pluginhost

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// closeRecorder is a plugin that records its Close.
type closeRecorder struct{ log *[]string }

func (c closeRecorder) HandleStage(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{}, nil
}
func (c closeRecorder) Close() error { *c.log = append(*c.log, "plugin"); return nil }

// TestWithOnCloseRunsOnceAfterThePlugins: what the host opened for a
// manager's plugins is released after they are closed, once.
func TestWithOnCloseRunsOnceAfterThePlugins(t *testing.T) {
	var log []string
	cat := newCatalog(module(registry.Module[struct{}, closeRecorder]{
		Name: "rec", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		New: func(struct{}, registry.Host) (closeRecorder, error) { return closeRecorder{&log}, nil },
	}))
	cfg, err := parseConfig(cat, "test.toml", []byte("[plugins]\nplugins = [\"rec\"]\n"))
	require.NoError(t, err)
	m := NewManager(cfg, WithOnClose(func() error { log = append(log, "host"); return errors.New("pool: boom") }))
	require.NoError(t, m.LoadPlugins(context.Background()))
	assert.EqualError(t, m.Close(), "pool: boom")
	assert.NoError(t, m.Close())
	assert.Equal(t, []string{"plugin", "host"}, log)
}
