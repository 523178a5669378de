// Package metrics is the host's Prometheus metrics: the executor's
// observer (per plugin instance and stage), the metrics plugins make
// through registry.Host.Metrics, elemta_build_info, elemta_plugin_info,
// and the SMTP, spool, delivery and resolver counters read at each scrape.
// docs/metrics.md tables every metric.
package metrics

import (
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// DefaultMaxSeries bounds the label value sets one plugin-made metric keeps.
const DefaultMaxSeries = 1000

// DurationBuckets are the buckets of the plugin and stage duration
// histograms, in seconds: 100 µs to 60 s.
var DurationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics is one process's metrics registry.
type Metrics struct {
	reg       *prometheus.Registry
	maxSeries int

	calls, errors, timeouts, panics *prometheus.CounterVec
	verdicts                        *prometheus.CounterVec
	duration                        *prometheus.HistogramVec
	stageDuration                   *prometheus.HistogramVec
	stageVerdicts                   *prometheus.CounterVec
	pluginInfo                      *prometheus.GaugeVec

	// handles is copied on write: the executor's lookups take no lock.
	handles atomic.Pointer[map[callKey]*callHandles]
	mu      sync.RWMutex // guards stages, last and writes of handles
	stages  map[registry.Stage]*stageHandles
	last    map[string]LastError

	customMu sync.Mutex
	custom   map[string]*custom

	collectorsMu sync.Mutex
	collectors   []prometheus.Collector
}

type callKey struct {
	plugin string
	stage  registry.Stage
}

// callHandles are the series of one (instance, stage), looked up once.
type callHandles struct {
	calls, errors, timeouts, panics prometheus.Counter
	verdicts                        [numActions]prometheus.Counter
	duration                        prometheus.Observer
}

type stageHandles struct {
	duration prometheus.Observer
	verdicts [numActions]prometheus.Counter
	// for the admin API, without going through the Prometheus registry
	runs, nanos atomic.Int64
	byAction    [numActions]atomic.Int64
}

// StageStats counts one stage's runs since start.
type StageStats struct {
	Stage    string           `json:"stage"`
	Runs     int64            `json:"runs"`
	TotalMS  float64          `json:"total_ms"`
	Verdicts map[string]int64 `json:"verdicts"`
}

// StageStats returns the stages that ran, in stage order.
func (m *Metrics) StageStats() []StageStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []StageStats
	for _, st := range registry.Stages() {
		h := m.stages[st]
		if h == nil {
			continue
		}
		s := StageStats{Stage: st.String(), Runs: h.runs.Load(), TotalMS: float64(h.nanos.Load()) / 1e6, Verdicts: map[string]int64{}}
		for a := range h.byAction {
			s.Verdicts[registry.Action(a).String()] = h.byAction[a].Load()
		}
		out = append(out, s)
	}
	return out
}

// LastError is a plugin instance's most recent failure.
type LastError struct {
	At    time.Time `json:"at"`
	Stage string    `json:"stage"`
	Error string    `json:"error"`
}

const numActions = int(registry.Reject) + 1

// Option configures New.
type Option func(*Metrics)

// WithMaxSeries bounds the label value sets of each plugin-made metric
// ([admin] max_plugin_series).
func WithMaxSeries(n int) Option { return func(m *Metrics) { m.maxSeries = n } }

// New returns a registry with the executor's metrics, elemta_build_info
// and the Go and process collectors.
func New(build BuildInfo, opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), maxSeries: DefaultMaxSeries,
		stages: map[registry.Stage]*stageHandles{}, last: map[string]LastError{}, custom: map[string]*custom{}}
	m.handles.Store(&map[callKey]*callHandles{})
	for _, o := range opts {
		o(m)
	}
	pl := []string{"plugin", "stage"}
	m.calls = m.counterVec("elemta_plugin_calls_total", "Plugin calls, by plugin instance and stage.", pl...)
	m.errors = m.counterVec("elemta_plugin_errors_total", "Plugin calls that failed (errors, timeouts and panics), by plugin instance and stage.", pl...)
	m.timeouts = m.counterVec("elemta_plugin_timeouts_total", "Plugin calls cut off at their timeout.", pl...)
	m.panics = m.counterVec("elemta_plugin_panics_total", "Plugin calls that panicked.", pl...)
	m.verdicts = m.counterVec("elemta_plugin_verdicts_total", "Plugin verdicts by action (after on_error), by plugin instance and stage.", "plugin", "stage", "action")
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "elemta_plugin_duration_seconds",
		Help: "Time of each plugin call, by plugin instance and stage.", Buckets: DurationBuckets}, pl)
	m.stageDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "elemta_stage_duration_seconds",
		Help: "Time of each stage run, all its plugins together.", Buckets: DurationBuckets}, []string{"stage"})
	m.stageVerdicts = m.counterVec("elemta_stage_verdicts_total", "Merged stage verdicts by action.", "stage", "action")
	m.pluginInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "elemta_plugin_info",
		Help: "Always 1: a loaded plugin instance, its plugin's name and version, and the Go module it comes from."}, []string{"plugin", "name", "version", "module", "module_version"})
	m.register(m.duration, m.stageDuration, m.pluginInfo, buildInfoGauge(build),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.register(v)
	return v
}

