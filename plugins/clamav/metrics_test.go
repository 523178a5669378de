package clamav

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// recorder is a registry.Metrics that keeps what the plugin counts.
type recorder struct {
	mu     sync.Mutex
	made   []string
	counts map[string]float64 // name + "{" + values + "}"
}

type recCounter struct {
	r    *recorder
	name string
}

func (r *recorder) Counter(name, _ string, labels ...string) (registry.Counter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made = append(r.made, name+"("+strings.Join(labels, ",")+")")
	return recCounter{r, name}, nil
}

func (r *recorder) Histogram(name, _ string, _ []float64, _ ...string) (registry.Histogram, error) {
	return registry.NopMetrics{}.Histogram(name, "", nil)
}

func (c recCounter) Add(v float64, lv ...string) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.counts[c.name+"{"+strings.Join(lv, ",")+"}"] += v
}

// TestInfectionsMetric: each infected message counts once under its
// signature; clean ones count nothing.
func TestInfectionsMetric(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	rec := &recorder{counts: map[string]float64{}}
	doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = 10\n", tcp)
	m := registrytest.Load(t, doc, registry.Host{Metrics: rec})
	for _, f := range []string{"clean.eml", "eicar-plain.eml", "eicar-base64.eml"} {
		pc := registry.NewProcessingContext(readMessage(t, f), nil)
		if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.made) != 1 || rec.made[0] != "infections_total(signature)" {
		t.Fatalf("metrics made: %v", rec.made)
	}
	total := 0.0
	for k, v := range rec.counts {
		if !strings.HasPrefix(k, "infections_total{Eicar-Test-Signature") {
			t.Errorf("unexpected series %s", k)
		}
		total += v
	}
	if total != 2 {
		t.Errorf("infections counted %v, want 2 (%v)", total, rec.counts)
	}
}
