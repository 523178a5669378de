package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// ErrTimeout is wrapped by the error of a plugin cut off at its timeout.
var ErrTimeout = errors.New("plugin timed out")

// ErrClosed is returned by a Manager used after Close.
var ErrClosed = errors.New("plugin manager is closed")

// PanicError is the error of a plugin that panicked.
type PanicError struct {
	Plugin string
	Value  any
	Stack  []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("plugin %s panicked: %v", e.Plugin, e.Value) }

// StageResult is the merged outcome of one stage.
type StageResult struct {
	Stage registry.Stage
	// Verdict is the most severe verdict of any plugin (reject > tempfail >
	// quarantine > accept); among equals, the first in config order.
	Verdict registry.Verdict
	// DecidedBy names the plugin instance whose verdict is Verdict
	// ("contentfilter/strict"; "" for accept).
	DecidedBy string
	// Score is the sum of the plugins' scores.
	Score float64
	// Results holds each plugin that ran, in config order.
	Results []*registry.Result
	// Skipped lists plugin instances of later waves that did not run because an
	// earlier wave rejected the message.
	Skipped []string
	// AddHeaders and RemoveHeaders collect the plugins' header changes in
	// config order (each plugin's own changes in the order it gave them).
	AddHeaders    []registry.Field
	RemoveHeaders []registry.Removal
}

// ExecuteStage runs the plugins of stage on pc: each dependency wave in
// turn, the plugins of a wave concurrently (at most MaxConcurrency at a
// time), each under its own timeout. A plugin's error, timeout or panic
// becomes its on_error verdict and never stops its siblings; a reject ends
// the stage after the wave that produced it. The returned error is non-nil
// only for a missing message, a cancelled ctx or a closed Manager: never
// because of what a plugin did.
func (m *Manager) ExecuteStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*StageResult, error) {
	if pc == nil || pc.Message == nil {
		return nil, errors.New("ExecuteStage: no message in the processing context")
	}
	if stage < 0 || int(stage) >= numStages {
		return nil, fmt.Errorf("ExecuteStage: unknown stage %d", int(stage))
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("stage %s: %w", stage, ErrClosed)
	}
	start := time.Now()
	waves := m.waves[stage]
	if pw, ok := m.preWaves[pc.Phase]; ok && stage == registry.PreReception {
		waves = pw // without the plugins that have nothing to do at this phase (an unknown phase runs them all)
	}
	sr := newStageResult(stage, m.sizes[stage])
	if len(waves) > 0 {
		ctx = registry.WithProcessingContext(ctx, pc)
	}
	for i := 0; i < len(waves); {
		if err := ctx.Err(); err != nil {
			return sr, fmt.Errorf("stage %s: %w", stage, err)
		}
		first := len(sr.Results)
		now := start // the first wave starts when the stage does: one clock read fewer
		if i > 0 {
			now = time.Time{}
		}
		if n := singleRun(waves, i); n > 1 {
			var ran int
			sr.Results, ran = m.runChain(ctx, stage, pc, waves[i:i+n], sr.Results, now)
			i += ran
		} else {
			sr.Results = m.runWave(ctx, stage, pc, waves[i], sr.Results, now)
			i++
		}
		rejected := false
		for _, r := range sr.Results[first:] {
			rejected = rejected || r.Verdict.Action == registry.Reject
		}
		if rejected {
			for _, later := range waves[i:] {
				for _, inst := range later {
					sr.Skipped = append(sr.Skipped, inst.name)
				}
			}
			break
		}
	}
	m.merge(sr)
	if len(waves) > 0 {
		m.observer.ObserveStage(sr, time.Since(start))
	}
	return sr, nil
}

// newStageResult returns a StageResult with room for n results, made in
// one allocation when n is small (most stages).
func newStageResult(stage registry.Stage, n int) *StageResult {
	if n <= smallStage {
		a := &struct {
			sr  StageResult
			res [smallStage]*registry.Result
		}{}
		a.sr.Stage, a.sr.Results = stage, a.res[:0:n]
		return &a.sr
	}
	return &StageResult{Stage: stage, Results: make([]*registry.Result, 0, n)}
}

const smallStage = 4

