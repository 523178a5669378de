package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// All k plugins of a stage must be running at once: each waits on a barrier
// that opens only when all k have arrived. Run one after another, the first
// would wait for ever (and be cut off at its timeout).
func TestExecuteStageRunsPluginsConcurrently(t *testing.T) {
	const k = 8
	var arrived sync.WaitGroup
	arrived.Add(k)
	barrier := make(chan struct{})
	go func() { arrived.Wait(); close(barrier) }()

	var plugins []stagePlugin
	for i := range k {
		plugins = append(plugins, stagePlugin{name: fmt.Sprintf("p%d", i), fn: func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
			arrived.Done()
			select {
			case <-barrier:
				return &registry.Result{}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}})
	}
	m := testManager(t, "", plugins...)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	require.Len(t, sr.Results, k)
	for _, r := range sr.Results {
		assert.NoError(t, r.Err, r.Plugin)
	}
}

func TestExecuteStageMaxConcurrency(t *testing.T) {
	var running, peak atomic.Int32
	var plugins []stagePlugin
	release := make(chan struct{})
	for i := range 6 {
		plugins = append(plugins, stagePlugin{name: fmt.Sprintf("p%d", i), fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-release
			running.Add(-1)
			return &registry.Result{}, nil
		}})
	}
	m := testManager(t, "[plugins]\nmax_concurrency = 2\nplugins = [\"p0\",\"p1\",\"p2\",\"p3\",\"p4\",\"p5\"]\n", plugins...)
	go func() {
		// Let plugins through one at a time; at most two may ever run.
		for range 6 {
			release <- struct{}{}
		}
	}()
	_, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	assert.LessOrEqual(t, peak.Load(), int32(2))
}

func TestHangingPluginIsCutOffAtItsTimeout(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang) // let the abandoned goroutine end with the test
	m := testManager(t, `
[plugins]
plugins = ["hangs", "quick", "tempfails"]
[plugins.hangs]
timeout = "50ms"
on_error = "tempfail"
[plugins.quick]
timeout = 30
`,
		stagePlugin{name: "hangs", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			<-hang // ignores its context on purpose
			return &registry.Result{}, nil
		}},
		stagePlugin{name: "quick", fn: verdictPlugin(registry.AcceptVerdict(), registry.Field{Name: "X-Quick", Value: "yes"})},
		stagePlugin{name: "tempfails", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return nil, errors.New("store down")
		}},
	)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	require.Len(t, sr.Results, 3)
	hangs, quick, failed := sr.Results[0], sr.Results[1], sr.Results[2]
	assert.True(t, hangs.TimedOut)
	assert.ErrorIs(t, hangs.Err, ErrTimeout)
	assert.EqualError(t, hangs.Err, "plugin hangs: plugin timed out after 50ms: context deadline exceeded", "the instance is named once")
	assert.Equal(t, registry.TempFail, hangs.Verdict.Action)
	assert.NoError(t, quick.Err)
	assert.Equal(t, []registry.Field{{Name: "X-Quick", Value: "yes"}}, sr.AddHeaders)
	assert.EqualError(t, failed.Err, "plugin tempfails: store down")
	assert.Equal(t, registry.Accept, failed.Verdict.Action, "default on_error is accept")
	assert.Equal(t, registry.TempFail, sr.Verdict.Action)
	assert.Equal(t, "hangs", sr.DecidedBy)
}

func TestPanickingPluginBecomesAnError(t *testing.T) {
	m := testManager(t, "[plugins]\nplugins = [\"boom\", \"fine\"]\n[plugins.boom]\non_error = \"reject\"\n",
		stagePlugin{name: "boom", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			var m map[string]int
			m["x"] = 1 // nil map write
			return nil, nil
		}},
		stagePlugin{name: "fine", fn: verdictPlugin(registry.AcceptVerdict())},
	)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	boom := sr.Results[0]
	assert.True(t, boom.Panicked)
	var pe *PanicError
	require.ErrorAs(t, boom.Err, &pe)
	assert.Equal(t, "boom", pe.Plugin)
	assert.Equal(t, "plugin boom panicked: assignment to entry in nil map", boom.Err.Error())
	assert.Contains(t, string(pe.Stack), "executor_test.go")
	assert.Equal(t, registry.Reject, sr.Verdict.Action)
	assert.NoError(t, sr.Results[1].Err)
	assert.Equal(t, int64(1), m.Stats()[0].Panics)
}

