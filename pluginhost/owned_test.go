package pluginhost

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// verdictConfig is a registry.HeaderOwner config: the plugin owns
// X-Verdict when stamp is on.
type verdictConfig struct {
	Stamp bool   `toml:"stamp"`
	Owns  string `toml:"owns"`
}

func (c *verdictConfig) OwnedHeaders() []string {
	if !c.Stamp {
		return nil
	}
	if c.Owns != "" {
		return []string{c.Owns}
	}
	return []string{"X-Verdict", "X-Verdict-Score"}
}

var _ registry.HeaderOwner = (*verdictConfig)(nil)

func ownerCatalogConfig(t *testing.T, config string, fn handlerFunc) (*Config, error) {
	t.Helper()
	cat := newCatalog(module(registry.Module[verdictConfig, handlerFunc]{
		Name: "stamper", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		Config: func() verdictConfig { return verdictConfig{Stamp: true} },
		New:    func(verdictConfig, registry.Host) (handlerFunc, error) { return fn, nil },
	}))
	return parseConfig(cat, "test.toml", []byte(config))
}

// TestFailedCallRemovesOwnedHeaders: whatever way a HeaderOwner's call
// fails, the stage removes every field it owns, and only then.
func TestFailedCallRemovesOwnedHeaders(t *testing.T) {
	own := func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
		return &registry.Result{
			RemoveHeaders: []registry.Removal{{Name: "X-Verdict", Index: -1}},
			AddHeaders:    []registry.Field{{Name: "X-Verdict", Value: "ok"}},
		}, nil
	}
	wantRemoved := []registry.Removal{{Name: "X-Verdict", Index: -1}, {Name: "X-Verdict-Score", Index: -1}}
	tests := []struct {
		name     string
		config   string
		fn       handlerFunc
		wantRm   []registry.Removal
		wantAdd  []registry.Field
		timedOut bool
	}{
		{"success keeps the plugin's own changes", "", own, []registry.Removal{{Name: "X-Verdict", Index: -1}}, []registry.Field{{Name: "X-Verdict", Value: "ok"}}, false},
		{"error", "", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Verdict", Value: "partial"}}}, errors.New("daemon down")
		}, wantRemoved, nil, false},
		{"no result", "", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return nil, nil
		}, wantRemoved, nil, false},
		{"panic", "", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			panic("boom")
		}, wantRemoved, nil, false},
		{"timeout", "timeout = \"20ms\"\n", func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, wantRemoved, nil, true},
		{"error, headers off", "stamp = false\n", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return nil, errors.New("daemon down")
		}, nil, nil, false},
		{"error, remove_on_error adds", "remove_on_error = [\"X-Spamd-Result\", \"x-verdict\"]\n", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return nil, errors.New("daemon down")
		}, append(slices.Clone(wantRemoved), registry.Removal{Name: "X-Spamd-Result", Index: -1}), nil, false},
		{"error, remove_on_error alone", "stamp = false\nremove_on_error = [\"X-Spamd-Result\"]\n", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return nil, errors.New("daemon down")
		}, []registry.Removal{{Name: "X-Spamd-Result", Index: -1}}, nil, false},
		{"success, remove_on_error unused", "remove_on_error = [\"X-Spamd-Result\"]\n", own, []registry.Removal{{Name: "X-Verdict", Index: -1}}, []registry.Field{{Name: "X-Verdict", Value: "ok"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ownerCatalogConfig(t, "[plugins]\nplugins = [\"stamper\"]\n[plugins.stamper]\non_error = \"accept\"\n"+tt.config, tt.fn)
			require.NoError(t, err)
			m := NewManager(cfg)
			require.NoError(t, m.LoadPlugins(context.Background()))
			t.Cleanup(func() { _ = m.Close() })
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
			require.NoError(t, err)
			assert.Equal(t, registry.Accept, sr.Verdict.Action)
			assert.Equal(t, tt.wantRm, sr.RemoveHeaders)
			assert.Equal(t, tt.wantAdd, sr.AddHeaders)
			assert.Equal(t, tt.timedOut, sr.Results[0].TimedOut)
		})
	}
}

func TestRemoveOnErrorIsCheckedAtParse(t *testing.T) {
	_, err := ownerCatalogConfig(t, "[plugins]\nplugins = [\"stamper\"]\n[plugins.stamper]\nremove_on_error = [\"X-Ok\", \"X Bad\"]\n", nil)
	require.Error(t, err)
	assert.Equal(t, `test.toml:4:1: [plugins.stamper]: remove_on_error[1]: "X Bad" is not a header field name`, err.Error())
}

func TestOwnedHeadersAreCheckedAtParse(t *testing.T) {
	for _, bad := range []string{"X-Bad:", "X Bad", "X-\u00e9"} {
		_, err := ownerCatalogConfig(t, "[plugins]\nplugins = [\"stamper\"]\n[plugins.stamper]\nowns = \""+bad+"\"\n", nil)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "test.toml:3:2: [plugins.stamper]: OwnedHeaders: ")
	}
}
