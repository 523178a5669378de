package pluginhost

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIdleWorkersBoundary(t *testing.T) {
	for _, n := range []int{0, 1, MaxIdleWorkers} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cfg, err := parseConfig(newCatalog(), "t.toml", fmt.Appendf(nil, "[plugins]\nidle_workers = %d\n", n))
			require.NoError(t, err)
			assert.Equal(t, n, cfg.IdleWorkers)
		})
	}
	cfg, err := parseConfig(newCatalog(), "t.toml", nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultIdleWorkers, cfg.IdleWorkers)
}

// barrierPlugins returns k plugins that all must be running at once to
// answer, so a stage of them needs k workers.
func barrierPlugins(k int) []stagePlugin {
	arrived := make(chan struct{}, k)
	var plugins []stagePlugin
	for i := range k {
		plugins = append(plugins, stagePlugin{name: fmt.Sprintf("p%d", i), fn: func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
			arrived <- struct{}{}
			for len(arrived) < k {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				default:
				}
			}
			return &registry.Result{}, nil
		}})
	}
	return plugins
}

// After a stage the workers it needed wait for the next, up to
// idle_workers of them; Close stops them all.
func TestWorkersStayUpToIdleWorkers(t *testing.T) {
	for _, tt := range []struct{ idle, want int }{{0, 0}, {2, 2}, {8, 4}} {
		t.Run(fmt.Sprint(tt.idle), func(t *testing.T) {
			m := testManager(t, fmt.Sprintf("[plugins]\nidle_workers = %d\nplugins = [\"p0\", \"p1\", \"p2\", \"p3\"]\n", tt.idle), barrierPlugins(4)...)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
			require.NoError(t, err)
			for _, r := range sr.Results {
				require.NoError(t, r.Err)
			}
			// A worker counts itself idle after it hands over its answer: wait for all of them.
			for i := 0; m.workers.idleCount() < tt.want && i < 1e6; i++ {
				runtime.Gosched()
			}
			assert.Equal(t, tt.want, m.workers.idleCount())
			require.NoError(t, m.Close())
			assert.Equal(t, 0, m.workers.idleCount(), "Close stops the idle workers")
		})
	}
}

// A worker abandoned in a hung plugin never takes another call: the next
// stage runs on another worker, while the hung one is still inside.
func TestAbandonedWorkerIsReplaced(t *testing.T) {
	hang, inside := make(chan struct{}), make(chan struct{})
	calls := 0
	m := testManager(t, "[plugins]\nidle_workers = 4\nplugins = [\"p\"]\n[plugins.p]\ntimeout = \"20ms\"\n",
		stagePlugin{name: "p", fn: func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
			calls++ // only the collector's sequencing orders these: the race detector checks no two calls overlap
			if calls == 1 {
				close(inside)
				<-hang // ignores its context
			}
			return &registry.Result{}, nil
		}})
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err)
	<-inside
	assert.True(t, sr.Results[0].TimedOut)
	for range 3 {
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
		require.NoError(t, err)
		require.NoError(t, sr.Results[0].Err, "a fresh worker answers while the first is hung")
	}
	done := make(chan error)
	go func() { done <- m.Close() }()
	require.NoError(t, <-done, "Close does not wait for the abandoned worker")
	close(hang)
}

// A plugin declaring its phases is not called, and leaves no result, at
// the other phases of pre-reception; other stages are not filtered, and an
// unknown phase runs every plugin.
func TestPhasesSkipPluginsWithNothingToDo(t *testing.T) {
	called := make(chan registry.Phase, 16)
	record := func(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
		called <- pc.Phase
		return &registry.Result{}, nil
	}
	all := []registry.Stage{registry.PreReception, registry.PostReception}
	m := testManager(t, "",
		stagePlugin{name: "at-mail", fn: record, stages: all, phases: []registry.Phase{registry.PhaseMail, registry.PhaseMessage}},
		stagePlugin{name: "always", fn: verdictPlugin(registry.AcceptVerdict()), stages: all},
	)
	tests := []struct {
		stage registry.Stage
		phase registry.Phase
		want  []string
	}{
		{registry.PreReception, registry.PhaseConnect, []string{"always"}},
		{registry.PreReception, registry.PhaseHelo, []string{"always"}},
		{registry.PreReception, registry.PhaseMail, []string{"at-mail", "always"}},
		{registry.PreReception, registry.PhaseRcpt, []string{"always"}},
		{registry.PreReception, registry.PhaseMessage, []string{"at-mail", "always"}},
		{registry.PreReception, registry.Phase(42), []string{"at-mail", "always"}},
		{registry.PostReception, registry.PhaseConnect, []string{"at-mail", "always"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.stage, tt.phase), func(t *testing.T) {
			pc := testContext(t)
			pc.Phase = tt.phase
			sr, err := m.ExecuteStage(context.Background(), tt.stage, pc)
			require.NoError(t, err)
			var got []string
			for _, r := range sr.Results {
				got = append(got, r.Plugin)
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, len(tt.want) == 2, len(called) == 1)
			for len(called) > 0 {
				<-called
			}
		})
	}
}

// ModuleInfo carries the phases a module declares.
func TestModuleInfoPhases(t *testing.T) {
	c := newCatalog(module(registry.Module[struct{}, handlerFunc]{Name: "at-rcpt", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreReception}, Phases: []registry.Phase{registry.PhaseRcpt},
		New: func(struct{}, registry.Host) (handlerFunc, error) {
			return verdictPlugin(registry.AcceptVerdict()), nil
		}}))
	e, ok := c.Lookup("at-rcpt")
	require.True(t, ok)
	assert.Equal(t, []registry.Phase{registry.PhaseRcpt}, infoOf(e).Phases)
}
