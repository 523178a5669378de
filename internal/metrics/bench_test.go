package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// BenchmarkExecutorMetrics runs the executor over n trivial plugins with
// the metrics observer off and on, side by side in one run: the
// difference is the metrics' cost per stage (BENCHMARKS.md).
func BenchmarkExecutorMetrics(b *testing.B) {
	for _, n := range []int{1, 4} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf(`"metricsprobe/p%d"`, i)
		}
		toml := "[plugins]\nplugins = [" + strings.Join(names, ", ") + "]\n"
		for _, on := range []bool{false, true} {
			var m *Metrics
			if on {
				m = New(BuildInfo{})
			}
			mgr := manager(b, m, toml)
			msg, err := registry.ParseMessage([]byte("Subject: quiet\r\n\r\nbody\r\n"), registry.Envelope{})
			if err != nil {
				b.Fatal(err)
			}
			label := map[bool]string{false: "off", true: "on"}[on]
			b.Run(fmt.Sprintf("plugins=%d/metrics=%s", n, label), func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				for b.Loop() {
					pc := registry.NewProcessingContext(msg, nil)
					if _, err := mgr.ExecuteStage(ctx, registry.PostReception, pc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkObserve is the observer's own cost: what metrics add to one
// plugin call (ObserveCall) and to one stage (ObserveStage), known series.
func BenchmarkObserve(b *testing.B) {
	m := New(BuildInfo{})
	r := &registry.Result{Plugin: "p0", Stage: registry.PostReception, Duration: 1500}
	sr := &pluginhost.StageResult{Stage: registry.PostReception}
	b.Run("call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveCall(r)
		}
	})
	b.Run("stage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveStage(sr, 1500)
		}
	})
}
