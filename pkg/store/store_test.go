package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
)

// t0 is an arbitrary fixed instant: decisions use the time passed in, never
// the wall clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// backend opens a fresh, empty store of one kind for a test.
type backend struct {
	name string
	open func(t testing.TB) Store
}

// backends returns bbolt, Redis, and the Sentinel, Cluster and TLS setups:
// every table runs against each. Redis needs ELEMTA_TEST_REDIS
// (tools/testenv/start.sh), the others tools/testenv/redis-ha.sh: skipped
// locally without them, a failure under CI=true.
func backends() []backend {
	return []backend{
		{"bolt", func(t testing.TB) Store { return openTestBolt(t, filepath.Join(t.TempDir(), "state.db")) }},
		{"redis", func(t testing.TB) Store { return OpenTestRedis(t) }},
		{"redis-sentinel", func(t testing.TB) Store { return openHARedis(t, storetest.Sentinel(t)) }},
		{"redis-cluster", func(t testing.TB) Store { return openHARedis(t, storetest.Cluster(t)) }},
		{"redis-tls", func(t testing.TB) Store { return openHARedis(t, storetest.TLS(t)) }},
	}
}

func openTestBolt(t testing.TB, path string) *Bolt {
	t.Helper()
	s, err := OpenBolt(BoltOptions{Path: path, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// OpenTestRedis returns a Redis store on the test server whose keys carry a
// prefix of their own, deleted again when the test ends.
func OpenTestRedis(t testing.TB) *Redis {
	t.Helper()
	addr, prefix := storetest.Redis(t)
	s, err := NewRedis(RedisOptions{Addr: addr, Prefix: prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestGreylistTable(t *testing.T) {
	const (
		delay  = 5 * time.Minute
		window = 4 * time.Hour
		expire = 35 * 24 * time.Hour
	)
	type step struct {
		at      time.Duration // since t0
		triplet string
		network string // "" means "net"
		want    GreylistStatus
		first   time.Duration // expected FirstSeen - t0; -1 to skip
	}
	cases := []struct {
		name  string
		auto  int
		steps []step
	}{
		{"delay boundary", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{delay - time.Microsecond, "a", "", GreylistEarly, 0},
			{delay, "a", "", GreylistPassed, 0},
			{delay + time.Hour, "a", "", GreylistKnown, 0},
		}},
		{"retry window is inclusive", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{window, "a", "", GreylistPassed, 0},
		}},
		{"after the retry window the triplet starts again", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{window + time.Microsecond, "a", "", GreylistNew, window + time.Microsecond},
			{window + time.Microsecond + delay - time.Microsecond, "a", "", GreylistEarly, window + time.Microsecond},
			{window + time.Microsecond + delay, "a", "", GreylistPassed, window + time.Microsecond},
		}},
		{"early retries do not restart the delay", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{time.Minute, "a", "", GreylistEarly, 0},
			{4 * time.Minute, "a", "", GreylistEarly, 0},
			{delay, "a", "", GreylistPassed, 0},
		}},
		{"a pass lives for expire after its last use and is renewed", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{delay, "a", "", GreylistPassed, 0},
			{delay + expire, "a", "", GreylistKnown, 0},
			{delay + 2*expire, "a", "", GreylistKnown, 0},
			{delay + 3*expire + time.Microsecond, "a", "", GreylistNew, delay + 3*expire + time.Microsecond},
		}},
		{"per triplet: another recipient is greylisted on its own", 0, []step{
			{0, "a", "", GreylistNew, 0},
			{delay, "a", "", GreylistPassed, 0},
			{delay, "b", "", GreylistNew, delay},
		}},
		{"auto-allow after 2 passes, not after 1", 2, []step{
			{0, "a", "", GreylistNew, 0},
			{delay, "a", "", GreylistPassed, 0},
			{delay, "b", "", GreylistNew, delay},
			{2 * delay, "b", "", GreylistPassed, delay},
			{2 * delay, "c", "", GreylistAutoAllowed, -1},
			{2 * delay, "d", "other", GreylistNew, 2 * delay},
		}},
		{"auto-allow ends when the network's passes expire", 1, []step{
			{0, "a", "", GreylistNew, 0},
			{delay, "a", "", GreylistPassed, 0},
			{delay + expire, "b", "", GreylistAutoAllowed, -1},
			{delay + 2*expire + time.Microsecond, "c", "", GreylistNew, delay + 2*expire + time.Microsecond},
		}},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := be.open(t)
					for i, st := range tc.steps {
						network := st.network
						if network == "" {
							network = "net"
						}
						res, err := s.Greylist(context.Background(), GreylistRequest{
							Triplet: network + "|" + st.triplet, Network: network, Now: t0.Add(st.at),
							Delay: delay, RetryWindow: window, Expire: expire, AutoAllowAfter: tc.auto,
						})
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if res.Status != st.want {
							t.Fatalf("step %d (%s at +%v): status %v, want %v", i, st.triplet, st.at, res.Status, st.want)
						}
						if st.first >= 0 && !res.FirstSeen.Equal(t0.Add(st.first)) {
							t.Errorf("step %d: first seen %v, want %v", i, res.FirstSeen, t0.Add(st.first))
						}
					}
				})
			}
		})
	}
}

