package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// probe is a test plugin whose behaviour the message's Subject chooses.
type probe struct{ hits registry.Counter }

func (p *probe) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	switch s := pc.Message.Header.Get("Subject"); s {
	case "reject":
		p.hits.Add(1, "reject")
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "no")}, nil
	case "error":
		return nil, errors.New("broken")
	case "panic":
		panic("boom")
	case "quiet": // the benchmark's: the executor's metrics alone
		return &registry.Result{}, nil
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	default:
		p.hits.Add(1, s)
		return &registry.Result{}, nil
	}
}

func init() {
	registry.Register(registry.Module[struct{}, *probe]{
		Name: "metricsprobe", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception},
		New: func(_ struct{}, h registry.Host) (*probe, error) {
			c, err := h.Metrics.Counter("hits_total", "Messages the probe saw, by subject.", "subject")
			if err != nil {
				return nil, err
			}
			return &probe{hits: c}, nil
		},
	})
}

func manager(t testing.TB, m *Metrics, toml string) *pluginhost.Manager {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("t.toml", []byte(toml))
	require.NoError(t, err)
	var opts []pluginhost.Option
	if m != nil {
		opts = append(opts, pluginhost.WithObserver(m), pluginhost.WithPluginMetrics(m.ForPlugin))
	}
	mgr := pluginhost.NewManager(cfg, opts...)
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = mgr.Close() })
	return mgr
}

func run(t testing.TB, mgr *pluginhost.Manager, subject string) *pluginhost.StageResult {
	t.Helper()
	msg, err := registry.ParseMessage([]byte("Subject: "+subject+"\r\n\r\nbody\r\n"), registry.Envelope{})
	require.NoError(t, err)
	sr, err := mgr.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
	require.NoError(t, err)
	return sr
}

const twoInstances = `
[plugins]
plugins = ["metricsprobe", "metricsprobe/strict"]
[plugins.metricsprobe]
timeout = "50ms"
[plugins."metricsprobe/strict"]
timeout = "50ms"
`

func TestCountsPerInstanceAndStage(t *testing.T) {
	m := New(BuildInfo{Version: "v1.2.3", Revision: "abc"})
	mgr := manager(t, m, twoInstances)
	for _, s := range []string{"clean", "clean", "reject", "error", "panic", "hang"} {
		run(t, mgr, s)
	}
	for _, inst := range []string{"metricsprobe", "metricsprobe/strict"} {
		assert.Equal(t, 6.0, testutil.ToFloat64(m.calls.WithLabelValues(inst, "post-reception")), inst)
		assert.Equal(t, 3.0, testutil.ToFloat64(m.errors.WithLabelValues(inst, "post-reception")), inst)
		assert.Equal(t, 1.0, testutil.ToFloat64(m.panics.WithLabelValues(inst, "post-reception")), inst)
		assert.Equal(t, 1.0, testutil.ToFloat64(m.timeouts.WithLabelValues(inst, "post-reception")), inst)
		assert.Equal(t, 1.0, testutil.ToFloat64(m.verdicts.WithLabelValues(inst, "post-reception", "reject")), inst)
		assert.Equal(t, 5.0, testutil.ToFloat64(m.verdicts.WithLabelValues(inst, "post-reception", "accept")), inst)
	}
	assert.Equal(t, 1.0, testutil.ToFloat64(m.stageVerdicts.WithLabelValues("post-reception", "reject")))
	assert.Equal(t, 5.0, testutil.ToFloat64(m.stageVerdicts.WithLabelValues("post-reception", "accept")))
	last := m.LastErrors()
	assert.Contains(t, last["metricsprobe/strict"].Error, "timed out", "the last failure was the hang")

	// The plugin's own counter: one metric, the instance as label.
	assert.Equal(t, 2.0, testutil.ToFloat64(m.custom["elemta_plugin_metricsprobe_hits_total"].counter.WithLabelValues("metricsprobe/strict", "clean")))

	// The whole scrape passes the linter and has the histograms and build info.
	problems, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	assert.Empty(t, problems)
	n, err := testutil.GatherAndCount(m.Registry(), "elemta_plugin_duration_seconds", "elemta_stage_duration_seconds", "elemta_build_info")
	require.NoError(t, err)
	assert.Equal(t, 4, n, "two instances' histograms, the stage's, build info")
}

