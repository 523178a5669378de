package pluginhost

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/elemta/elemta/registry"
)

// trivial is the work each benchmarked plugin does: it reads a header and
// returns a result, as a cheap real filter would.
func trivial(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if pc.Message.Header.Get("Subject") == "" {
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "no subject")}, nil
	}
	return &registry.Result{}, nil
}

// BenchmarkExecuteStage runs n trivial plugins through the executor and,
// side by side, the same n calls made directly in a loop: the difference
// per plugin is the executor's overhead.
func BenchmarkExecuteStage(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		var plugins []stagePlugin
		for i := range n {
			plugins = append(plugins, stagePlugin{name: fmt.Sprintf("p%d", i), fn: trivial})
		}
		m := testManager(b, "", plugins...)
		pc := testContext(b)
		msg := pc.Message
		ctx := context.Background()
		b.Run(fmt.Sprintf("plugins=%d/executor", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pc := registry.NewProcessingContext(msg, nil) // results must not pile up across iterations
				if _, err := m.ExecuteStage(ctx, registry.PostReception, pc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("plugins=%d/direct", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for range n {
					if _, err := trivial(ctx, registry.PostReception, pc); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		// The executor's time per plugin over the floor's per call.
		b.Run(fmt.Sprintf("plugins=%d/per-plugin-over-floor", n), func(b *testing.B) {
			ratio(b, func() {
				if _, err := m.ExecuteStage(ctx, registry.PostReception, registry.NewProcessingContext(msg, nil)); err != nil {
					b.Fatal(err)
				}
			}, float64(n), floorCall)
		})
	}
}

// floorCall is one call of the floor: a goroutine started under a
// deadline context, waited for on a channel.
func floorCall() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	ch := make(chan int, 1)
	go func() { ch <- 1 }()
	select {
	case <-ch:
	case <-ctx.Done():
	}
	cancel()
}

// ratio runs a and then b (or b and then a, alternately) in each
// iteration and reports the ratio of their summed times as "ratio", with
// a's time divided by per first: on a machine shared with other jobs,
// the ratio of two functions timed in the same loop is the figure that
// holds still when absolute times drift.
func ratio(b *testing.B, a func(), per float64, c func()) {
	var ta, tc time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			t0 := time.Now()
			a()
			t1 := time.Now()
			c()
			ta, tc = ta+t1.Sub(t0), tc+time.Since(t1)
		} else {
			t0 := time.Now()
			c()
			t1 := time.Now()
			a()
			tc, ta = tc+t1.Sub(t0), ta+time.Since(t1)
		}
		i++
	}
	b.ReportMetric(float64(ta)/per/float64(tc), "ratio")
}

// parallelRatio is ratio with 4 callers per processor, as concurrent SMTP
// sessions are: each round runs a's callers, then c's (the other way round
// every second round), each caller 8 calls, and times them.
func parallelRatio(b *testing.B, a, c func()) {
	callers := 4 * runtime.GOMAXPROCS(0)
	run := func(f func()) time.Duration {
		var wg sync.WaitGroup
		t0 := time.Now()
		for range callers {
			wg.Go(func() {
				for range 8 {
					f()
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	var ta, tc time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			ta += run(a)
			tc += run(c)
		} else {
			tc += run(c)
			ta += run(a)
		}
	}
	b.ReportMetric(float64(ta)/float64(tc), "ratio")
}

// BenchmarkFloor measures, in the same run, what any executor that can
// abandon a hung plugin must pay per plugin on this machine: starting a
// goroutine and waiting for its answer, and the same with a deadline
// context (the plugin must see its timeout).
func BenchmarkFloor(b *testing.B) {
	b.Run("goroutine+channel", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ch := make(chan int, 1)
			go func() { ch <- 1 }()
			<-ch
		}
	})
	b.Run("goroutine+channel+deadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			floorCall()
		}
	})
}

// stackHungry is the work of a realistic plugin: an RSA-2048 signature
// check (as dkim and arc do), a regexp and fmt, and a call chain that
// needs about 32 KiB of stack (a parser's recursion), so a goroutine
// starting on a small stack has to grow it several times.
type stackHungry struct {
	pub    *rsa.PublicKey
	digest []byte
	sig    []byte
	re     *regexp.Regexp
}