func TestTakeTable(t *testing.T) {
	type step struct {
		at      time.Duration
		allowed bool
		remain  int
		retry   time.Duration
	}
	cases := []struct {
		name  string
		rate  Rate
		steps []step
	}{
		{"burst equals count by default, then one per interval", Rate{Count: 3, Window: 3 * time.Second}, []step{
			{0, true, 2, 0},
			{0, true, 1, 0},
			{0, true, 0, 0},
			{0, false, 0, time.Second},
			{time.Second - time.Microsecond, false, 0, time.Microsecond},
			{time.Second, true, 0, 0},
			{time.Second, false, 0, time.Second},
		}},
		{"no double rate at a window edge", Rate{Count: 2, Window: time.Minute}, []step{
			{59 * time.Second, true, 1, 0},
			{59 * time.Second, true, 0, 0},
			{61 * time.Second, false, 0, 28 * time.Second},
			{89 * time.Second, true, 0, 0},
		}},
		{"burst 1 paces evenly", Rate{Count: 10, Window: 10 * time.Second, Burst: 1}, []step{
			{0, true, 0, 0},
			{500 * time.Millisecond, false, 0, 500 * time.Millisecond},
			{time.Second, true, 0, 0},
		}},
		{"a quiet client gets its burst back, never more", Rate{Count: 2, Window: 2 * time.Second}, []step{
			{0, true, 1, 0},
			{0, true, 0, 0},
			{time.Hour, true, 1, 0},
			{time.Hour, true, 0, 0},
			{time.Hour, false, 0, time.Second},
		}},
		{"burst larger than count", Rate{Count: 1, Window: time.Second, Burst: 3}, []step{
			{0, true, 2, 0}, {0, true, 1, 0}, {0, true, 0, 0}, {0, false, 0, time.Second},
		}},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := be.open(t)
					for i, st := range tc.steps {
						res, err := s.Take(context.Background(), "k", t0.Add(st.at), tc.rate)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						want := TakeResult{Allowed: st.allowed, Remaining: st.remain, RetryAfter: st.retry}
						if res != want {
							t.Fatalf("step %d at +%v: %+v, want %+v", i, st.at, res, want)
						}
					}
				})
			}
		})
	}
}

func TestTakeInvalidRate(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t)
			for _, r := range []Rate{{Count: 0, Window: time.Second}, {Count: 1}, {Count: 2, Window: time.Microsecond}} {
				if _, err := s.Take(context.Background(), "k", t0, r); err == nil {
					t.Errorf("Take with %+v: no error", r)
				}
			}
		})
	}
}

func TestAcquireTable(t *testing.T) {
	const lease = 10 * time.Minute
	type step struct {
		op       string // "acquire" or "release"
		at       time.Duration
		holder   string
		acquired bool
		held     int
	}
	cases := []struct {
		name  string
		limit int
		steps []step
	}{
		{"limit boundary and renewal", 2, []step{
			{"acquire", 0, "h1", true, 1},
			{"acquire", 0, "h2", true, 2},
			{"acquire", 0, "h3", false, 2},
			{"acquire", time.Minute, "h1", true, 2}, // renewing never needs a free slot
			{"release", time.Minute, "h2", false, 0},
			{"acquire", time.Minute, "h3", true, 2},
		}},
		{"a lease ends at its expiry", 1, []step{
			{"acquire", 0, "h1", true, 1},
			{"acquire", lease - time.Microsecond, "h2", false, 1},
			{"acquire", lease, "h2", true, 1},
		}},
		{"renewal extends the lease", 1, []step{
			{"acquire", 0, "h1", true, 1},
			{"acquire", lease - time.Second, "h1", true, 1},
			{"acquire", lease + time.Second, "h2", false, 1},
			{"acquire", 2*lease - time.Second, "h2", true, 1},
		}},
		{"releasing an unknown holder is harmless", 1, []step{
			{"release", 0, "nobody", false, 0},
			{"acquire", 0, "h1", true, 1},
		}},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := be.open(t)
					ctx := context.Background()
					for i, st := range tc.steps {
						if st.op == "release" {
							if err := s.Release(ctx, "k", st.holder); err != nil {
								t.Fatalf("step %d: %v", i, err)
							}
							continue
						}
						res, err := s.Acquire(ctx, "k", st.holder, tc.limit, lease, t0.Add(st.at))
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if want := (AcquireResult{Acquired: st.acquired, Held: st.held}); res != want {
							t.Fatalf("step %d (%s at +%v): %+v, want %+v", i, st.holder, st.at, res, want)
						}
					}
				})
			}
		})
	}
}

