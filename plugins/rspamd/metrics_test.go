package rspamd

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// actionRecorder is a registry.Metrics keeping the counts by label values.
type actionRecorder struct {
	mu     sync.Mutex
	made   []string
	counts map[string]float64
}

func (r *actionRecorder) Counter(name, _ string, labels ...string) (registry.Counter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made = append(r.made, fmt.Sprint(name, labels))
	return r, nil
}

func (r *actionRecorder) Histogram(string, string, []float64, ...string) (registry.Histogram, error) {
	return registry.NopMetrics{}.Histogram("", "", nil)
}

func (r *actionRecorder) Add(v float64, lv ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[fmt.Sprint(lv)] += v
}

// TestActionsMetric: each message checked counts once under rspamd's action.
func TestActionsMetric(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	rec := &actionRecorder{counts: map[string]float64{}}
	host := testHost
	host.Metrics = rec
	m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\ntimeout = 10\n", url), host)
	for _, f := range []string{"gtube.eml", "normal.eml", "normal.eml"} {
		pc := registry.NewProcessingContext(message(t, readFile(t, f), testEnvelope), &registry.Session{ID: "m1"})
		if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.made) != 1 || rec.made[0] != "actions_total[action]" {
		t.Fatalf("metrics made: %v", rec.made)
	}
	if rec.counts["[reject]"] != 1 || rec.counts["[no action]"] != 2 || len(rec.counts) != 2 {
		t.Errorf("counts %v, want reject 1 and no action 2", rec.counts)
	}
}
