package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// Manager builds the enabled plugins from config, runs them at each stage
// and closes them.
//
// A Manager is safe for concurrent use: stages, EndSession and the
// accessors may run at once; LoadPlugins, LoadPlugin and Close wait for
// them and exclude each other. After Close, ExecuteStage returns ErrClosed
// rather than run no plugins.
type Manager struct {
	cfg  *Config
	host registry.Host
	cat  *catalog.Catalog

	observer      Observer
	pluginLogger  func(instance string) *slog.Logger
	pluginMetrics func(instance, plugin string) registry.Metrics

	mu     sync.RWMutex
	closed bool

	loaded []*instance          // in start order
	byName map[string]*instance //
	waves  map[registry.Stage][][]*instance
	// preWaves holds, for each phase, the pre-reception waves without the
	// plugins that declared no work at that phase.
	preWaves map[registry.Phase][][]*instance
	sizes    map[registry.Stage]int // plugins of each stage

	workers   *workers   // run the plugin calls of every stage
	deadlines *deadlines // the waves' deadline contexts

	onClose []func() error // WithOnClose, run by the first Close after the plugins
}

// instance is one loaded plugin instance.
type instance struct {
	name     string // instance ID: "contentfilter", "contentfilter/strict"
	typ      string // the plugin's name: "contentfilter"
	mod      *catalog.Entry
	settings *PluginConfig
	impl     any
	handler  registry.StageHandler // nil when the plugin runs in no stage
	order    int                   // position in config order
	started  bool
	stats    counters
}

type counters struct {
	calls, errors, timeouts, panics, rejects atomic.Int64
	nanos                                    atomic.Int64
}

// Option configures a Manager.
type Option func(*Manager)

// WithHost hands plugins the host's logger, resolver, clock, hostname and
// data directory. Unset fields get production defaults.
func WithHost(h registry.Host) Option { return func(m *Manager) { m.host = h } }

// WithOnClose runs f when the Manager is closed, after every plugin was:
// for what the host opened for this manager's plugins alone (a [store]
// pool a reload shares with the manager it replaces). f runs once, even
// if Close is called again; its error is Close's.
func WithOnClose(f func() error) Option {
	return func(m *Manager) { m.onClose = append(m.onClose, f) }
}

// NewManager returns a manager for cfg. Nothing is built until LoadPlugins.
func NewManager(cfg *Config, opts ...Option) *Manager {
	m := &Manager{cfg: cfg, cat: cfg.cat, byName: map[string]*instance{}, observer: nopObserver{}}
	for _, o := range opts {
		o(m)
	}
	m.host = withDefaults(m.host)
	m.workers = newWorkers(cfg.IdleWorkers)
	m.deadlines = newDeadlines()
	return m
}

// LoadPlugins builds, validates and starts every plugin the config enables,
// in config order, and works out the order they run in at each stage. On
// failure everything already built is closed again and the error names the
// plugin.
func (m *Manager) LoadPlugins(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if !m.cfg.Enabled {
		return nil
	}
	for _, name := range m.cfg.Plugins {
		if err := m.load(ctx, name); err != nil {
			return errors.Join(err, m.closeLocked())
		}
	}
	if err := m.plan(); err != nil {
		return errors.Join(err, m.closeLocked())
	}
	return nil
}

// LoadPlugin builds, validates and starts one plugin instance (an instance
// ID), enabled in config or not (for `elemta plugins test`).
func (m *Manager) LoadPlugin(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.byName[name]; ok {
		return nil
	}
	if err := m.load(ctx, name); err != nil {
		return err
	}
	return m.plan()
}

func (m *Manager) load(ctx context.Context, name string) error {
	settings, err := m.cfg.Settings(name)
	if err != nil {
		return err
	}
	mod, ok := m.cat.Lookup(settings.Type)
	if !ok {
		return fmt.Errorf("plugin %s: not compiled into this binary", name)
	}
	host := m.host
	host.Instance = name
	host.Logger = host.Logger.With("plugin", name)
	if m.pluginLogger != nil {
		host.Logger = m.pluginLogger(name)
	}
	if m.pluginMetrics != nil {
		host.Metrics = m.pluginMetrics(name, settings.Type)
	}
	if _, inst, _ := catalog.ParseID(name); inst != "" {
		// Two instances must not share state on disk (a bbolt file is locked).
		host.DataDir = filepath.Join(host.DataDir, "instances", inst)
	}
	var impl any
	if settings.Isolation.Isolated() {
		// Built, validated and started in worker processes; this stand-in
		// forwards every call (isolated.go).
		impl = newIsolated(m.cfg, settings, mod, host)
	} else if impl, err = mod.Build(settings.Value, host); err != nil {
		return fmt.Errorf("plugin %s: %w", name, err)
	}
	inst := &instance{name: name, typ: settings.Type, mod: mod, settings: settings, impl: impl, order: len(m.loaded)}
	if i := slices.Index(m.cfg.Plugins, name); i >= 0 {
		inst.order = i
	}
	inst.handler = handlerOf(impl, infoOf(mod).Types)
	m.loaded = append(m.loaded, inst)
	m.byName[name] = inst
	if v, ok := impl.(registry.Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("plugin %s: invalid config: %w", name, err)
		}
	}
	if s, ok := impl.(registry.Starter); ok {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("plugin %s: start: %w", name, err)
		}
	}
	inst.started = true
	return nil
}

