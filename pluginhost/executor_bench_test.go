package pluginhost

import (
	"context"
	"fmt"
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
	}
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
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			ch := make(chan int, 1)
			go func() { ch <- 1 }()
			select {
			case <-ch:
			case <-ctx.Done():
			}
			cancel()
		}
	})
}