// register registers the host's collectors and keeps them for Names.
func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.collectorsMu.Lock()
	m.collectors = append(m.collectors, cs...)
	m.collectorsMu.Unlock()
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists every metric name the registry can export, series or not
// (the host's, and those plugins made): what docs/metrics.md tables and
// the alert rules may name.
func (m *Metrics) Names() []string {
	m.collectorsMu.Lock()
	cs := slices.Clone(m.collectors)
	m.collectorsMu.Unlock()
	m.customMu.Lock()
	for name := range m.custom {
		cs = append(cs, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "-"}))
	}
	m.customMu.Unlock()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		if sm := fqName.FindStringSubmatch(d.String()); sm != nil {
			names = append(names, sm[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Registry is the underlying Prometheus registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// PluginInfo records a loaded plugin instance: its plugin's name and
// declared version, its Go module and that module's version.
func (m *Metrics) PluginInfo(instance, name, version, module, moduleVersion string) {
	m.pluginInfo.WithLabelValues(instance, name, orUnknown(version), orUnknown(module), orUnknown(moduleVersion)).Set(1)
}

// ObserveCall implements pluginhost.Observer.
func (m *Metrics) ObserveCall(r *registry.Result) {
	k := callKey{r.Plugin, r.Stage}
	h := (*m.handles.Load())[k]
	if h == nil {
		h = m.newHandles(k)
	}
	h.calls.Inc()
	h.duration.Observe(r.Duration.Seconds())
	if a := int(r.Verdict.Action); a >= 0 && a < numActions {
		h.verdicts[a].Inc()
	}
	if r.Err != nil {
		h.errors.Inc()
		if r.TimedOut {
			h.timeouts.Inc()
		}
		if r.Panicked {
			h.panics.Inc()
		}
		m.mu.Lock()
		m.last[r.Plugin] = LastError{At: time.Now().UTC(), Stage: r.Stage.String(), Error: r.Err.Error()}
		m.mu.Unlock()
	}
}

func (m *Metrics) newHandles(k callKey) *callHandles {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.handles.Load()
	if h := old[k]; h != nil {
		return h
	}
	st := k.stage.String()
	h := &callHandles{calls: m.calls.WithLabelValues(k.plugin, st), errors: m.errors.WithLabelValues(k.plugin, st),
		timeouts: m.timeouts.WithLabelValues(k.plugin, st), panics: m.panics.WithLabelValues(k.plugin, st),
		duration: m.duration.WithLabelValues(k.plugin, st)}
	for a := range h.verdicts {
		h.verdicts[a] = m.verdicts.WithLabelValues(k.plugin, st, registry.Action(a).String())
	}
	next := make(map[callKey]*callHandles, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = h
	m.handles.Store(&next)
	return h
}

// ObserveStage implements pluginhost.Observer.
func (m *Metrics) ObserveStage(sr *pluginhost.StageResult, d time.Duration) {
	m.mu.RLock()
	h := m.stages[sr.Stage]
	m.mu.RUnlock()
	if h == nil {
		m.mu.Lock()
		if h = m.stages[sr.Stage]; h == nil {
			st := sr.Stage.String()
			h = &stageHandles{duration: m.stageDuration.WithLabelValues(st)}
			for a := range h.verdicts {
				h.verdicts[a] = m.stageVerdicts.WithLabelValues(st, registry.Action(a).String())
			}
			m.stages[sr.Stage] = h
		}
		m.mu.Unlock()
	}
	h.duration.Observe(d.Seconds())
	h.runs.Add(1)
	h.nanos.Add(int64(d))
	if a := int(sr.Verdict.Action); a >= 0 && a < numActions {
		h.verdicts[a].Inc()
		h.byAction[a].Add(1)
	}
}

// LastErrors returns each plugin instance's most recent failure.
func (m *Metrics) LastErrors() map[string]LastError {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]LastError, len(m.last))
	for k, v := range m.last {
		out[k] = v
	}
	return out
}

var _ pluginhost.Observer = (*Metrics)(nil)