func TestPluginMetricErrors(t *testing.T) {
	m := New(BuildInfo{})
	p := m.ForPlugin("x/a", "x")
	_, err := p.Counter("hits", "help")
	assert.ErrorContains(t, err, "_total")
	_, err = p.Counter("Bad_total", "help")
	assert.ErrorContains(t, err, "lowercase")
	_, err = p.Counter("ok_total", "help", "plugin")
	assert.ErrorContains(t, err, `"plugin"`)
	_, err = p.Counter("ok_total", "")
	assert.ErrorContains(t, err, "help")
	_, err = p.Histogram("lat_total", "help", nil)
	assert.ErrorContains(t, err, "unit")
	_, err = p.Histogram("lat_seconds", "help", []float64{2, 1})
	assert.ErrorContains(t, err, "increasing")

	c1, err := p.Counter("ok_total", "help", "a")
	require.NoError(t, err)
	c2, err := m.ForPlugin("x/b", "x").Counter("ok_total", "help", "a")
	require.NoError(t, err, "a second instance shares the metric")
	c1.Add(1, "v")
	c2.Add(2, "v")
	c2.Add(1) // wrong number of values: ignored
	_, err = p.Counter("ok_total", "other help", "a")
	assert.ErrorContains(t, err, "differently")
	_, err = p.Histogram("ok_total", "help", nil, "a")
	assert.Error(t, err)
	got := m.custom["elemta_plugin_x_ok_total"].counter
	assert.Equal(t, 1.0, testutil.ToFloat64(got.WithLabelValues("x/a", "v")))
	assert.Equal(t, 2.0, testutil.ToFloat64(got.WithLabelValues("x/b", "v")))
}

// TestMaxSeries: past max_plugin_series value sets, samples count under
// "other"; hostile values (invalid UTF-8, huge) never break the scrape.
func TestMaxSeries(t *testing.T) {
	const max = 3
	m := New(BuildInfo{}, WithMaxSeries(max))
	c, err := m.ForPlugin("av", "av").Counter("sig_total", "help", "signature")
	require.NoError(t, err)
	for i := range max + 5 {
		c.Add(1, fmt.Sprintf("sig%d", i))
	}
	c.Add(1, "sig0") // known: still counted under its name
	c.Add(1, "\xff\xfe"+strings.Repeat("x", 1000))
	vec := m.custom["elemta_plugin_av_sig_total"].counter
	assert.Equal(t, 2.0, testutil.ToFloat64(vec.WithLabelValues("av", "sig0")))
	assert.Equal(t, 6.0, testutil.ToFloat64(vec.WithLabelValues("av", OtherValue)))
	assert.Equal(t, max+1, testutil.CollectAndCount(vec), "max value sets plus other")

	m2 := New(BuildInfo{}, WithMaxSeries(10))
	c2, err := m2.ForPlugin("av", "av").Counter("sig_total", "help", "signature")
	require.NoError(t, err)
	c2.Add(1, "\xff\xfe"+strings.Repeat("x", 1000))
	_, err = m2.Registry().Gather()
	require.NoError(t, err)
	for k := range m2.custom["elemta_plugin_av_sig_total"].series {
		assert.LessOrEqual(t, len(k), len("av\xff")+MaxLabelValue)
	}
}

func TestObserveIsCheapToLookUp(t *testing.T) {
	m := New(BuildInfo{})
	r := &registry.Result{Plugin: "p", Stage: registry.PreReception, Duration: time.Millisecond}
	allocs := testing.AllocsPerRun(100, func() { m.ObserveCall(r) })
	assert.Zero(t, allocs, "a known (instance, stage) allocates nothing")
}