func newStackHungry(b *testing.B) *stackHungry {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("message"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		b.Fatal(err)
	}
	return &stackHungry{pub: &key.PublicKey, digest: sum[:], sig: sig, re: regexp.MustCompile(`^([a-z]+)@([a-z.]+)$`)}
}

//go:noinline
func deepFrame(n int, buf *[1024]byte) byte {
	var local [1024]byte
	local[n%1024] = byte(n)
	if n == 0 {
		return local[0] ^ buf[0]
	}
	return deepFrame(n-1, &local) ^ local[n%1024]
}

func (s *stackHungry) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if err := rsa.VerifyPKCS1v15(s.pub, crypto.SHA256, s.digest, s.sig); err != nil {
		return nil, err
	}
	m := s.re.FindStringSubmatch("someone@example.test")
	var buf [1024]byte
	d := deepFrame(32, &buf)
	return &registry.Result{Details: fmt.Sprintf("ok: %s at %s (%d, %s)", m[1], m[2], d, pc.Message.Header.Get("Subject"))}, nil
}

// BenchmarkStackHungry runs a chain of four stack-hungry plugins (each
// after the previous, so they run one at a time, as direct calls do)
// through the executor and, in the same run, calls the same four directly.
func BenchmarkStackHungry(b *testing.B) {
	s := newStackHungry(b)
	for _, n := range []int{1, 4} {
		var plugins []stagePlugin
		for i := range n {
			p := stagePlugin{name: fmt.Sprintf("p%d", i), fn: s.HandleStage}
			if i > 0 {
				p.after = []string{fmt.Sprintf("p%d", i-1)}
			}
			plugins = append(plugins, p)
		}
		m := testManager(b, "", plugins...)
		msg := testContext(b).Message
		ctx := context.Background()
		b.Run(fmt.Sprintf("plugins=%d/executor", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pc := registry.NewProcessingContext(msg, nil)
				sr, err := m.ExecuteStage(ctx, registry.PostReception, pc)
				if err != nil || sr.Results[n-1].Err != nil {
					b.Fatal(err, sr.Results)
				}
			}
		})
		direct := func() {
			pc := registry.NewProcessingContext(msg, nil)
			for range n {
				if _, err := s.HandleStage(ctx, registry.PostReception, pc); err != nil {
					b.Error(err)
				}
			}
		}
		b.Run(fmt.Sprintf("plugins=%d/direct", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				direct()
			}
		})
		executor := func() {
			if _, err := m.ExecuteStage(ctx, registry.PostReception, registry.NewProcessingContext(msg, nil)); err != nil {
				b.Error(err)
			}
		}
		b.Run(fmt.Sprintf("plugins=%d/executor-over-direct", n), func(b *testing.B) { ratio(b, executor, 1, direct) })
		// The least any executor that can abandon a plugin pays: the same
		// calls made by one long-lived goroutine, handed over and answered
		// through channels, nothing else (no deadline, no merge).
		b.Run(fmt.Sprintf("plugins=%d/handoff-over-direct", n), func(b *testing.B) {
			calls, answers := make(chan struct{}), make(chan struct{}, 1)
			go func() {
				for range calls {
					direct()
					answers <- struct{}{}
				}
			}()
			defer close(calls)
			ratio(b, func() { calls <- struct{}{}; <-answers }, 1, direct)
		})
		// 4 callers per core, as concurrent SMTP sessions are: the cores
		// are busy, so handing a call to a worker wakes no idle one.
		b.Run(fmt.Sprintf("plugins=%d/parallel-executor", n), func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					executor()
				}
			})
		})
		b.Run(fmt.Sprintf("plugins=%d/parallel-direct", n), func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					direct()
				}
			})
		})
		b.Run(fmt.Sprintf("plugins=%d/parallel-executor-over-direct", n), func(b *testing.B) { parallelRatio(b, executor, direct) })
	}
}
