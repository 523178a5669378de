package registrytest

import (
	"bytes"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// goroutines returns the stacks of every goroutine by id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		header, _, _ := strings.Cut(string(g), "\n")
		// "goroutine 12 [running]:"
		fields := strings.Fields(header)
		if len(fields) >= 2 && fields[0] == "goroutine" {
			out[fields[1]] = string(g)
		}
	}
	return out
}

// ignored goroutines belong to the test framework, the runtime or the
// host, not to the plugin. An idle plugin worker of pluginhost's Manager
// (one waiting for the next call, which a Manager keeps between stages until
// it is closed) is the host's; a worker still inside a plugin call is not
// ignored.
func ignored(stack string) bool {
	if strings.Contains(stack, "pluginhost.(*workers).work(") && !strings.Contains(stack, "pluginhost.(*instance).call(") {
		return true
	}
	for _, s := range []string{
		"testing.(*T).Run(",
		"testing.tRunner(",
		"testing.runTests(",
		"testing.(*M).",
		"os/signal.signal_recv",
		"runtime.ensureSigM",
		"created by runtime.gc",
		"runtime/trace.",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// leaked returns the stacks of goroutines that are not in before.
func leaked(before map[string]string) []string {
	var out []string
	for id, stack := range goroutines() {
		if _, ok := before[id]; !ok && !ignored(stack) {
			out = append(out, stack)
		}
	}
	return out
}

// requireNoLeak fails t when goroutines started since before are still
// running wait after the call, listing their stacks.
func requireNoLeak(t *testing.T, before map[string]string, wait time.Duration) {
	t.Helper()
	if left := waitLeaks(before, wait); len(left) > 0 {
		t.Fatalf("%d goroutine(s) still running %v after Close; every goroutine a plugin starts must end when it is closed:\n\n%s",
			len(left), wait, strings.Join(left, "\n\n"))
	}
}

// CheckLeaks makes t fail when goroutines started during it are still
// running at its end, after up to 5s for them to wind down, listing their
// stacks. Call it first in a test of a plugin that talks to a daemon (fake
// servers, pools, readers); not in a test that runs t.Parallel, whose
// neighbours' goroutines would count.
func CheckLeaks(t testing.TB) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		if left := waitLeaks(before, 5*time.Second); len(left) > 0 {
			t.Errorf("%d goroutine(s) leaked:\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

// waitLeaks waits up to wait for the goroutines started since before to
// end, and returns the stacks of those still running. A closed plugin's
// goroutines exit on their own schedule, so it polls for the condition
// rather than sleeping a fixed time.
func waitLeaks(before map[string]string, wait time.Duration) []string {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		left := leaked(before)
		if len(left) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return left
		}
	}
}

// testLogger logs through t.Log until the test ends, and drops records
// after that (a late log line must not crash the test binary).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)
