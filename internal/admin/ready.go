package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Check is one readiness check's outcome.
type Check struct {
	OK         bool    `json:"ok"`
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Ready     bool      `json:"ready"`
	CheckedAt time.Time `json:"checked_at"`
	// Plugins holds each loaded plugin instance's health check; Spool
	// whether a file can be written and removed in spool_dir/tmp.
	Plugins map[string]Check `json:"plugins"`
	Spool   Check            `json:"spool"`
}

// readiness runs the checks at most once per interval; probes in between
// get the last result, so they never hammer clamd.
type readiness struct {
	interval, timeout time.Duration
	now               func() time.Time
	plugins           func() []string
	health            func(ctx context.Context, name string) error
	spoolDir          string

	mu   sync.Mutex // held while checking: concurrent probes wait for the one run
	last *Readiness
}

func (r *readiness) get(ctx context.Context) Readiness {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != nil && r.now().Sub(r.last.CheckedAt) < r.interval {
		return *r.last
	}
	res := r.check(ctx)
	r.last = &res
	return res
}

func (r *readiness) check(ctx context.Context) Readiness {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	res := Readiness{Ready: true, CheckedAt: r.now(), Plugins: map[string]Check{}}
	names := r.plugins()
	checks := make([]Check, len(names))
	var g errgroup.Group
	for i, name := range names {
		g.Go(func() error {
			checks[i] = timed(func() error { return r.health(ctx, name) })
			return nil
		})
	}
	spool := timed(func() error { return writable(r.spoolDir) })
	_ = g.Wait()
	for i, name := range names {
		res.Plugins[name] = checks[i]
		res.Ready = res.Ready && checks[i].OK
	}
	res.Spool = spool
	res.Ready = res.Ready && spool.OK
	return res
}

func timed(f func() error) Check {
	start := time.Now()
	err := f()
	c := Check{OK: err == nil, DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

// writable creates, syncs and removes a file in dir/tmp (the spool's own
// scratch directory, emptied at every start).
func writable(dir string) error {
	if dir == "" {
		return nil
	}
	f, err := os.CreateTemp(filepath.Join(dir, "tmp"), "readyz-*")
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	name := f.Name()
	_, werr := f.Write([]byte{'\n'})
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	rerr := os.Remove(name)
	for _, err := range []error{werr, cerr, rerr} {
		if err != nil {
			return fmt.Errorf("spool not writable: %w", err)
		}
	}
	return nil
}
