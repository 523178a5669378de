package pluginhost

import (
	"log/slog"
	"time"

	"github.com/elemta/elemta/registry"
)

// Observer watches the executor: the host's metrics (internal/metrics)
// implement it. ObserveCall is called once per plugin call, after the
// result is complete (instance name in r.Plugin, r.Stage, r.Duration, the
// verdict, r.Err, r.TimedOut, r.Panicked), from the goroutine that ran
// the stage; ObserveStage once per ExecuteStage that ran, with the merged
// result and the stage's duration. Both must be cheap and safe for
// concurrent use, and must not keep r or sr.
type Observer interface {
	ObserveCall(r *registry.Result)
	ObserveStage(sr *StageResult, d time.Duration)
}

// WithObserver makes the Manager report every plugin call and stage to o.
func WithObserver(o Observer) Option { return func(m *Manager) { m.observer = o } }

// WithPluginLogger gives each plugin instance the logger f returns for
// its instance ID, instead of the host logger with a "plugin" attribute
// (the host's per-plugin level, format and file: internal/obslog).
func WithPluginLogger(f func(instance string) *slog.Logger) Option {
	return func(m *Manager) { m.pluginLogger = f }
}

// WithPluginMetrics gives each plugin instance the Metrics f returns for
// its instance ID and plugin name, as Host.Metrics.
func WithPluginMetrics(f func(instance, plugin string) registry.Metrics) Option {
	return func(m *Manager) { m.pluginMetrics = f }
}

// nopObserver observes nothing: the Manager's default.
type nopObserver struct{}

func (nopObserver) ObserveCall(*registry.Result)             {}
func (nopObserver) ObserveStage(*StageResult, time.Duration) {}

var _ Observer = nopObserver{}