// TestConcurrentLimits: 1,000 simultaneous callers against a limit of 100
// get exactly 100 through, for rates and for leases. Run with -race.
func TestConcurrentLimits(t *testing.T) {
	const callers, limit = 1000, 100
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t)
			run := func(t *testing.T, call func(i int) (bool, error)) {
				var wg sync.WaitGroup
				var ok, failed atomic.Int64
				start := make(chan struct{})
				for i := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						got, err := call(i)
						if err != nil {
							failed.Add(1)
							t.Error(err)
							return
						}
						if got {
							ok.Add(1)
						}
					}()
				}
				close(start)
				wg.Wait()
				if ok.Load() != limit || failed.Load() != 0 {
					t.Fatalf("%d of %d let through (%d errors), want exactly %d", ok.Load(), callers, failed.Load(), limit)
				}
			}
			ctx := context.Background()
			t.Run("take", func(t *testing.T) {
				run(t, func(int) (bool, error) {
					r, err := s.Take(ctx, "rate", t0, Rate{Count: limit, Window: time.Hour})
					return r.Allowed, err
				})
			})
			t.Run("acquire", func(t *testing.T) {
				run(t, func(i int) (bool, error) {
					r, err := s.Acquire(ctx, "sessions", fmt.Sprintf("session-%d", i), limit, time.Minute, t0)
					return r.Acquired, err
				})
			})
		})
	}
}

func TestBoltKeepsStateAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	req := GreylistRequest{Triplet: "t", Network: "n", Now: t0, Delay: time.Minute, RetryWindow: time.Hour, Expire: 24 * time.Hour}
	ctx := context.Background()
	s, err := OpenBolt(BoltOptions{Path: path, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Greylist(ctx, req)
	req.Now = t0.Add(time.Minute)
	if r, err := s.Greylist(ctx, req); err != nil || r.Status != GreylistPassed {
		t.Fatalf("second try: %v %v", r.Status, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Greylist(ctx, req); err == nil {
		t.Fatal("greylist on a closed store: no error")
	}
	s2 := openTestBolt(t, path)
	req.Now = t0.Add(2 * time.Hour)
	if r, err := s2.Greylist(ctx, req); err != nil || r.Status != GreylistKnown {
		t.Fatalf("after restart: %v %v, want known", r.Status, err)
	}
}

func TestBoltLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openTestBolt(t, path).Close()
	// Another process's lock: bbolt's flock is per open file description,
	// so a description of our own stands for it.
	other, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(BoltOptions{Path: path, LockTimeout: 50 * time.Millisecond, SweepInterval: -1})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a file another process locked: %v, want a timeout naming the path", err)
	}
}

// TestBoltSharedInProcess is a config reload: the new plugin instance
// opens the file while the old one still has it; both see one state, the
// old one's Close leaves the new one working, and the file is unlocked
// once the last handle is closed.
func TestBoltSharedInProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	ctx := context.Background()
	old, err := OpenBolt(BoltOptions{Path: path, LockTimeout: 50 * time.Millisecond, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	req := GreylistRequest{Triplet: "t", Network: "n", Now: t0, Delay: time.Minute, RetryWindow: time.Hour, Expire: 24 * time.Hour}
	if r, err := old.Greylist(ctx, req); err != nil || r.Status != GreylistNew {
		t.Fatalf("first try: %v %v", r.Status, err)
	}
	// The same file by another spelling of its path.
	t.Chdir(dir)
	cur, err := OpenBolt(BoltOptions{Path: "./state.db", LockTimeout: 50 * time.Millisecond, SweepInterval: -1})
	if err != nil {
		t.Fatalf("second open in the process: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Greylist(ctx, req); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed handle: %v, want ErrClosed", err)
	}
	req.Now = t0.Add(2 * time.Minute)
	if r, err := cur.Greylist(ctx, req); err != nil || r.Status != GreylistPassed {
		t.Fatalf("retry on the new handle: %v %v, want passed (the old handle's record)", r.Status, err)
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("file still locked after the last handle closed: %v", err)
	}
}

func TestBoltSweep(t *testing.T) {
	s := openTestBolt(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := context.Background()
	// One record of each kind, expiring at t0+1m (greylist new: window),
	// t0+1s (GCRA: TAT) and t0+1m (lease).
	s.Greylist(ctx, GreylistRequest{Triplet: "t", Network: "n", Now: t0, Delay: time.Second, RetryWindow: time.Minute, Expire: time.Hour, AutoAllowAfter: 1})
	s.Take(ctx, "r", t0, Rate{Count: 1, Window: time.Second})
	s.Acquire(ctx, "c", "h", 1, time.Minute, t0)
	if n, err := s.Sweep(ctx, t0.Add(time.Minute-time.Microsecond)); err != nil || n != 1 {
		t.Fatalf("sweep before the greylist and lease expiry: %d deleted (%v), want 1 (the rate)", n, err)
	}
	if n, err := s.Sweep(ctx, t0.Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("sweep at expiry: %d deleted (%v), want 2", n, err)
	}
}

// TestRedisSetsTTLs: Redis expires what the logic no longer needs.
func TestRedisSetsTTLs(t *testing.T) {
	s := OpenTestRedis(t)
	ctx := context.Background()
	c := s.Client()
	s.Greylist(ctx, GreylistRequest{Triplet: "t", Network: "n", Now: t0, Delay: time.Minute, RetryWindow: time.Hour, Expire: 24 * time.Hour, AutoAllowAfter: 1})
	s.Take(ctx, "r", t0, Rate{Count: 10, Window: 10 * time.Second})
	s.Acquire(ctx, "c", "h", 1, time.Minute, t0)
	for key, want := range map[string]time.Duration{"{n}t:t": time.Hour, "r:r": time.Second, "c:c": time.Minute} {
		ttl, err := c.PTTL(ctx, s.Prefix()+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > want || ttl < want-5*time.Second {
			t.Errorf("TTL of %s = %v, want about %v", key, ttl, want)
		}
	}
	s.Greylist(ctx, GreylistRequest{Triplet: "t", Network: "n", Now: t0.Add(time.Minute), Delay: time.Minute, RetryWindow: time.Hour, Expire: 24 * time.Hour, AutoAllowAfter: 1})
	for _, key := range []string{"{n}t:t", "{n}n"} { // one hash tag: one Cluster slot
		if ttl, _ := c.PTTL(ctx, s.Prefix()+key).Result(); ttl < 23*time.Hour {
			t.Errorf("TTL of %s after the pass = %v, want about the 24h expiry", key, ttl)
		}
	}
}

// TestRedisDown: an unreachable server is an error naming what was being
// done, and Outage logs it once.
func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s, err := NewRedis(RedisOptions{Addr: addr, Prefix: "x:", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	_, err = s.Greylist(ctx, GreylistRequest{Triplet: "t", Network: "n", Now: t0, Delay: 1, RetryWindow: 2, Expire: 3})
	if err == nil || !strings.Contains(err.Error(), "redis store: greylist check") {
		t.Fatalf("greylist against a closed port: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping against a closed port: no error")
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(Options{Kind: "memcached"}); err == nil || !strings.Contains(err.Error(), `unknown store "memcached"`) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := Open(Options{Kind: KindBolt}); err == nil {
		t.Error("bolt without a path: no error")
	}
	if _, err := Open(Options{Kind: KindRedis}); err == nil {
		t.Error("redis without an address: no error")
	}
}

// TestRedisTimeout: a server that accepts but never answers fails a call
// after RedisOptions.Timeout, not later.
func TestRedisTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup // the accept loop and each connection
	defer wg.Wait()
	defer ln.Close() // runs first: ends the accept loop
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c); c.Close() }() // reads, never answers; ends when the client closes
		}
	}()
	const timeout = 300 * time.Millisecond
	s, err := NewRedis(RedisOptions{Addr: ln.Addr().String(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Take(context.Background(), "k", t0, Rate{Count: 1, Window: time.Second})
	elapsed := time.Since(start)
	s.Close()
	if err == nil || !strings.Contains(err.Error(), "redis store: rate take") {
		t.Fatalf("take against a silent server: %v", err)
	}
	// One retry (MaxRetries 1) may double it; the handshake adds a read.
	if elapsed < timeout || elapsed > 6*timeout {
		t.Fatalf("failed after %v, want between %v and %v", elapsed, timeout, 6*timeout)
	}
}

// TestHolderLength: a lease holder's name may have 1 to 1024 bytes.
func TestHolderLength(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t)
			ctx := context.Background()
			for _, tc := range []struct {
				n  int
				ok bool
			}{{0, false}, {1, true}, {maxHolder, true}, {maxHolder + 1, false}} {
				_, err := s.Acquire(ctx, "k", strings.Repeat("h", tc.n), 10, time.Minute, t0)
				if (err == nil) != tc.ok {
					t.Errorf("holder of %d bytes: %v", tc.n, err)
				}
			}
		})
	}
}
