package registry

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// ErrTimeout is wrapped by the error of a plugin cut off at its timeout.
var ErrTimeout = errors.New("plugin timed out")

// PanicError is the error of a plugin that panicked.
type PanicError struct {
	Plugin string
	Value  any
	Stack  []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("plugin %s panicked: %v", e.Plugin, e.Value) }

// StageResult is the merged outcome of one stage.
type StageResult struct {
	Stage Stage
	// Verdict is the most severe verdict of any plugin (reject > tempfail >
	// quarantine > accept); among equals, the first in config order.
	Verdict Verdict
	// DecidedBy names the plugin whose verdict is Verdict ("" for accept).
	DecidedBy string
	// Score is the sum of the plugins' scores.
	Score float64
	// Results holds each plugin that ran, in config order.
	Results []*Result
	// Skipped lists plugins of later waves that did not run because an
	// earlier wave rejected the message.
	Skipped []string
	// AddHeaders and RemoveHeaders collect the plugins' header changes in
	// config order (each plugin's own changes in the order it gave them).
	AddHeaders    []Field
	RemoveHeaders []Removal
}

// ExecuteStage runs the plugins of stage on pc: each dependency wave in
// turn, the plugins of a wave concurrently (at most MaxConcurrency at a
// time), each under its own timeout. A plugin's error, timeout or panic
// becomes its on_error verdict and never stops its siblings; a reject ends
// the stage after the wave that produced it. The returned error is non-nil
// only for a nil context or a cancelled ctx.
func (m *Manager) ExecuteStage(ctx context.Context, stage Stage, pc *ProcessingContext) (*StageResult, error) {
	if pc == nil || pc.Message == nil {
		return nil, errors.New("ExecuteStage: no message in the processing context")
	}
	if stage < 0 || stage >= numStages {
		return nil, fmt.Errorf("ExecuteStage: unknown stage %d", int(stage))
	}
	sr := &StageResult{Stage: stage}
	waves := m.waves[stage]
	if len(waves) > 0 {
		ctx = WithProcessingContext(ctx, pc)
	}
	for i, wave := range waves {
		if err := ctx.Err(); err != nil {
			return sr, fmt.Errorf("stage %s: %w", stage, err)
		}
		results := m.runWave(ctx, stage, pc, wave)
		sr.Results = append(sr.Results, results...)
		rejected := false
		for _, r := range results {
			rejected = rejected || r.Verdict.Action == Reject
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
	return sr, nil
}

// runWave runs the plugins of one wave and returns their results in wave
// (config) order.
func (m *Manager) runWave(ctx context.Context, stage Stage, pc *ProcessingContext, wave []*instance) []*Result {
	results := make([]*Result, len(wave))
	if len(wave) == 1 {
		results[0] = m.runOne(ctx, nil, stage, pc, wave[0])
		return results
	}
	// When the whole wave starts at once, plugins with equal timeouts share
	// one deadline context: one timer for the wave instead of one each.
	var shared []timeoutCtx
	if len(wave) <= m.cfg.MaxConcurrency {
		for _, inst := range wave {
			if !slices.ContainsFunc(shared, func(t timeoutCtx) bool { return t.timeout == inst.settings.Timeout }) {
				tctx, cancel := context.WithTimeout(ctx, inst.settings.Timeout)
				defer cancel()
				shared = append(shared, timeoutCtx{inst.settings.Timeout, tctx})
			}
		}
	}
	var g errgroup.Group
	g.SetLimit(m.cfg.MaxConcurrency)
	for i, inst := range wave {
		var tctx context.Context
		for _, t := range shared {
			if t.timeout == inst.settings.Timeout {
				tctx = t.ctx
			}
		}
		g.Go(func() error {
			results[i] = m.runOne(ctx, tctx, stage, pc, inst)
			return nil // a plugin's failure is its result, never a reason to cancel the others
		})
	}
	_ = g.Wait()
	return results
}

type timeoutCtx struct {
	timeout time.Duration
	ctx     context.Context
}

// runOne runs one plugin under its timeout (tctx, or a context of its own
// when tctx is nil) in a goroutine of its own, so a plugin that ignores its
// context is abandoned at the deadline rather than waited for.
func (m *Manager) runOne(ctx, tctx context.Context, stage Stage, pc *ProcessingContext, inst *instance) *Result {
	start := time.Now()
	if tctx == nil {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, inst.settings.Timeout)
		defer cancel()
	}
	done := make(chan *Result, 1) // buffered: an abandoned plugin can still finish and exit
	go inst.call(tctx, stage, pc, done)

	var res *Result
	select {
	case res = <-done:
	case <-tctx.Done():
		res = &Result{Err: fmt.Errorf("plugin %s: %w", inst.name, tctx.Err())}
	}
	if res.Err != nil && deadlinePassed(tctx) && ctx.Err() == nil {
		res.TimedOut = true
		res.Err = fmt.Errorf("plugin %s: %w after %v: %w", inst.name, ErrTimeout, inst.settings.Timeout, res.Err)
	}
	res.Plugin, res.Stage, res.Duration = inst.name, stage, time.Since(start)
	if res.Err != nil {
		// A failed plugin's partial output is not trusted: only its on_error verdict counts.
		*res = Result{Plugin: res.Plugin, Stage: stage, Duration: res.Duration, Err: res.Err,
			TimedOut: res.TimedOut, Panicked: res.Panicked, Verdict: onErrorVerdict(inst.settings.OnError)}
	}
	inst.count(res)
	pc.record(res)
	return res
}

// call runs the plugin's handler and sends its result, or the panic it
// raised, to done.
func (inst *instance) call(ctx context.Context, stage Stage, pc *ProcessingContext, done chan<- *Result) {
	defer func() {
		if v := recover(); v != nil {
			done <- &Result{Err: &PanicError{Plugin: inst.name, Value: v, Stack: debug.Stack()}, Panicked: true}
		}
	}()
	res, err := inst.handler.HandleStage(ctx, stage, pc)
	if err != nil || res == nil {
		if err == nil {
			err = errors.New("returned no result and no error")
		}
		res = &Result{Err: fmt.Errorf("plugin %s: %w", inst.name, err)}
	}
	done <- res
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

func onErrorVerdict(a Action) Verdict {
	switch a {
	case TempFail:
		return TempFailVerdict(451, "4.3.0", "Message checks temporarily unavailable, try again later")
	case Reject:
		return RejectVerdict(554, "5.3.0", "Message could not be checked")
	case Quarantine:
		return QuarantineVerdict("Message could not be checked")
	}
	return AcceptVerdict()
}

func (inst *instance) count(r *Result) {
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
	if r.Verdict.Action == Reject {
		s.rejects.Add(1)
	}
}

// merge fills the stage's verdict, score and header changes from its
// results, sorted into config order first so the outcome never depends on
// which plugin finished first.
func (m *Manager) merge(sr *StageResult) {
	order := func(r *Result) int { return m.byName[r.Plugin].order }
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