// runWave runs the plugins of one wave and appends their results to out
// in wave (config) order.
//
// Every plugin runs on a worker of the Manager's pool (see workers), never
// on the calling goroutine, so one that ignores its context can be
// abandoned at its deadline instead of waited for. At most max_concurrency
// run at once: the first max_concurrency start together, each later one as
// an earlier one answers or is abandoned. Plugins started together share
// one deadline context per distinct timeout; the calling goroutine collects
// the answers.
//
// now, if not zero, is the time to count the first plugins' durations from.
func (m *Manager) runWave(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, wave []*instance, out []*registry.Result, now time.Time) []*registry.Result {
	type deadline struct {
		timeout time.Duration
		at      time.Time
		ctx     *deadlineCtx // ended with m.deadlines.end
		batch   int          // deadlines are shared only by plugins started in the same batch
	}
	var (
		n         = len(wave)
		st        = getWaveState(n)
		slots     = st.slots
		done      = st.done
		dbuf      [2]deadline
		deadlines = dbuf[:0] // one per distinct timeout and batch
		clean     = true     // every answer came through done: no worker still holds st
		next      = 0
		running   = 0
		batch     = 0
	)
	for pending := n; pending > 0; {
		if running < m.cfg.MaxConcurrency && next < n {
			if now.IsZero() || batch > 0 {
				now = time.Now()
			}
			for ; running < m.cfg.MaxConcurrency && next < n; next, running = next+1, running+1 {
				inst, s := wave[next], &slots[next]
				g := -1
				for i := range deadlines {
					if deadlines[i].batch == batch && deadlines[i].timeout == inst.settings.Timeout {
						g = i
						break
					}
				}
				if g < 0 {
					tctx := m.deadlines.start(ctx, now.Add(inst.settings.Timeout), done)
					at, _ := tctx.Deadline()
					g = len(deadlines)
					deadlines = append(deadlines, deadline{timeout: inst.settings.Timeout, at: at, ctx: tctx, batch: batch})
				}
				s.start, s.deadline = now, g
				s.call = call{inst: inst, ctx: deadlines[g].ctx, stage: stage, pc: pc, i: next, done: done}
				m.workers.run(&s.call)
			}
			batch++
		}
		// Wait for the next answer or a deadline (or the caller's
		// context) ending: both come through done.
		i := <-done
		if i >= 0 {
			if s := &slots[i]; s.res == nil {
				s.res = m.finish(ctx, deadlines[s.deadline].ctx, stage, pc, wave[i], s.call.res, s.start)
				pending--
				running--
			}
			continue
		}
		// A deadline context ended (or a stale word from a previous wave
		// of this state: then nothing is due and the loop waits again).
		for i := range next {
			if s := &slots[i]; s.res == nil && deadlines[s.deadline].ctx.Err() != nil {
				m.workers.abandon(&s.call)
				clean = false
				s.res = m.finish(ctx, deadlines[s.deadline].ctx, stage, pc, wave[i], &registry.Result{Err: deadlines[s.deadline].ctx.Err()}, s.start)
				pending--
				running--
			}
		}
	}
	for _, d := range deadlines {
		m.deadlines.end(d.ctx)
	}
	for i := range slots {
		out = append(out, slots[i].res)
	}
	if clean {
		putWaveState(st)
	}
	return out
}

// waveSlot is one plugin's call in a wave and what the collector knows of it.
type waveSlot struct {
	call
	start    time.Time
	deadline int // index in the wave's deadlines
	res      *registry.Result
}

// waveState is what runWave needs for a wave of plugins, kept for reuse
// by the next wave of that size unless a worker may still touch it (a
// plugin was cut off at its deadline: its worker may still answer).
type waveState struct {
	slots []waveSlot
	// done receives each slot's index as its answer comes, and expired
	// when a deadline context ends; buffered for every slot and one
	// expired, so a late answer never blocks a worker.
	done chan int
}

// waveStates pools waveStates by wave size, for sizes up to len-1.
var waveStates [17]sync.Pool

func getWaveState(n int) *waveState {
	if n < len(waveStates) {
		if st, ok := waveStates[n].Get().(*waveState); ok {
			return st
		}
	}
	return &waveState{slots: make([]waveSlot, n), done: make(chan int, n+1)}
}

func putWaveState(st *waveState) {
	n := len(st.slots)
	if n >= len(waveStates) {
		return
	}
	clear(st.slots) // drop the results and contexts
	waveStates[n].Put(st)
}

