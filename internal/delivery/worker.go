package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elemta/elemta/internal/spool"
)

// Run delivers until ctx is cancelled or Shutdown is called: whatever is
// due, then it waits for the next due time or a new message. Deliveries
// in flight when it stops claiming run on until they finish or Shutdown's
// deadline cancels them; Run returns after them. One Run or RunOnce at a
// time.
func (w *Worker) Run(ctx context.Context) error {
	_, err := w.pass(ctx, false)
	return err
}

// RunOnce delivers every entry due now, the relay phase and the DSNs it
// spools included, and returns how many attempts it started (an entry put
// back because the relay queue was full and claimed again counts twice). Once ctx is
// cancelled it claims nothing more.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	return w.pass(ctx, true)
}

// Shutdown stops claiming and waits for the deliveries in flight until
// ctx ends; then it cancels them and waits for them to give their entries
// back (an SMTP conversation is cut at once; a Maildir write in progress
// completes). A cancelled attempt is not recorded: no attempt counted, no
// DSN; the entry is due at once after the next start. Shutdown returns an
// error when it had to cancel. Run and RunOnce return at once after it.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	w.stopped = true
	if w.active == 0 {
		w.idleOnce.Do(func() { close(w.idle) })
	}
	w.mu.Unlock()
	w.stopFn()
	select {
	case <-w.idle:
		return nil
	case <-ctx.Done():
	}
	w.abortFn()
	<-w.idle
	return fmt.Errorf("delivery: deliveries in flight cancelled at the shutdown deadline: %w", context.Cause(ctx))
}

// enter registers a pass; false once Shutdown has begun.
func (w *Worker) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.active++
	return true
}

func (w *Worker) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.active--
	if w.active == 0 && w.stopped {
		w.idleOnce.Do(func() { close(w.idle) })
	}
}

// pass claims due entries and hands them to two pools: Concurrency local
// workers (pre-delivery stage, Maildirs, settling) and RelayConcurrency
// relay workers fed by a queue of RelayQueue attempts. A local worker
// never waits for the relay: an attempt with remote recipients goes into
// the queue, or back to the spool when it is full. Entries are claimed
// only as local workers free up, so a stuck smarthost holds the relay
// workers and the attempts queued for them, nothing else.
//
// With once, the pass ends when nothing is due and nothing is in flight;
// otherwise when ctx ends or Shutdown is called.
func (w *Worker) pass(ctx context.Context, once bool) (int, error) {
	if !w.enter() {
		return 0, nil
	}
	defer w.leave()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.stop, cancel)()
	dctx := w.abort // deliveries: cancelled only at Shutdown's deadline

	localQ := make(chan *spool.Entry)
	relayQ := make(chan *attempt, w.cfg.RelayQueue)
	var inflight atomic.Int64
	parked := &parking{room: make(chan struct{}, 1)}
	settled := make(chan struct{}, 1)
	done := func() {
		inflight.Add(-1)
		select {
		case settled <- struct{}{}:
		default:
		}
	}
	var locals, relays sync.WaitGroup
	for range w.cfg.Concurrency {
		locals.Go(func() {
			for e := range localQ {
				a, err := w.localPhase(dctx, e)
				if a != nil {
					select {
					case relayQ <- a:
						continue // the relay worker calls done
					default:
						w.park(a)
						parked.add(a.e.ID)
					}
				}
				w.settleError(e, err)
				done()
			}
		})
	}
	for range w.cfg.RelayConcurrency {
		relays.Go(func() {
			for a := range relayQ {
				parked.signal() // a place in the queue is free
				w.settleError(a.e, w.relayPhase(dctx, a))
				done()
			}
		})
	}
	defer func() {
		close(localQ)
		locals.Wait()
		close(relayQ)
		relays.Wait()
	}()

	n := 0
	var errs []error
	for ctx.Err() == nil {
		// Parked attempts are due again as soon as the relay queue has
		// room. Only this loop claims, so a parked entry is not held.
		for _, id := range parked.take(cap(relayQ) - len(relayQ)) {
			w.spool.ReleaseUntil(id, w.cfg.Now())
		}
		before := inflight.Load()
		batch, err := w.spool.Claim(w.cfg.Concurrency)
		parked.claimed(batch)
		if err != nil {
			if once {
				errs = append(errs, err)
			} else {
				w.log.Error("delivery claim", "err", err)
			}
		}
		for i, e := range batch {
			inflight.Add(1)
			select {
			case localQ <- e:
				n++
			case <-ctx.Done():
				for _, r := range batch[i:] {
					w.spool.Release(r.ID)
				}
				inflight.Add(-int64(len(batch) - i))
				return n, errors.Join(errs...)
			}
		}
		if len(batch) > 0 {
			continue
		}
		if once {
			if before == 0 {
				break // nothing due, nothing in flight that could add some
			}
			select {
			case <-ctx.Done():
			case <-settled:
			case <-parked.room:
			}
			continue
		}
		wait := time.Hour
		if next, ok := w.spool.NextDue(); ok {
			wait = max(next.Sub(w.cfg.Now()), 10*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-w.spool.Notify():
		case <-parked.room:
		case <-settled: // a deferred entry may be due before wait ends
		case <-t.C:
		}
		t.Stop()
	}
	return n, errors.Join(errs...)
}

// settleError logs an attempt whose outcome could not be recorded (a
// spool write failed) and puts its entry back after the base delay, not
// in a hot loop. Delivered copies are not written twice. A cancelled
// attempt has already given its entry back.
func (w *Worker) settleError(e *spool.Entry, err error) {
	if err == nil || errors.Is(err, errAborted) {
		return
	}
	w.log.Error("delivery", "id", e.ID, "err", err)
	w.spool.ReleaseUntil(e.ID, w.cfg.Now().Add(w.cfg.RetryBase))
}

// parking lists the entries put back because the relay queue was full,
// oldest first, so that they are made due again when it has room
// (rather than after RetryBase).
type parking struct {
	mu   sync.Mutex
	ids  []string
	room chan struct{} // a value when the relay queue may have room for one
}

func (p *parking) add(id string) {
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
}

// signal tells the dispatcher that the relay queue has room, if anything
// waits for it.
func (p *parking) signal() {
	p.mu.Lock()
	waiting := len(p.ids) > 0
	p.mu.Unlock()
	if waiting {
		select {
		case p.room <- struct{}{}:
		default:
		}
	}
}

// take removes and returns up to n of the oldest parked ids.
func (p *parking) take(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = min(max(n, 0), len(p.ids))
	out := slices.Clone(p.ids[:n])
	p.ids = slices.Delete(p.ids, 0, n)
	return out
}

// claimed forgets the parked entries in batch: their RetryBase passed
// and they were claimed again.
func (p *parking) claimed(batch []*spool.Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = slices.DeleteFunc(p.ids, func(id string) bool {
		return slices.ContainsFunc(batch, func(e *spool.Entry) bool { return e.ID == id })
	})
}
