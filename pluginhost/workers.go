package pluginhost

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/elemta/elemta/registry"
)

// workers is the Manager's pool of long-lived goroutines that run plugin
// calls. A worker keeps its goroutine between calls, so the stack that RSA,
// regexp or fmt grew stays grown (until the collector shrinks an idle one)
// instead of being copied up again from 8 KiB on every call, and handing a
// call to an idle worker is one channel send instead of a goroutine start.
//
// A call that overruns its deadline is abandoned: the collector stops
// waiting, the worker is no longer counted, and when (if ever) the plugin
// returns, the worker exits instead of taking more work. Its place is taken
// by a fresh worker the next time no idle one is waiting, so a hung plugin
// never holds the pool.
type workers struct {
	calls chan *call // unbuffered: a send succeeds only when a worker is idle; closed by close
	live  sync.WaitGroup
	idle  atomic.Int32
	max   int32 // idle workers kept; more exit when they finish a call
	once  sync.Once
}

func newWorkers(maxIdle int) *workers {
	return &workers{calls: make(chan *call), max: int32(maxIdle)}
}

// call is one plugin call handed to a worker.
type call struct {
	inst  *instance
	ctx   context.Context
	stage registry.Stage
	pc    *registry.ProcessingContext
	i     int        // index in the wave
	done  chan<- int // receives i once res is set; buffered for the whole wave
	res   *registry.Result
	state atomic.Int32
	chain *chain // if set, the call is this chain of plugins (see chain.go) and the fields above are unused
}

// The states of a call: a worker and the collector race to move it out of
// running; whoever wins decides whether the result counts.
const (
	running int32 = iota
	finished
	abandoned
)

// run hands c to an idle worker, or to a new one if none is waiting. It
// must not be called after close.
func (w *workers) run(c *call) {
	select {
	case w.calls <- c:
	default:
		w.live.Add(1)
		go w.work(c)
	}
}

// abandon gives up on c at its deadline. It reports whether the worker
// was still in the plugin (and is now on its own, uncounted).
func (w *workers) abandon(c *call) bool {
	if c.state.CompareAndSwap(running, abandoned) {
		w.abandoned()
		return true
	}
	return false
}

// abandoned stops counting a worker left in a plugin past its deadline.
func (w *workers) abandoned() { w.live.Done() }

func (w *workers) work(c *call) {
	for {
		if c.chain != nil {
			if !c.chain.run() {
				return // abandoned at a deadline: live no longer counts this worker
			}
		} else {
			res := c.inst.call(c.ctx, c.stage, c.pc)
			if !c.state.CompareAndSwap(running, finished) {
				return // abandoned at its deadline: live no longer counts this worker
			}
			c.res = res
			c.done <- c.i
		}
		if w.idle.Add(1) > w.max {
			w.idle.Add(-1)
			w.live.Done()
			return
		}
		var ok bool
		c, ok = <-w.calls
		w.idle.Add(-1)
		if !ok {
			w.live.Done()
			return
		}
	}
}

// close stops the idle workers and waits for every worker that was not
// abandoned: after it returns no goroutine of the pool runs a plugin,
// except those cut off at their deadline that have not returned yet.
func (w *workers) close() {
	w.once.Do(func() { close(w.calls) }) // no stage runs, so nothing sends any more
	w.live.Wait()
}

// idleCount reports how many workers wait for a call (for tests).
func (w *workers) idleCount() int { return int(w.idle.Load()) }