func TestVerdictMerge(t *testing.T) {
	reject := registry.RejectVerdict(554, "5.7.1", "virus")
	reject2 := registry.RejectVerdict(550, "5.7.0", "spam")
	temp := registry.TempFailVerdict(451, "4.7.1", "greylisted")
	quar := registry.QuarantineVerdict("suspicious")
	tests := []struct {
		name    string
		verdict []registry.Verdict
		want    registry.Verdict
		by      string
	}{
		{"all accept", []registry.Verdict{registry.AcceptVerdict(), registry.AcceptVerdict()}, registry.AcceptVerdict(), ""},
		{"quarantine beats accept", []registry.Verdict{registry.AcceptVerdict(), quar}, quar, "p1"},
		{"tempfail beats quarantine", []registry.Verdict{quar, temp}, temp, "p1"},
		{"reject beats tempfail", []registry.Verdict{temp, reject, quar}, reject, "p1"},
		{"first reject in config order wins", []registry.Verdict{reject2, reject}, reject2, "p0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plugins []stagePlugin
			for i, v := range tt.verdict {
				plugins = append(plugins, stagePlugin{name: fmt.Sprintf("p%d", i), fn: verdictPlugin(v)})
			}
			m := testManager(t, "", plugins...)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
			require.NoError(t, err)
			assert.Equal(t, tt.want, sr.Verdict)
			assert.Equal(t, tt.by, sr.DecidedBy)
		})
	}
}

func TestRejectEndsTheStageEarly(t *testing.T) {
	var laterRan atomic.Bool
	m := testManager(t, "",
		stagePlugin{name: "first", fn: verdictPlugin(registry.RejectVerdict(550, "5.7.1", "no"))},
		stagePlugin{name: "sibling", fn: verdictPlugin(registry.AcceptVerdict())},
		stagePlugin{name: "later", after: []string{"first"}, fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			laterRan.Store(true)
			return &registry.Result{}, nil
		}},
	)
	assert.Equal(t, [][]string{{"first", "sibling"}, {"later"}}, m.Waves(registry.PostReception))
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	assert.Equal(t, registry.Reject, sr.Verdict.Action)
	assert.Equal(t, []string{"later"}, sr.Skipped)
	assert.False(t, laterRan.Load())
	assert.Len(t, sr.Results, 2, "the rejecting wave's siblings still finish")
}

// Later waves see earlier waves' results (DMARC reads SPF and DKIM).
func TestLaterWaveSeesEarlierResults(t *testing.T) {
	type spf struct{ result string }
	m := testManager(t, "",
		stagePlugin{name: "reader", after: []string{"writer"}, fn: func(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
			s, ok := registry.Find[*spf](pc)
			if !ok {
				return nil, errors.New("no spf result")
			}
			return &registry.Result{Details: s.result}, nil
		}},
		stagePlugin{name: "writer", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return &registry.Result{Data: &spf{"pass"}}, nil
		}},
	)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	require.NoError(t, sr.Results[0].Err)
	assert.Equal(t, "pass", sr.Results[0].Details)
}

// Header additions come out in config order whatever order plugins finish in.
func TestHeaderOrderIsStable(t *testing.T) {
	var plugins []stagePlugin
	var names []string
	for i := range 6 {
		name := fmt.Sprintf("h%d", i)
		names = append(names, `"`+name+`"`)
		plugins = append(plugins, stagePlugin{name: name, fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			return &registry.Result{
				AddHeaders:    []registry.Field{{Name: "X-" + name, Value: "a"}, {Name: "X-" + name, Value: "b"}},
				RemoveHeaders: []registry.Removal{{Name: "X-Old-" + name, Index: -1}},
			}, nil
		}})
	}
	// Config order differs from registration order on purpose.
	order := []string{names[3], names[0], names[5], names[1], names[4], names[2]}
	m := testManager(t, "[plugins]\nplugins = ["+strings.Join(order, ",")+"]\n", plugins...)
	var first []registry.Field
	for run := range 1000 {
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
		require.NoError(t, err)
		if run == 0 {
			first = sr.AddHeaders
			require.Len(t, first, 12)
			assert.Equal(t, registry.Field{Name: "X-h3", Value: "a"}, first[0])
			assert.Equal(t, registry.Field{Name: "X-h3", Value: "b"}, first[1])
			assert.Equal(t, registry.Field{Name: "X-h2", Value: "b"}, first[11])
			assert.Equal(t, "X-Old-h3", sr.RemoveHeaders[0].Name)
			continue
		}
		if !assert.Equal(t, first, sr.AddHeaders, "run %d", run) {
			return
		}
	}
}

func TestOrderingCycleIsAStartupError(t *testing.T) {
	var regs []func()
	for _, p := range []struct {
		name          string
		after, before []string
	}{
		{"spf", []string{"dmarc"}, nil},
		{"dkim", nil, nil},
		{"dmarc", []string{"spf", "dkim"}, nil},
	} {
		regs = append(regs, module(registry.Module[struct{}, handlerFunc]{
			Name: p.name, Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception}, After: p.after,
			New: func(struct{}, registry.Host) (handlerFunc, error) {
				return verdictPlugin(registry.AcceptVerdict()), nil
			},
		}))
	}
	cfg, err := parseConfig(newCatalog(regs...), "t.toml", []byte(`[plugins]
plugins = ["spf", "dkim", "dmarc"]`))
	require.NoError(t, err)
	m := NewManager(cfg)
	err = m.LoadPlugins(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin ordering cycle at stage post-reception")
	assert.Regexp(t, `(spf -> dmarc -> spf|dmarc -> spf -> dmarc)`, err.Error())
	assert.Empty(t, m.Loaded(), "a failed load closes what it built")
}