// Close waits for stages in flight, then closes every plugin that was
// built, in reverse start order, and forgets them. It is safe to call more
// than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closeLocked()
}

func (m *Manager) closeLocked() error {
	m.closed = true
	m.workers.close() // no stage runs (mu is held): every worker not abandoned is idle or about to be
	m.deadlines.close()
	var errs []error
	for i := len(m.loaded) - 1; i >= 0; i-- {
		inst := m.loaded[i]
		if c, ok := inst.impl.(registry.Closer); ok {
			if err := safeClose(c); err != nil {
				errs = append(errs, fmt.Errorf("plugin %s: close: %w", inst.name, err))
			}
		}
	}
	m.loaded, m.byName, m.waves, m.preWaves = nil, map[string]*instance{}, map[registry.Stage][][]*instance{}, nil
	for _, f := range m.onClose {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	m.onClose = nil
	return errors.Join(errs...)
}

func safeClose(c registry.Closer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return c.Close()
}

// EndSession tells every loaded plugin that implements SessionEnder that
// the session of pc has ended, in start order, each under its timeout and
// guarded against panics. It returns their errors joined.
func (m *Manager) EndSession(ctx context.Context, pc *registry.ProcessingContext) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var errs []error
	for _, inst := range m.loaded {
		e, ok := inst.impl.(registry.SessionEnder)
		if !ok {
			continue
		}
		if err := endSession(ctx, inst, e, pc); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: end session: %w", inst.name, err))
		}
	}
	return errors.Join(errs...)
}

func endSession(ctx context.Context, inst *instance, e registry.SessionEnder, pc *registry.ProcessingContext) (err error) {
	ctx, cancel := context.WithTimeout(ctx, inst.settings.Timeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Plugin: inst.name, Value: v, Stack: debug.Stack()}
		}
	}()
	return e.EndSession(ctx, pc)
}

// Plugin returns the loaded plugin instance called name (an instance ID:
// "clamav", "rspamd/eu").
func (m *Manager) Plugin(name string) (any, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	inst, ok := m.byName[name]
	if !ok {
		return nil, false
	}
	return inst.impl, true
}

// Loaded lists the loaded plugins in start order.
func (m *Manager) Loaded() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := make([]string, len(m.loaded))
	for i, inst := range m.loaded {
		names[i] = inst.name
	}
	return names
}

// HealthCheck runs the health check of the instance called name, if it has one.
func (m *Manager) HealthCheck(ctx context.Context, name string) error {
	m.mu.RLock()
	inst, ok := m.byName[name]
	m.mu.RUnlock()
	if !ok {
		return fmt.Errorf("plugin %s is not loaded", name)
	}
	if h, ok := inst.impl.(registry.HealthChecker); ok {
		ctx, cancel := context.WithTimeout(ctx, inst.settings.Timeout)
		defer cancel()
		return h.HealthCheck(ctx)
	}
	return nil
}

func getAs[T any](m *Manager, name string, iface string) (T, error) {
	var zero T
	p, ok := m.Plugin(name)
	if !ok {
		return zero, fmt.Errorf("plugin %s is not loaded (loaded: %s)", name, strings.Join(m.Loaded(), ", "))
	}
	v, ok := p.(T)
	if s, isolated := p.(*isolated); isolated && !s.implements(reflect.TypeFor[T]()) {
		ok = false // the stand-in has every method; the plugin may not
	}
	if !ok {
		return zero, fmt.Errorf("plugin %s is not a %s", name, iface)
	}
	return v, nil
}

// GetAntivirusPlugin returns the loaded antivirus plugin called name.
func (m *Manager) GetAntivirusPlugin(name string) (registry.AntivirusPlugin, error) {
	return getAs[registry.AntivirusPlugin](m, name, "AntivirusPlugin")
}

// GetAntispamPlugin returns the loaded antispam plugin called name.
func (m *Manager) GetAntispamPlugin(name string) (registry.AntispamPlugin, error) {
	return getAs[registry.AntispamPlugin](m, name, "AntispamPlugin")
}

// GetDKIMPlugin returns the loaded DKIM plugin called name.
func (m *Manager) GetDKIMPlugin(name string) (registry.DKIMPlugin, error) {
	return getAs[registry.DKIMPlugin](m, name, "DKIMPlugin")
}

// GetSPFPlugin returns the loaded SPF plugin called name.
func (m *Manager) GetSPFPlugin(name string) (registry.SPFPlugin, error) {
	return getAs[registry.SPFPlugin](m, name, "SPFPlugin")
}

// GetDMARCPlugin returns the loaded DMARC plugin called name.
func (m *Manager) GetDMARCPlugin(name string) (registry.DMARCPlugin, error) {
	return getAs[registry.DMARCPlugin](m, name, "DMARCPlugin")
}

