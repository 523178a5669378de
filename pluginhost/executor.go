package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
	"golang.org/x/sync/errgroup"
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
	sr := &StageResult{Stage: stage}
	start := time.Now()
	waves := m.waves[stage]
	if len(waves) > 0 {
		ctx = registry.WithProcessingContext(ctx, pc)
	}
	for i, wave := range waves {
		if err := ctx.Err(); err != nil {
			return sr, fmt.Errorf("stage %s: %w", stage, err)
		}
		results := m.runWave(ctx, stage, pc, wave)
		sr.Results = append(sr.Results, results...)
		rejected := false
		for _, r := range results {
			rejected = rejected || r.Verdict.Action == registry.Reject
		}
		if rejected {
			for _, later := range waves[i+1:] {
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

// runWave runs the plugins of one wave and returns their results in wave
// (config) order.
//
// Every plugin runs in a goroutine of its own, so one that ignores its
// context can be abandoned at its deadline instead of waited for. A wave
// that fits under max_concurrency starts all its plugins at once, and the
// calling goroutine collects them, with one deadline context per distinct
// timeout. A larger wave is bounded by an errgroup with SetLimit, each of
// its goroutines waiting for one plugin.
func (m *Manager) runWave(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, wave []*instance) []*registry.Result {
	switch {
	case len(wave) == 1:
		return []*registry.Result{m.runOne(ctx, stage, pc, wave[0])}
	case len(wave) <= m.cfg.MaxConcurrency:
		return m.runAll(ctx, stage, pc, wave)
	}
	results := make([]*registry.Result, len(wave))
	var g errgroup.Group
	g.SetLimit(m.cfg.MaxConcurrency)
	for i, inst := range wave {
		g.Go(func() error {
			results[i] = m.runOne(ctx, stage, pc, inst)
			return nil // a plugin's failure is its result, never a reason to cancel the others
		})
	}
	_ = g.Wait()
	return results
}

// runAll starts every plugin of wave at once and waits for each until it
// answers or its deadline passes.
func (m *Manager) runAll(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, wave []*instance) []*registry.Result {
	start := time.Now()
	type deadline struct {
		timeout time.Duration
		ctx     context.Context
	}
	var deadlines []deadline // one per distinct timeout, in first-use order
	group := make([]int, len(wave))
	for i, inst := range wave {
		g := slices.IndexFunc(deadlines, func(d deadline) bool { return d.timeout == inst.settings.Timeout })
		if g < 0 {
			tctx, cancel := context.WithTimeout(ctx, inst.settings.Timeout)
			defer cancel()
			g = len(deadlines)
			deadlines = append(deadlines, deadline{inst.settings.Timeout, tctx})
		}
		group[i] = g
	}

	type outcome struct {
		i   int
		res *registry.Result
	}
	done := make(chan outcome, len(wave)) // buffered: an abandoned plugin can still finish and exit
	for i, inst := range wave {
		go func() { done <- outcome{i, inst.call(deadlines[group[i]].ctx, stage, pc)} }()
	}

	results := make([]*registry.Result, len(wave))
	for pending := len(wave); pending > 0; {
		// Wait for the next answer or the earliest deadline still awaited.
		var next deadline
		for i, r := range results {
			if d := deadlines[group[i]]; r == nil && (next.ctx == nil || d.timeout < next.timeout) {
				next = d
			}
		}
		select {
		case o := <-done:
			if results[o.i] == nil {
				results[o.i] = m.finish(ctx, deadlines[group[o.i]].ctx, stage, pc, wave[o.i], o.res, start)
				pending--
			}
		case <-next.ctx.Done():
			for i, r := range results {
				if tctx := deadlines[group[i]].ctx; r == nil && tctx.Err() != nil {
					results[i] = m.finish(ctx, tctx, stage, pc, wave[i], &registry.Result{Err: tctx.Err()}, start)
					pending--
				}
			}
		}
	}
	return results
}

// runOne runs one plugin under its own timeout in a goroutine of its own,
// and waits for it until it answers or the deadline passes.
func (m *Manager) runOne(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, inst *instance) *registry.Result {
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, inst.settings.Timeout)
	defer cancel()
	done := make(chan *registry.Result, 1) // buffered: an abandoned plugin can still finish and exit
	go func() { done <- inst.call(tctx, stage, pc) }()

	var res *registry.Result
	select {
	case res = <-done:
	case <-tctx.Done():
		res = &registry.Result{Err: tctx.Err()}
	}
	return m.finish(ctx, tctx, stage, pc, inst, res, start)
}

// finish completes a plugin's result: names the instance in its error
// (here alone: the plugin's own error never says who it is, so messages
// never read "plugin spf: plugin spf: ..."), marks a timeout, replaces a
// failed plugin's output with its on_error verdict, counts and records it.
func (m *Manager) finish(ctx, tctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, inst *instance, res *registry.Result, start time.Time) *registry.Result {
	var pe *PanicError
	switch {
	case res.Err == nil:
	case res.Panicked && errors.As(res.Err, &pe): // names the plugin itself
	case deadlinePassed(tctx) && ctx.Err() == nil:
		res.TimedOut = true
		res.Err = fmt.Errorf("plugin %s: %w after %v: %w", inst.name, ErrTimeout, inst.settings.Timeout, res.Err)
	default:
		res.Err = fmt.Errorf("plugin %s: %w", inst.name, res.Err)
	}
	res.Plugin, res.Stage, res.Duration = inst.name, stage, time.Since(start)
	if res.Err != nil {
		// A failed plugin's partial output is not trusted: only its on_error verdict counts.
		*res = registry.Result{Plugin: res.Plugin, Stage: stage, Duration: res.Duration, Err: res.Err,
			TimedOut: res.TimedOut, Panicked: res.Panicked, Verdict: onErrorVerdict(inst.settings.OnError)}
	}
	inst.count(res)
	m.observer.ObserveCall(res)
	catalog.RecordResult(pc, res, inst.order)
	return res
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
