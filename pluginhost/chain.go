package pluginhost

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elemta/elemta/registry"
)

// A chain is a run of consecutive waves of one plugin each (dkim, then
// dmarc, then authres), run one after another on one worker instead of
// handed to a worker and back once per wave. Each hand-off readies a
// goroutine, and when a core is idle the scheduler wakes a thread for it:
// on a virtual machine whose idle CPUs halt, that wake-up costs several
// microseconds each way. A chain pays it once for the run.
//
// The guarantees are a wave's: each plugin has its own deadline, from its
// own start; one that overruns it is abandoned (the collector takes the
// chain back, finishes that plugin as timed out and runs the waves left
// as usual); a reject ends the chain after the plugin that gave it; a
// cancelled context ends it before the next plugin. The worker merges each
// result into the processing context before the next plugin runs, as the
// collector does between waves, so a later plugin reads the same results.
type chain struct {
	call  call // what the worker is handed: call.chain is this chain
	m     *Manager
	ctx   context.Context
	stage registry.Stage
	pc    *registry.ProcessingContext
	waves [][]*instance // of one plugin each
	steps []chainStep
	// state is the step being run (step<<2) and where it is (running,
	// finished, abandoned: the states of a call). The worker moves it
	// between steps; the collector only ever moves running to abandoned.
	state atomic.Int64
	// ran is how many steps have a final result; written by the worker
	// before it sends chainDone.
	ran int
	// done receives chainDone from the worker when the chain ends, and
	// expired when a step's deadline context ends (or a stale word from
	// an earlier chain of this state: the collector checks the state).
	done chan int
}

// chainStep is one plugin's call in a chain. The worker writes it before
// it publishes the step as running.
type chainStep struct {
	ctx   *deadlineCtx // ended with Manager.deadlines.end
	start time.Time
	res   *registry.Result
}

// chainDone is what the worker sends when the chain has ended.
const chainDone = -2

func stepState(step int, s int32) int64 { return int64(step)<<2 | int64(s) }

// singleRun is how many waves from i on have one plugin each.
func singleRun(waves [][]*instance, i int) int {
	n := 0
	for i+n < len(waves) && len(waves[i+n]) == 1 {
		n++
	}
	return n
}

// runChain runs waves, of one plugin each, on one worker and appends
// their results to out in order. It returns how many of them ran: fewer
// than len(waves) when one rejected, the context was cancelled, or one was
// abandoned at its deadline (the caller runs the rest as waves).
func (m *Manager) runChain(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext, waves [][]*instance, out []*registry.Result, now time.Time) ([]*registry.Result, int) {
	ch := getChain(len(waves))
	ch.m, ch.ctx, ch.stage, ch.pc, ch.waves = m, ctx, stage, pc, waves
	if now.IsZero() {
		now = time.Now()
	}
	ch.begin(0, now)
	m.workers.run(&ch.call)
	clean := true
	for w := range ch.done {
		if w == chainDone {
			break
		}
		s := ch.state.Load()
		j := int(s >> 2)
		if int32(s&3) != running || ch.steps[j].ctx.Err() == nil || !ch.state.CompareAndSwap(s, stepState(j, abandoned)) {
			continue // the step it was about is over, or its word came before it ran (the worker sends another)
		}
		m.workers.abandoned()
		st := &ch.steps[j]
		st.res = m.finish(ctx, st.ctx, stage, pc, waves[j][0], &registry.Result{Err: st.ctx.Err()}, st.start)
		m.deadlines.end(st.ctx)
		ch.ran, clean = j+1, false
		break
	}
	for i := range ch.ran {
		out = append(out, ch.steps[i].res)
	}
	ran := ch.ran
	if clean {
		putChain(ch)
	}
	return out, ran
}

// begin readies step j: its deadline context, then the state that
// publishes it.
func (ch *chain) begin(j int, now time.Time) {
	inst := ch.waves[j][0]
	tctx := ch.m.deadlines.start(ch.ctx, now.Add(inst.settings.Timeout), ch.done)
	ch.steps[j] = chainStep{ctx: tctx, start: now}
	ch.state.Store(stepState(j, running))
	if tctx.Err() != nil {
		// Its word may have been read while the step was not yet running
		// and so passed over: say it again now that it is.
		select {
		case ch.done <- expired:
		default: // a word is waiting already
		}
	}
}

// run is the worker's side: each step in turn. It reports false if a step
// was abandoned: then the chain is the collector's and the worker leaves.
func (ch *chain) run() bool {
	for j := 0; ; j++ {
		if j > 0 {
			ch.begin(j, time.Now())
		}
		st := &ch.steps[j]
		res := ch.waves[j][0].call(st.ctx, ch.stage, ch.pc)
		if !ch.state.CompareAndSwap(stepState(j, running), stepState(j, finished)) {
			return false
		}
		st.res = ch.m.finish(ch.ctx, st.ctx, ch.stage, ch.pc, ch.waves[j][0], res, st.start)
		ch.m.deadlines.end(st.ctx)
		ch.ran = j + 1
		if j+1 == len(ch.waves) || st.res.Verdict.Action == registry.Reject || ch.ctx.Err() != nil {
			ch.done <- chainDone // room: the collector reads until this word
			return true
		}
	}
}

// chains pools chain states by length, for lengths up to len-1; a chain
// whose worker was abandoned is not reused (the worker may still look at
// its state).
var chains [9]sync.Pool

func getChain(n int) *chain {
	if n < len(chains) {
		if ch, ok := chains[n].Get().(*chain); ok {
			return ch
		}
	}
	ch := &chain{steps: make([]chainStep, n), done: make(chan int, n+2)}
	ch.call.chain = ch
	return ch
}

func putChain(ch *chain) {
	n := len(ch.steps)
	if n >= len(chains) {
		return
	}
	clear(ch.steps)
	ch.m, ch.ctx, ch.pc, ch.waves, ch.ran = nil, nil, nil, nil, 0
	ch.state.Store(0)
	chains[n].Put(ch)
}
