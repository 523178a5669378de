package pluginhost

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Live holds the manager a running server uses and swaps it for another
// without stopping anyone: each unit of work (an SMTP connection, a
// transaction, a delivery attempt) Acquires the current manager and
// Releases it when done, so it runs every stage on the manager it started
// with. A manager replaced by Swap is closed when its last holder releases
// it, never while a stage of it runs.
//
// A Live is safe for concurrent use.
type Live struct {
	cur  atomic.Pointer[holder]
	mu   sync.Mutex // orders Swap and Close
	done bool
}

// holder is one manager and the count of its users; the current manager
// holds one reference of its own, dropped when it is swapped out.
type holder struct {
	m      *Manager
	owned  bool // close m when the last reference goes (not for Pin)
	refs   atomic.Int64
	closed chan struct{}
	err    error
}

// Lease is one user's hold on a manager.
type Lease struct {
	h       *holder
	counted bool // false for a lease on a closed Live's manager
	once    sync.Once
}

// NewLive returns a Live serving m, which it owns: m is closed when it is
// swapped out (or at Close) and its last user releases it.
func NewLive(m *Manager) *Live { return newLive(m, true) }

// Pin returns a Live that always serves m and never closes it (the caller
// owns m): for servers built around one manager.
func Pin(m *Manager) *Live { return newLive(m, false) }

func newLive(m *Manager, owned bool) *Live {
	l := &Live{}
	l.cur.Store(newHolder(m, owned))
	return l
}

func newHolder(m *Manager, owned bool) *holder {
	h := &holder{m: m, owned: owned, closed: make(chan struct{})}
	h.refs.Store(1)
	return h
}

// Acquire returns a lease on the current manager. It never blocks on a
// swap: a manager being retired is skipped for its successor.
func (l *Live) Acquire() *Lease {
	for {
		h := l.cur.Load()
		if n := h.refs.Load(); n > 0 && h.refs.CompareAndSwap(n, n+1) {
			return &Lease{h: h, counted: true}
		}
		// h lost its last reference after being swapped out (or the Live
		// was closed and h is the closed manager: a lease on it gets
		// ErrClosed from every stage, which is what a closed server means).
		if l.cur.Load() == h && h.refs.Load() == 0 {
			return &Lease{h: h}
		}
	}
}

// Current returns the manager serving now, without holding it: for
// reading its description (Loaded, Stats), never for running stages.
func (l *Live) Current() *Manager { return l.cur.Load().m }

// Manager is the leased manager.
func (le *Lease) Manager() *Manager { return le.h.m }

// Retain returns a second lease on the same manager, for work that may
// outlive the first holder's (a BDAT transfer running on after RSET).
func (le *Lease) Retain() *Lease {
	if !le.counted {
		return &Lease{h: le.h}
	}
	le.h.refs.Add(1) // le holds a reference: the count is above zero
	return &Lease{h: le.h, counted: true}
}

// Release gives the lease back; the second and later calls do nothing.
func (le *Lease) Release() {
	if le == nil || !le.counted {
		return
	}
	le.once.Do(func() { le.h.release() })
}

func (h *holder) release() {
	if h.refs.Add(-1) != 0 {
		return
	}
	// Closing plugins may take a while (workers to stop, pools to drain):
	// not on the goroutine of the last user, which may be an SMTP
	// session about to answer.
	go func() {
		if h.owned {
			h.err = h.m.Close()
		}
		close(h.closed)
	}()
}

// ErrLiveClosed is returned by Swap after Close.
var ErrLiveClosed = errors.New("plugin manager holder is closed")

// Swap makes m the current manager and returns the one it replaces with a
// channel that delivers the old one's Close error once its last user
// released it (then the channel is closed).
func (l *Live) Swap(m *Manager) (old *Manager, closed <-chan error, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil, nil, ErrLiveClosed
	}
	prev := l.cur.Swap(newHolder(m, true))
	closed = prev.wait()
	prev.release() // its own reference as the current manager
	return prev.m, closed, nil
}

// wait delivers h's close error once its references are gone.
func (h *holder) wait() <-chan error {
	c := make(chan error, 1)
	go func() {
		<-h.closed
		c <- h.err
		close(c)
	}()
	return c
}

// Close drops the current manager's own reference and waits until its
// users released it and it is closed, returning its Close error. Leases
// taken later run on the closed manager (stages return ErrClosed).
func (l *Live) Close() error {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return nil
	}
	l.done = true
	h := l.cur.Load()
	l.mu.Unlock()
	h.release()
	<-h.closed
	return h.err
}
