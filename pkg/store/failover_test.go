package store

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
)

// TestSentinelFailoverBounded: 16 callers take from a rate on the
// Sentinel master while it is SIGKILLed. Every call returns within a
// bound set by the timeouts (no caller waits out the failover), the
// goroutines do not pile up, and every caller works again on the new
// master with the same store (no restart).
func TestSentinelFailoverBounded(t *testing.T) {
	s := storetest.SentinelExclusive(t)
	cfg := haConfig(s)
	cfg.Timeout = registry.Duration(300 * time.Millisecond)
	cfg.PoolSize = 8 // fewer connections than callers: the pool wait is bounded too
	st, err := NewRedis(RedisOptions{Config: cfg, Prefix: s.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rate := Rate{Count: 1 << 20, Window: time.Hour}
	if _, err := st.Take(ctx, "warm", time.Now(), rate); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()

	const callers = 16
	var (
		killed     atomic.Bool
		longest    atomic.Int64
		peak       atomic.Int64
		failed     atomic.Int64
		mu         sync.Mutex
		resumedAt  = map[int]time.Time{}
		sawFailure = map[int]bool{}
	)
	stop, allBack := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var killAt time.Time
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				_, err := st.Take(ctx, fmt.Sprint("k", i), began, rate)
				d := time.Since(began)
				for old := longest.Load(); d.Nanoseconds() > old && !longest.CompareAndSwap(old, d.Nanoseconds()); old = longest.Load() {
				}
				if g := int64(runtime.NumGoroutine()); g > peak.Load() {
					peak.Store(g)
				}
				if !killed.Load() {
					continue
				}
				mu.Lock()
				switch {
				case err != nil:
					failed.Add(1)
					sawFailure[i] = true
					delete(resumedAt, i)
				case sawFailure[i]:
					if _, ok := resumedAt[i]; !ok {
						resumedAt[i] = time.Now()
					}
					if len(resumedAt) == callers {
						once.Do(func() { close(allBack) })
					}
				}
				mu.Unlock()
			}
		})
	}
	killAt = time.Now()
	master := storetest.KillSentinelMaster(t, s)
	killed.Store(true)
	select {
	case <-allBack:
	case <-time.After(30 * time.Second):
		t.Error("not every caller works again 30s after the master was killed")
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	var last time.Duration
	for _, at := range resumedAt {
		last = max(last, at.Sub(killAt))
	}
	mu.Unlock()
	// One call: a pool wait, a dial and a read or write, retried once, and
	// the master lookup through the sentinels: each bounded by 300ms.
	const bound = 3 * time.Second
	if l := time.Duration(longest.Load()); l > bound {
		t.Errorf("longest call %v during the failover, want at most %v", l, bound)
	}
	if p := peak.Load(); p > int64(base)+2*callers {
		t.Errorf("%d goroutines at the peak, %d before: they pile up", p, base)
	}
	t.Logf("master %s killed: every caller back after %v; %d failed calls, longest call %v, goroutines %d before, %d at the peak",
		master, last.Round(time.Millisecond), failed.Load(), time.Duration(longest.Load()).Round(time.Millisecond), base, peak.Load())
}
