package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// chainOf returns n plugins c0..c(n-1), each after the one before, so each
// is a wave of its own and the executor runs them as one chain. fn gives
// plugin i's handler.
func chainOf(n int, fn func(i int) handlerFunc) []stagePlugin {
	var plugins []stagePlugin
	for i := range n {
		p := stagePlugin{name: fmt.Sprintf("c%d", i), fn: fn(i)}
		if i > 0 {
			p.after = []string{fmt.Sprintf("c%d", i-1)}
		}
		plugins = append(plugins, p)
	}
	return plugins
}

// step is what each plugin of a chain records: its place, and the results
// it found in the processing context.
type step struct{ i, seen int }

func recordingChain(n int, ran *atomic.Int32) func(int) handlerFunc {
	return func(i int) handlerFunc {
		return func(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
			ran.Add(1)
			return &registry.Result{Data: &step{i: i, seen: len(registry.FindAll[*step](pc))}}, nil
		}
	}
}

func TestChainRunsInOrderAndEachSeesTheResultsBefore(t *testing.T) {
	var ran atomic.Int32
	m := testManager(t, "", chainOf(4, recordingChain(4, &ran))...)
	require.Equal(t, [][]string{{"c0"}, {"c1"}, {"c2"}, {"c3"}}, m.Waves(registry.PostReception))
	for range 3 { // the chain's state is reused between stages
		ran.Store(0)
		pc := testContext(t)
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
		require.NoError(t, err)
		require.Len(t, sr.Results, 4)
		for i, r := range sr.Results {
			require.NoError(t, r.Err)
			assert.Equal(t, fmt.Sprintf("c%d", i), r.Plugin)
			assert.Equal(t, &step{i: i, seen: i}, r.Data, "each plugin sees every earlier one's result")
		}
		assert.Equal(t, int32(4), ran.Load())
		assert.Len(t, registry.FindAll[*step](pc), 4)
	}
}

// A plugin that ignores its context in the middle of a chain is cut off at
// its own timeout; the plugins after it still run, and see what came before.
func TestChainPluginCutOffAtItsTimeoutTheRestRuns(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	var ran atomic.Int32
	record := recordingChain(4, &ran)
	m := testManager(t, `
[plugins]
plugins = ["c0", "c1", "c2", "c3"]
[plugins.c1]
timeout = "50ms"
on_error = "tempfail"
`, chainOf(4, func(i int) handlerFunc {
		if i == 1 {
			return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
				<-hang // ignores its context on purpose
				return &registry.Result{}, nil
			}
		}
		return record(i)
	})...)
	for range 2 { // the abandoned worker is replaced
		ran.Store(0)
		start := time.Now()
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
		require.NoError(t, err)
		assert.Less(t, time.Since(start), 5*time.Second)
		require.Len(t, sr.Results, 4)
		assert.True(t, sr.Results[1].TimedOut)
		assert.EqualError(t, sr.Results[1].Err, "plugin c1: plugin timed out after 50ms: context deadline exceeded")
		assert.Equal(t, registry.TempFail, sr.Verdict.Action)
		assert.Equal(t, "c1", sr.DecidedBy)
		assert.Equal(t, &step{i: 2, seen: 1}, sr.Results[2].Data)
		assert.Equal(t, &step{i: 3, seen: 2}, sr.Results[3].Data)
		assert.Equal(t, int32(3), ran.Load())
	}
	assert.Equal(t, int64(2), m.Stats()[1].Timeouts)
}

func TestChainRejectSkipsTheRest(t *testing.T) {
	var ran atomic.Int32
	record := recordingChain(4, &ran)
	m := testManager(t, "", chainOf(4, func(i int) handlerFunc {
		if i == 1 {
			return verdictPlugin(registry.RejectVerdict(550, "5.7.1", "no"))
		}
		return record(i)
	})...)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	assert.Equal(t, registry.Reject, sr.Verdict.Action)
	assert.Len(t, sr.Results, 2)
	assert.Equal(t, []string{"c2", "c3"}, sr.Skipped)
	assert.Equal(t, int32(1), ran.Load())
}

func TestChainPanicBecomesAnErrorTheRestRuns(t *testing.T) {
	var ran atomic.Int32
	record := recordingChain(3, &ran)
	m := testManager(t, "", chainOf(3, func(i int) handlerFunc {
		if i == 0 {
			return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
				panic("boom")
			}
		}
		return record(i)
	})...)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	require.Len(t, sr.Results, 3)
	assert.True(t, sr.Results[0].Panicked)
	assert.EqualError(t, sr.Results[0].Err, "plugin c0 panicked: boom")
	assert.Equal(t, int32(2), ran.Load())
}

