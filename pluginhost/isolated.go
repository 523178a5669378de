package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// Backoff of a worker that died: restartMin after the first death, doubled
// for each death in a row up to restartMax. A worker that served for
// stableAfter before it died starts the count again. crashLoopAt deaths in
// a row are logged as a crash loop.
const (
	restartMin   = 100 * time.Millisecond
	restartMax   = 30 * time.Second
	stableAfter  = 30 * time.Second
	crashLoopAt  = 3
	startTimeout = 30 * time.Second
)

// isolated is the Manager's stand-in for an instance with isolation =
// "process": it implements the stage handler, lifecycle and capability
// interfaces, and forwards each call to one of the instance's worker
// processes, which build the plugin from the same config. The executor
// sees a plugin like any other: timeouts, on_error and ordering work
// unchanged. A worker that dies, hangs past its call's context, breaks the
// protocol or exceeds its memory is killed; its calls fail (so the
// message gets on_error) and the worker is replaced with backoff.
type isolated struct {
	name  string
	entry *catalog.Entry
	iso   Isolation
	init  initFrame
	host  registry.Host
	log   *slog.Logger
	tmo   time.Duration

	mu      sync.Mutex
	slots   []*slot
	started bool
	closed  bool
	wake    chan struct{} // closed and replaced when a slot changes
	stop    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	crashes, restarts, recycled atomic.Int64
}

type slot struct {
	p        *process // nil while the worker is being replaced
	calls    int64    // calls given to p
	retiring bool     // p reached max_requests: no new calls
	active   int      // calls given to p not yet returned
	retire   chan struct{}
	failures int       // deaths in a row
	until    time.Time // no worker before this time (backoff)
}

var (
	_ registry.StageHandler    = (*isolated)(nil)
	_ registry.Starter         = (*isolated)(nil)
	_ registry.Closer          = (*isolated)(nil)
	_ registry.HealthChecker   = (*isolated)(nil)
	_ registry.SessionEnder    = (*isolated)(nil)
	_ registry.AntivirusPlugin = (*isolated)(nil)
	_ registry.AntispamPlugin  = (*isolated)(nil)
	_ registry.DKIMPlugin      = (*isolated)(nil)
	_ registry.SPFPlugin       = (*isolated)(nil)
	_ registry.DMARCPlugin     = (*isolated)(nil)
	_ registry.ARCPlugin       = (*isolated)(nil)
)

func newIsolated(cfg *Config, settings *PluginConfig, mod *catalog.Entry, host registry.Host) *isolated {
	registerWireTypes()
	_, sysClock := host.Clock.(registry.SystemClock)
	level := slog.LevelError
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if host.Logger.Enabled(context.Background(), l) {
			level = l
			break
		}
	}
	s := &isolated{name: settings.Name, entry: mod, iso: settings.Isolation, host: host, log: host.Logger, tmo: settings.Timeout,
		wake: make(chan struct{}),
		init: initFrame{ConfigFile: cfg.File, ConfigData: cfg.data, Instance: settings.Name, Hostname: host.Hostname,
			AuthservID: host.AuthservID, DataDir: host.DataDir, HostClock: !sysClock, MemoryLimit: settings.Isolation.MemoryLimit,
			LogLevel: int(level)}}
	s.stop, s.cancel = context.WithCancel(context.Background())
	return s
}

// implements reports whether the plugin's own type implements iface: the
// stand-in has every method, but answers only for what the plugin has.
func (s *isolated) implements(iface reflect.Type) bool {
	return s.entry.Impl != nil && s.entry.Impl.Implements(iface)
}

// Start starts the workers, each building, validating and starting the
// plugin, and their supervisors.
func (s *isolated) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.started {
		return nil
	}
	s.started = true
	for range s.iso.Workers {
		p, err := startProcess(ctx, s.init, s.host, s.log)
		if err != nil {
			return err
		}
		s.slots = append(s.slots, &slot{p: p, retire: make(chan struct{}, 1)})
	}
	for _, sl := range s.slots {
		s.wg.Add(1)
		go s.supervise(sl)
	}
	return nil
}

func (s *isolated) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// supervise replaces the slot's worker when it dies or retires, until Close.
func (s *isolated) supervise(sl *slot) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		p := sl.p
		s.mu.Unlock()
		clean := false
		select {
		case <-s.stop.Done():
			return
		case <-sl.retire:
			if err := p.shutdown(); err != nil {
				s.log.Warn("plugin worker recycled; its Close failed", "pid", p.pid, "error", err)
			}
			s.recycled.Add(1)
			clean = true
		case <-p.dead:
			select {
			case <-sl.retire: // a retirement the death overtook
			default:
			}
		}
		s.mu.Lock()
		sl.p, sl.calls, sl.active, sl.retiring = nil, 0, 0, false
		if !clean {
			s.crashes.Add(1)
			if time.Since(p.started) > stableAfter {
				sl.failures = 0
			}
			sl.failures++
			sl.until = time.Now().Add(backoff(sl.failures))
			s.logDeath(p.why(), sl.failures)
		}
		s.notify()
		s.mu.Unlock()
		if !s.restart(sl) {
			return
		}
	}
}

func backoff(failures int) time.Duration {
	d := restartMin
	for i := 1; i < failures && d < restartMax; i++ {
		d *= 2
	}
	return min(d, restartMax)
}