// finish completes a plugin's result: names the instance in its error
// (here alone: the plugin's own error never says who it is, so messages
// never read "plugin spf: plugin spf: ..."), marks a timeout, replaces a
// failed plugin's output with its on_error verdict and the removal of the
// fields it owns (registry.HeaderOwner), counts and records it.
func (m *Manager) finish(ctx, tctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, inst *instance, res *registry.Result, start time.Time) *registry.Result {
	switch {
	case res.Err == nil:
	case res.Panicked && isPanicError(res.Err): // names the plugin itself
	case deadlinePassed(tctx) && ctx.Err() == nil:
		res.TimedOut = true
		res.Err = fmt.Errorf("plugin %s: %w after %v: %w", inst.name, ErrTimeout, inst.settings.Timeout, res.Err)
	default:
		res.Err = fmt.Errorf("plugin %s: %w", inst.name, res.Err)
	}
	res.Plugin, res.Stage, res.Duration = inst.name, stage, time.Since(start)
	if res.Err != nil {
		// A failed plugin's partial output is not trusted: only its on_error
		// verdict counts, and the fields it owns go (a sender's forged
		// verdict must not pass for ours because the daemon was down).
		*res = registry.Result{Plugin: res.Plugin, Stage: stage, Duration: res.Duration, Err: res.Err,
			TimedOut: res.TimedOut, Panicked: res.Panicked, Verdict: onErrorVerdict(inst.settings.OnError),
			RemoveHeaders: inst.failureRemovals()}
	}
	inst.count(res)
	m.observer.ObserveCall(res)
	catalog.RecordResult(pc, res, inst.order)
	return res
}

// isPanicError is errors.As for a *PanicError, apart so that finish does
// not allocate the target on every call.
func isPanicError(err error) bool {
	var pe *PanicError
	return errors.As(err, &pe)
}

// call runs the plugin's handler and returns its result, or an error
// result for the panic it raised.
func (inst *instance) call(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (res *registry.Result) {
	defer func() {
		if v := recover(); v != nil {
			res = &registry.Result{Err: &PanicError{Plugin: inst.name, Value: v, Stack: debug.Stack()}, Panicked: true}
		}
	}()
	res, err := inst.handler.HandleStage(ctx, stage, pc)
	if err != nil || res == nil {
		if err == nil {
			err = errors.New("returned no result and no error")
		}
		res = &registry.Result{Err: err}
	}
	return res
}

// deadlinePassed reports whether ctx's deadline has come, even if its timer
// has not fired yet: a plugin whose own I/O deadline equals ctx's can fail
// a few microseconds earlier, and that is still a timeout.
func deadlinePassed(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func onErrorVerdict(a registry.Action) registry.Verdict {
	switch a {
	case registry.TempFail:
		return registry.TempFailVerdict(451, "4.3.0", "Message checks temporarily unavailable, try again later")
	case registry.Reject:
		return registry.RejectVerdict(554, "5.3.0", "Message could not be checked")
	case registry.Quarantine:
		return registry.QuarantineVerdict("Message could not be checked")
	}
	return registry.AcceptVerdict()
}

func (inst *instance) count(r *registry.Result) {
	s := &inst.stats
	s.calls.Add(1)
	s.nanos.Add(int64(r.Duration))
	if r.Err != nil {
		s.errors.Add(1)
	}
	if r.TimedOut {
		s.timeouts.Add(1)
	}
	if r.Panicked {
		s.panics.Add(1)
	}
	if r.Verdict.Action == registry.Reject {
		s.rejects.Add(1)
	}
}

// merge fills the stage's verdict, score and header changes from its
// results, sorted into config order first so the outcome never depends on
// which plugin finished first.
func (m *Manager) merge(sr *StageResult) {
	order := func(r *registry.Result) int { return m.byName[r.Plugin].order }
	// Insertion sort: a stage has few plugins and the waves are nearly sorted.
	for i := 1; i < len(sr.Results); i++ {
		for j := i; j > 0 && order(sr.Results[j]) < order(sr.Results[j-1]); j-- {
			sr.Results[j], sr.Results[j-1] = sr.Results[j-1], sr.Results[j]
		}
	}
	for _, r := range sr.Results {
		if r.Verdict.Action > sr.Verdict.Action {
			sr.Verdict, sr.DecidedBy = r.Verdict, r.Plugin
		}
		sr.Score += r.Score
		sr.AddHeaders = append(sr.AddHeaders, r.AddHeaders...)
		sr.RemoveHeaders = append(sr.RemoveHeaders, r.RemoveHeaders...)
	}
}
