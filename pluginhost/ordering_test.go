package pluginhost

import (
	"context"
	"testing"

	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOrderingByWhatPluginsProduce: a consumer of *SPFResult and
// *ScanResult runs after every producer of them, whatever their names, and
// reads them in config order even when the later one finished first.
func TestOrderingByWhatPluginsProduce(t *testing.T) {
	bDone := make(chan struct{})
	var seen struct {
		first *registry.ScanResult
		all   []*registry.ScanResult
		spf   *registry.SPFResult
	}
	custom := []registry.PluginType{registry.PluginTypeCustom}
	post := []registry.Stage{registry.PostReception}
	scanA := &registry.ScanResult{Status: registry.StatusClean, Details: "a"}
	scanB := &registry.ScanResult{Status: registry.StatusInfected, Details: "b"}
	produce := func(name string, data any, produces []any, run func()) func() {
		return module(registry.Module[struct{}, handlerFunc]{Name: name, Types: custom, Stages: post, Produces: produces,
			New: func(struct{}, registry.Host) (handlerFunc, error) {
				return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
					run()
					return &registry.Result{Data: data}, nil
				}, nil
			}})
	}
	scan := []any{(*registry.ScanResult)(nil)}
	c := newCatalog(
		module(registry.Module[struct{}, handlerFunc]{Name: "reader", Types: custom, Stages: post,
			Consumes: []any{(*registry.SPFResult)(nil), (*registry.ScanResult)(nil)},
			New: func(struct{}, registry.Host) (handlerFunc, error) {
				return func(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
					seen.first, _ = registry.Find[*registry.ScanResult](pc)
					seen.all = registry.FindAll[*registry.ScanResult](pc)
					seen.spf, _ = registry.Find[*registry.SPFResult](pc)
					return &registry.Result{}, nil
				}, nil
			}}),
		produce("scan-a", scanA, scan, func() { <-bDone }), // finishes after scan-b
		produce("scan-b", scanB, scan, func() { close(bDone) }),
		produce("thirdparty-spf", &registry.SPFResult{Result: registry.AuthPass}, []any{(*registry.SPFResult)(nil)}, func() {}),
	)
	cfg, err := parseConfig(c, "t.toml", []byte(`[plugins]
plugins = ["reader", "scan-a", "scan-b", "thirdparty-spf"]`))
	require.NoError(t, err)
	m := NewManager(cfg)
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	assert.Equal(t, [][]string{{"scan-a", "scan-b", "thirdparty-spf"}, {"reader"}}, m.Waves(registry.PostReception))

	_, err = m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	assert.Same(t, scanA, seen.first, "Find returns the first producer in config order, not the last to finish")
	assert.Equal(t, []*registry.ScanResult{scanA, scanB}, seen.all)
	require.NotNil(t, seen.spf)
	assert.Equal(t, registry.AuthPass, seen.spf.Result)
}

func TestConsumingWhatAnotherInstanceProducesIsACycle(t *testing.T) {
	c := newCatalog(module(registry.Module[struct{}, handlerFunc]{Name: "relay", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception}, Produces: []any{(*registry.DKIMResult)(nil)}, Consumes: []any{(*registry.DKIMResult)(nil)},
		New: func(struct{}, registry.Host) (handlerFunc, error) {
			return verdictPlugin(registry.AcceptVerdict()), nil
		}}))
	cfg, err := parseConfig(c, "t.toml", []byte("[plugins]\nplugins = [\"relay\"]\n"))
	require.NoError(t, err)
	require.NoError(t, NewManager(cfg).LoadPlugins(context.Background()), "one instance does not wait for itself")

	cfg, err = parseConfig(c, "t.toml", []byte("[plugins]\nplugins = [\"relay\", \"relay/two\"]\n"))
	require.NoError(t, err)
	err = NewManager(cfg).LoadPlugins(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin ordering cycle at stage post-reception")
}
