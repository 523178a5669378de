package metrics

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elemta/elemta/registry"
)

// OtherValue replaces every label value of a sample once its metric holds
// max_plugin_series value sets.
const OtherValue = "other"

var metricName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// custom is one metric made through Host.Metrics, shared by the instances
// of its plugin.
type custom struct {
	kind    string // "counter", "histogram"
	help    string
	labels  []string // the plugin's labels, without "plugin"
	buckets []float64
	counter *prometheus.CounterVec
	hist    *prometheus.HistogramVec

	mu     sync.Mutex
	series map[string]bool // label value sets seen, joined by \xff
}

// ForPlugin returns the registry.Metrics of a plugin instance: its
// metrics are named elemta_plugin_<plugin>_<name> and labelled
// plugin=<instance>.
func (m *Metrics) ForPlugin(instance, plugin string) registry.Metrics {
	return &pluginMetrics{m: m, instance: instance, prefix: "elemta_plugin_" + strings.ReplaceAll(plugin, "-", "_") + "_"}
}

type pluginMetrics struct {
	m        *Metrics
	instance string
	prefix   string
}

func (p *pluginMetrics) Counter(name, help string, labels ...string) (registry.Counter, error) {
	if !strings.HasSuffix(name, "_total") {
		return nil, fmt.Errorf("metric %q: a counter's name ends in _total", name)
	}
	c, err := p.m.make(p.prefix+name, "counter", help, labels, nil)
	if err != nil {
		return nil, err
	}
	return &series{c: c, instance: p.instance, max: p.m.maxSeries}, nil
}

func (p *pluginMetrics) Histogram(name, help string, buckets []float64, labels ...string) (registry.Histogram, error) {
	if strings.HasSuffix(name, "_total") {
		return nil, fmt.Errorf("metric %q: a histogram's name ends in its unit, not _total", name)
	}
	if len(buckets) == 0 {
		buckets = prometheus.DefBuckets
	}
	if !slices.IsSorted(buckets) {
		return nil, fmt.Errorf("metric %q: buckets must be in increasing order", name)
	}
	c, err := p.m.make(p.prefix+name, "histogram", help, labels, buckets)
	if err != nil {
		return nil, err
	}
	return &series{c: c, instance: p.instance, max: p.m.maxSeries}, nil
}

// make returns the metric full, creating and registering it the first time.
func (m *Metrics) make(full, kind, help string, labels []string, buckets []float64) (*custom, error) {
	if !metricName.MatchString(full) {
		return nil, fmt.Errorf("metric %q: use lowercase letters, digits and _, starting with a letter", full)
	}
	for _, l := range labels {
		if !metricName.MatchString(l) || l == "plugin" || strings.HasPrefix(l, "__") {
			return nil, fmt.Errorf("metric %q: label %q: use lowercase letters, digits and _ (and not \"plugin\", which the host sets)", full, l)
		}
	}
	if help == "" {
		return nil, fmt.Errorf("metric %q: help text is required", full)
	}
	m.customMu.Lock()
	defer m.customMu.Unlock()
	if c, ok := m.custom[full]; ok {
		if c.kind != kind || c.help != help || !slices.Equal(c.labels, labels) || !slices.Equal(c.buckets, buckets) {
			return nil, fmt.Errorf("metric %q already exists as a %s with labels %v: made again differently", full, c.kind, c.labels)
		}
		return c, nil
	}
	c := &custom{kind: kind, help: help, labels: slices.Clone(labels), buckets: slices.Clone(buckets), series: map[string]bool{}}
	all := append([]string{"plugin"}, labels...)
	var col prometheus.Collector
	if kind == "counter" {
		c.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: full, Help: help}, all)
		col = c.counter
	} else {
		c.hist = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: full, Help: help, Buckets: buckets}, all)
		col = c.hist
	}
	if err := m.reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil, fmt.Errorf("metric %q is a metric of the host", full)
		}
		return nil, fmt.Errorf("metric %q: %w", full, err)
	}
	m.custom[full] = c
	return c, nil
}

// series is a plugin instance's handle on a custom metric.
type series struct {
	c        *custom
	instance string
	max      int
}

func (s *series) values(lv []string) ([]string, bool) {
	if len(lv) != len(s.c.labels) {
		return nil, false
	}
	all := make([]string, 0, len(lv)+1)
	all = append(all, s.instance)
	lv = slices.Clone(lv)
	for i, v := range lv {
		lv[i] = labelValue(v)
	}
	key := strings.Join(append(all, lv...), "\xff")
	s.c.mu.Lock()
	known := s.c.series[key]
	if !known && len(s.c.series) < s.max {
		s.c.series[key], known = true, true
	}
	s.c.mu.Unlock()
	if !known {
		for range lv {
			all = append(all, OtherValue)
		}
		return all, true
	}
	return append(all, lv...), true
}

// MaxLabelValue bounds a label value's bytes; longer ones are cut.
const MaxLabelValue = 128

// labelValue makes a value from outside safe for a label: valid UTF-8
// (Prometheus refuses anything else), at most MaxLabelValue bytes.
func labelValue(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if len(v) > MaxLabelValue {
		v = strings.ToValidUTF8(v[:MaxLabelValue], "")
	}
	return v
}

func (s *series) Add(v float64, labelValues ...string) {
	if v < 0 || s.c.counter == nil {
		return
	}
	if all, ok := s.values(labelValues); ok {
		s.c.counter.WithLabelValues(all...).Add(v)
	}
}

func (s *series) Observe(v float64, labelValues ...string) {
	if s.c.hist == nil {
		return
	}
	if all, ok := s.values(labelValues); ok {
		s.c.hist.WithLabelValues(all...).Observe(v)
	}
}

var (
	_ registry.Metrics   = (*pluginMetrics)(nil)
	_ registry.Counter   = (*series)(nil)
	_ registry.Histogram = (*series)(nil)
)