// A caller whose context ends during a chain gets its error, and the
// plugins after the one running then do not start.
func TestChainStopsWhenTheCallerGoesAway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran atomic.Int32
	record := recordingChain(3, &ran)
	m := testManager(t, "", chainOf(3, func(i int) handlerFunc {
		if i == 0 {
			return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
				cancel()
				return &registry.Result{}, nil
			}
		}
		return record(i)
	})...)
	_, err := m.ExecuteStage(ctx, registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, ran.Load())
}

// A caller whose context ends while a chain's plugin ignores it gets its
// answer at once, not when the plugin returns.
func TestChainAbandonsAPluginWhenTheCallerGoesAway(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	started := make(chan struct{})
	m := testManager(t, "", chainOf(2, func(i int) handlerFunc {
		return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			close(started)
			<-hang
			return &registry.Result{}, nil
		}
	})...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := m.ExecuteStage(ctx, registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, context.Canceled)
}

// runChain with a context that is already over: the first step's deadline
// word comes before the step is published as running, and must not be
// lost (the collector would wait for a plugin that never returns).
func TestChainDeadlineWordBeforeTheStepRuns(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	m := testManager(t, "", chainOf(2, func(int) handlerFunc {
		return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			<-hang
			return &registry.Result{}, nil
		}
	})...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pc := testContext(t)
	done := make(chan []*registry.Result)
	go func() {
		out, ran := m.runChain(ctx, registry.PostReception, pc, m.waves[registry.PostReception], nil, time.Now())
		assert.Equal(t, 1, ran)
		done <- out
	}()
	select {
	case out := <-done:
		require.Len(t, out, 1)
		assert.True(t, errors.Is(out[0].Err, context.Canceled), out[0].Err)
	case <-time.After(5 * time.Second):
		t.Fatal("runChain did not return for a cancelled context")
	}
}

// Close waits for a chain running on a worker, as for any plugin call.
func TestCloseWaitsForARunningChain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var finished atomic.Bool
	m := testManager(t, "", chainOf(2, func(i int) handlerFunc {
		return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			if i == 1 {
				close(started)
				<-release
				finished.Store(true)
			}
			return &registry.Result{}, nil
		}
	})...)
	go func() {
		_, _ = m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	}()
	<-started
	closed := make(chan struct{})
	go func() {
		m.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a chain's plugin was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	assert.True(t, finished.Load())
}

// A step whose deadline comes at once, many times over: its word may come
// between the step's deadline context being made and the step being
// published as running, and read then by the collector (and passed over);
// the worker must say it again or the collector waits on a hung plugin.
func TestChainDeadlineAtOnce(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	m := testManager(t, `
[plugins]
plugins = ["c0", "c1"]
[plugins.c1]
timeout = "1ns"
`, chainOf(2, func(i int) handlerFunc {
		if i == 1 {
			return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
				<-hang
				return &registry.Result{}, nil
			}
		}
		return verdictPlugin(registry.AcceptVerdict())
	})...)
	done := make(chan error)
	go func() {
		for range 2000 {
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
			if err == nil && (len(sr.Results) != 2 || !sr.Results[1].TimedOut) {
				err = fmt.Errorf("results %+v", sr.Results)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("a stage waited on a plugin past its deadline")
	}
}

// begin's contract, white-box: a step whose deadline context is over when
// it is published leaves a word on done sent after the publishing, even if
// the collector read the one its context sent before (here: drained).
func TestChainBeginSaysAnEarlyDeadlineAgain(t *testing.T) {
	m := testManager(t, "", chainOf(2, func(int) handlerFunc { return verdictPlugin(registry.AcceptVerdict()) })...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := getChain(2)
	ch.m, ch.ctx, ch.waves = m, ctx, m.waves[registry.PostReception]
	ch.begin(0, time.Now())
	require.Equal(t, stepState(0, running), ch.state.Load())
	require.Equal(t, expired, <-ch.done, "the context's own word")
	select {
	case w := <-ch.done:
		assert.Equal(t, expired, w)
	default:
		t.Fatal("no word after the step was published: a collector that read the first one early would wait forever")
	}
	m.deadlines.end(ch.steps[0].ctx)
}