func TestStagesRunOnlyTheirPlugins(t *testing.T) {
	var calls sync.Map
	rec := func(name string) handlerFunc {
		return func(_ context.Context, s registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
			calls.Store(name+"@"+s.String(), true)
			return &registry.Result{}, nil
		}
	}
	m := testManager(t, "[plugins]\nplugins = [\"pre\", \"both\"]\n[plugins.both]\nstages = [\"pre-queue\"]\n",
		stagePlugin{name: "pre", fn: rec("pre"), stages: []registry.Stage{registry.PreReception}},
		stagePlugin{name: "both", fn: rec("both"), stages: []registry.Stage{registry.PostReception, registry.PreQueue}},
	)
	for _, s := range registry.Stages() {
		_, err := m.ExecuteStage(context.Background(), s, testContext(t))
		require.NoError(t, err)
	}
	var got []string
	calls.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	assert.ElementsMatch(t, []string{"pre@pre-reception", "both@pre-queue"}, got)
}

func TestCancelledContextStopsTheStage(t *testing.T) {
	m := testManager(t, "", stagePlugin{name: "p", fn: verdictPlugin(registry.AcceptVerdict())})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.ExecuteStage(ctx, registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestPluginHonouringItsDeadlineIsMarkedTimedOut(t *testing.T) {
	m := testManager(t, "[plugins]\nplugins=[\"slow\"]\n[plugins.slow]\ntimeout = 0.02\n",
		stagePlugin{name: "slow", fn: func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
			<-ctx.Done()
			return nil, fmt.Errorf("waiting for daemon: %w", ctx.Err())
		}})
	start := time.Now()
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	assert.True(t, sr.Results[0].TimedOut)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestPluginsSeeTheProcessingContextInTheirContext(t *testing.T) {
	pcIn := testContext(t)
	m := testManager(t, "", stagePlugin{name: "p", fn: func(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
		got, ok := registry.ProcessingContextFrom(ctx)
		if !ok || got != pc {
			return nil, errors.New("no processing context in ctx")
		}
		return &registry.Result{}, nil
	}})
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pcIn)
	require.NoError(t, err)
	assert.NoError(t, sr.Results[0].Err)
	_, ok := registry.ProcessingContextFrom(context.Background())
	assert.False(t, ok)
}

type ender struct {
	handlerFunc
	ended chan *registry.ProcessingContext
	fail  bool
}

func (e *ender) EndSession(_ context.Context, pc *registry.ProcessingContext) error {
	e.ended <- pc
	if e.fail {
		panic("boom")
	}
	return nil
}

func TestEndSession(t *testing.T) {
	var regs []func()
	ends := map[string]*ender{}
	for _, name := range []string{"a", "b"} {
		e := &ender{handlerFunc: verdictPlugin(registry.AcceptVerdict()), ended: make(chan *registry.ProcessingContext, 1), fail: name == "b"}
		ends[name] = e
		regs = append(regs, module(registry.Module[struct{}, *ender]{Name: name, Types: []registry.PluginType{registry.PluginTypeRateLimit}, Stages: []registry.Stage{registry.PreReception},
			New: func(struct{}, registry.Host) (*ender, error) { return e, nil }}))
	}
	cfg, err := parseConfig(newCatalog(regs...), "t.toml", []byte("[plugins]\nplugins = [\"a\", \"b\"]\n"))
	require.NoError(t, err)
	m := NewManager(cfg)
	require.NoError(t, m.LoadPlugins(context.Background()))
	pc := testContext(t)
	err = m.EndSession(context.Background(), pc)
	assert.Same(t, pc, <-ends["a"].ended)
	assert.Same(t, pc, <-ends["b"].ended)
	var pe *PanicError
	require.ErrorAs(t, err, &pe, "a panicking EndSession is an error, not a crash")
	assert.Contains(t, err.Error(), "plugin b: end session")
}

func TestHostDefaults(t *testing.T) {
	h := withDefaults(registry.Host{Hostname: "mx.example.test"})
	assert.Equal(t, "mx.example.test", h.AuthservID)
	assert.NotNil(t, h.Resolver)
	assert.NotNil(t, h.Clock)
	assert.Equal(t, "relay.example", withDefaults(registry.Host{Hostname: "mx", AuthservID: "relay.example"}).AuthservID)
}

// Close waits for a stage in flight, and a closed manager refuses to run
// stages instead of running none (which would accept everything).
func TestCloseWaitsForStagesAndRefusesLaterOnes(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	m := testManager(t, "", stagePlugin{name: "slow", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
		close(started)
		<-release
		return &registry.Result{}, nil
	}})
	stageDone := make(chan error, 1)
	go func() {
		_, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
		stageDone <- err
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a stage was running")
	case <-time.After(50 * time.Millisecond): // a bounded wait for something that must not happen
	}
	close(release)
	require.NoError(t, <-stageDone)
	require.NoError(t, <-closed)

	_, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, m.LoadPlugins(context.Background()), ErrClosed)
	assert.NoError(t, m.Close(), "Close twice is fine")
}