func (s *isolated) logDeath(why error, failures int) {
	args := []any{"error", why, "deaths_in_a_row", failures, "crashes", s.crashes.Load(), "restart_in", backoff(failures)}
	if failures >= crashLoopAt {
		s.log.Error("plugin worker crash loop", args...)
		return
	}
	s.log.Warn("plugin worker died; its calls get on_error", args...)
}

// restart starts a new worker for the slot after its backoff, retrying
// with growing backoff; false when the instance closed meanwhile.
func (s *isolated) restart(sl *slot) bool {
	for {
		s.mu.Lock()
		wait := time.Until(sl.until)
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.stop.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(s.stop, startTimeout)
		p, err := startProcess(ctx, s.init, s.host, s.log)
		cancel()
		s.mu.Lock()
		if err == nil {
			if s.closed {
				s.mu.Unlock()
				_ = p.shutdown()
				return false
			}
			sl.p = p
			s.restarts.Add(1)
			s.notify()
			s.mu.Unlock()
			return true
		}
		if s.closed {
			s.mu.Unlock()
			return false
		}
		s.crashes.Add(1)
		sl.failures++
		sl.until = time.Now().Add(backoff(sl.failures))
		s.logDeath(err, sl.failures)
		s.mu.Unlock()
	}
}

// pick returns the least busy live worker, waiting for one being started;
// while every worker is backing off after deaths it fails at once.
func (s *isolated) pick(ctx context.Context) (*process, *slot, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, nil, ErrClosed
		}
		if !s.started {
			s.mu.Unlock()
			return nil, nil, errors.New("isolated plugin not started")
		}
		var best *slot
		for _, sl := range s.slots {
			if sl.p == nil || sl.retiring || !sl.p.alive() {
				continue
			}
			if best == nil || sl.p.load() < best.p.load() {
				best = sl
			}
		}
		if best != nil {
			best.calls++
			best.active++
			if s.iso.MaxRequests > 0 && best.calls >= s.iso.MaxRequests {
				best.retiring = true // retired by done when its last call returns
			}
			p := best.p
			s.mu.Unlock()
			return p, best, nil
		}
		backingOff, soonest := true, time.Time{}
		for _, sl := range s.slots {
			if sl.failures == 0 || !time.Now().Before(sl.until) {
				backingOff = false
			} else if soonest.IsZero() || sl.until.Before(soonest) {
				soonest = sl.until
			}
		}
		wake := s.wake
		s.mu.Unlock()
		if backingOff {
			return nil, nil, fmt.Errorf("no plugin worker: restarting after %d crashes (next start in %v)", s.crashes.Load(), time.Until(soonest).Round(time.Millisecond))
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for a plugin worker: %w", ctx.Err())
		}
	}
}

// done ends a call picked for p: the last call of a worker at
// max_requests hands it to its supervisor to retire (after the call, so
// the close frame never overtakes it).
func (s *isolated) done(p *process, sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.p != p {
		return
	}
	sl.active--
	if sl.retiring && sl.active == 0 {
		select {
		case sl.retire <- struct{}{}:
		default:
		}
	}
}

func (p *process) load() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight
}

// do runs one call on a worker.
func (s *isolated) do(ctx context.Context, cf *callFrame) (*replyFrame, error) {
	p, sl, err := s.pick(ctx)
	if err != nil {
		return nil, err
	}
	reply, err := p.call(ctx, cf)
	s.done(p, sl)
	if err != nil {
		return nil, err
	}
	if reply.Panicked {
		// The plugin panicked in the worker: panic here too, so the
		// executor reports it as it does in-process.
		panic(RemotePanic{Value: reply.Panic, Stack: reply.Stack})
	}
	if reply.Err != "" {
		return nil, errors.New(reply.Err)
	}
	return reply, nil
}

// RemotePanic is the value an isolated plugin panicked with, as text, and
// the worker's stack; a PanicError's Value for such a plugin.
type RemotePanic struct{ Value, Stack string }

func (r RemotePanic) String() string { return r.Value }

// Close shuts every worker down (each closes its plugin) and stops the
// supervisors. Safe without Start and twice.
func (s *isolated) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.notify()
	s.mu.Unlock()
	s.wg.Wait()
	var errs []error
	for _, sl := range s.slots {
		if sl.p != nil {
			if err := sl.p.shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// WorkerStats counts an isolated instance's worker processes.
type WorkerStats struct {
	Name string
	// Live is the number of workers serving now, PIDs their process IDs.
	Live int
	PIDs []int
	// Crashes counts workers that died, hung, broke the protocol or failed
	// to start; Restarts the workers started to replace them; Recycled
	// those retired at max_requests.
	Crashes, Restarts, Recycled int64
}

func (s *isolated) stats() WorkerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := WorkerStats{Name: s.name, Crashes: s.crashes.Load(), Restarts: s.restarts.Load(), Recycled: s.recycled.Load()}
	for _, sl := range s.slots {
		if sl.p != nil && sl.p.alive() {
			st.Live++
			st.PIDs = append(st.PIDs, sl.p.pid)
		}
	}
	return st
}

// WorkerStats returns the worker counters of every isolated instance, in
// start order.
func (m *Manager) WorkerStats() []WorkerStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []WorkerStats
	for _, inst := range m.loaded {
		if s, ok := inst.impl.(*isolated); ok {
			out = append(out, s.stats())
		}
	}
	return out
}
