package pluginhost

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// deadlines gives the plugins of a wave their deadline context without a
// runtime timer per wave. context.WithTimeout arms and stops a timer and
// makes five objects per call; here one timer, shared by every wave of the
// Manager, sleeps until the earliest deadline still pending. Adding a wave
// whose deadline is later than that (the usual case: every wave's deadline
// is now plus a configured timeout) touches no timer, and a wave that ends
// first leaves the timer armed: when it fires with nothing due it rearms for
// the earliest pending deadline. Between waves the cost is one mutex and a
// heap operation.
type deadlines struct {
	mu      sync.Mutex
	pending deadlineHeap
	timer   *time.Timer
	armed   time.Time // when timer fires; zero: not armed
	closed  bool
}

func newDeadlines() *deadlines {
	d := &deadlines{}
	d.timer = time.AfterFunc(time.Hour, d.fire)
	d.timer.Stop()
	return d
}

// withDeadline returns a context for a wave's plugins: parent's values,
// done at the deadline at (or parent's, if earlier), when parent is done,
// or when cancel is called; as context.WithDeadline's, which it replaces
// for runWave. When it ends other than by cancel, it sends expired on
// notify, if notify is not nil and has room: the collector waits on one
// channel for answers and deadlines alike.
func (d *deadlines) withDeadline(parent context.Context, at time.Time, notify chan<- int) (context.Context, context.CancelFunc) {
	c := d.start(parent, at, notify)
	return c, func() { d.end(c) }
}

// start is withDeadline without the CancelFunc (one allocation fewer per
// plugin call): end(c) is its cancel.
func (d *deadlines) start(parent context.Context, at time.Time, notify chan<- int) *deadlineCtx {
	c := &deadlineCtx{parent: parent, at: at, index: -1, notify: notify}
	if pd, ok := parent.Deadline(); ok && pd.Before(at) {
		c.at = pd
	}
	if parent.Done() != nil {
		if err := parent.Err(); err != nil {
			c.cancel(err)
			return c
		}
		c.stopParent = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	}
	d.mu.Lock()
	if !d.closed {
		heap.Push(&d.pending, c)
		if d.armed.IsZero() || c.at.Before(d.armed) {
			d.armed = c.at
			d.timer.Reset(time.Until(c.at))
		}
	}
	d.mu.Unlock()
	return c
}

// end ends c by its owner, who needs no word of it on notify.
func (d *deadlines) end(c *deadlineCtx) {
	d.remove(c)
	if c.stopParent != nil {
		c.stopParent()
	}
	c.mu.Lock()
	c.notify = nil
	c.mu.Unlock()
	c.cancel(context.Canceled)
}

// expired is what a deadline context sends on its notify channel when its
// deadline comes or its parent is done.
const expired = -1

func (d *deadlines) remove(c *deadlineCtx) {
	d.mu.Lock()
	if c.index >= 0 {
		heap.Remove(&d.pending, c.index)
	}
	d.mu.Unlock()
}

// fire ends the contexts whose deadline has come and rearms the timer for
// the earliest one left.
func (d *deadlines) fire() {
	var due []*deadlineCtx
	d.mu.Lock()
	now := time.Now()
	for len(d.pending) > 0 && !d.pending[0].at.After(now) {
		due = append(due, heap.Pop(&d.pending).(*deadlineCtx))
	}
	d.armed = time.Time{}
	if len(d.pending) > 0 && !d.closed {
		d.armed = d.pending[0].at
		d.timer.Reset(time.Until(d.armed))
	}
	d.mu.Unlock()
	for _, c := range due {
		c.cancel(context.DeadlineExceeded)
	}
}

// close stops the timer: no wave runs any more (Manager.Close holds the
// lock that ExecuteStage takes).
func (d *deadlines) close() {
	d.mu.Lock()
	d.closed = true
	d.timer.Stop()
	d.mu.Unlock()
}

// deadlineCtx is the context of a wave's plugins under one deadline.
type deadlineCtx struct {
	parent     context.Context
	at         time.Time
	index      int         // in deadlines.pending; -1 when not there
	stopParent func() bool // undoes the context.AfterFunc on parent
	notify     chan<- int  // see withDeadline; guarded by mu

	mu    sync.Mutex
	done  chan struct{} // made on first use
	err   error
	funcs []*afterFunc // registered with AfterFunc, run when done
}

var _ context.Context = (*deadlineCtx)(nil)

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.at, true }
func (c *deadlineCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel ends c with err, once: closes Done and starts the AfterFunc
// functions, each on its own goroutine (as context.AfterFunc does).
func (c *deadlineCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.notify != nil { // before Done closes: whoever sees Done finds the word sent
		select {
		case c.notify <- expired:
		default: // one is waiting already
		}
	}
	if c.done != nil {
		close(c.done)
	}
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, f := range funcs {
		go f.f()
	}
}

// afterFunc is one function registered with AfterFunc.
type afterFunc struct{ f func() }

// AfterFunc runs f once c is done, like context.AfterFunc. The context
// package looks for this method: a context derived from c (a plugin's own
// lookup timeout) is then cancelled with c without a goroutine waiting on
// c's Done channel for as long as the child lives.
func (c *deadlineCtx) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.funcs = append(c.funcs, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, f := range c.funcs {
			if f == a {
				c.funcs = append(c.funcs[:i], c.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// deadlineHeap orders pending contexts by deadline (container/heap).
type deadlineHeap []*deadlineCtx

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *deadlineHeap) Push(x any) {
	c := x.(*deadlineCtx)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.index = -1
	*h = old[:len(old)-1]
	return c
}