// GetARCPlugin returns the loaded ARC plugin called name.
func (m *Manager) GetARCPlugin(name string) (registry.ARCPlugin, error) {
	return getAs[registry.ARCPlugin](m, name, "ARCPlugin")
}

// PluginStats counts one plugin instance's work since it was loaded; Name
// is the instance ID.
type PluginStats struct {
	Name                                     string
	Calls, Errors, Timeouts, Panics, Rejects int64
	Total                                    time.Duration
}

// Stats returns per-plugin counters, in start order.
func (m *Manager) Stats() []PluginStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]PluginStats, len(m.loaded))
	for i, inst := range m.loaded {
		s := &inst.stats
		out[i] = PluginStats{Name: inst.name, Calls: s.calls.Load(), Errors: s.errors.Load(), Timeouts: s.timeouts.Load(),
			Panics: s.panics.Load(), Rejects: s.rejects.Load(), Total: time.Duration(s.nanos.Load())}
	}
	return out
}

// Waves returns, for a stage, the plugin names in each dependency wave.
func (m *Manager) Waves(stage registry.Stage) [][]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out [][]string
	for _, w := range m.waves[stage] {
		names := make([]string, len(w))
		for i, inst := range w {
			names[i] = inst.name
		}
		out = append(out, names)
	}
	return out
}

// plan splits each stage's plugins into waves: a plugin runs in the first
// wave after every plugin it must follow (its After list, plugins that
// name it in Before, and plugins that produce a type it consumes). Plugins in a wave keep config order. Constraints on
// plugins that are not loaded are ignored; a cycle is an error naming it.
func (m *Manager) plan() error {
	waves := map[registry.Stage][][]*instance{}
	for _, stage := range registry.Stages() {
		var nodes []*instance
		for _, inst := range m.loaded {
			if inst.handler != nil && slices.Contains(inst.settings.Stages, stage) {
				nodes = append(nodes, inst)
			}
		}
		slices.SortStableFunc(nodes, func(a, b *instance) int { return a.order - b.order })
		deps := map[*instance][]*instance{} // node -> the nodes it must follow
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && (slices.ContainsFunc(a.mod.After, b.is) || slices.ContainsFunc(b.mod.Before, a.is) || consumesFrom(a.mod, b.mod)) {
					deps[a] = append(deps[a], b)
				}
			}
		}
		done := map[*instance]bool{}
		for len(done) < len(nodes) {
			var wave []*instance
			for _, n := range nodes {
				if !done[n] && !slices.ContainsFunc(deps[n], func(d *instance) bool { return !done[d] }) {
					wave = append(wave, n)
				}
			}
			if len(wave) == 0 {
				return fmt.Errorf("plugin ordering cycle at stage %s: %s", stage, findCycle(nodes, deps, done))
			}
			for _, n := range wave {
				done[n] = true
			}
			waves[stage] = append(waves[stage], wave)
		}
	}
	m.waves = waves
	m.sizes = map[registry.Stage]int{}
	for stage, ws := range waves {
		for _, w := range ws {
			m.sizes[stage] += len(w)
		}
	}
	m.preWaves = map[registry.Phase][][]*instance{}
	for _, phase := range registry.Phases() {
		var pw [][]*instance
		for _, wave := range waves[registry.PreReception] {
			var w []*instance
			for _, inst := range wave {
				if len(inst.mod.Phases) == 0 || slices.Contains(inst.mod.Phases, int(phase)) {
					w = append(w, inst)
				}
			}
			if len(w) > 0 {
				pw = append(pw, w)
			}
		}
		m.preWaves[phase] = pw
	}
	return nil
}

// findCycle returns "a -> b -> a" for a cycle among the nodes not done.
func findCycle(nodes []*instance, deps map[*instance][]*instance, done map[*instance]bool) string {
	for _, start := range nodes {
		if done[start] {
			continue
		}
		// Every pending node has a pending dependency: walk them until one repeats.
		path := []*instance{start}
		seen := map[*instance]int{start: 0}
		for cur := start; ; {
			var next *instance
			for _, d := range deps[cur] {
				if !done[d] {
					next = d
					break
				}
			}
			if i, ok := seen[next]; ok {
				names := []string{}
				for _, n := range path[i:] {
					names = append(names, n.name)
				}
				slices.Reverse(names) // a dependency runs first: show run order
				return strings.Join(append(names, names[0]), " -> ")
			}
			seen[next] = len(path)
			path = append(path, next)
			cur = next
		}
	}
	return "(unknown)"
}

// is reports whether an ordering constraint names this instance: by its
// plugin's name (then it names every instance) or by its instance ID.
func (inst *instance) is(name string) bool { return name == inst.typ || name == inst.name }

// consumesFrom reports whether plugin a consumes a result type that b
// produces: the same type, or an interface type b's type implements.
func consumesFrom(a, b *catalog.Entry) bool {
	return slices.ContainsFunc(a.Consumes, func(c reflect.Type) bool { return publishes(b, c) })
}
