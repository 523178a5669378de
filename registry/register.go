package registry

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"

	"github.com/elemta/elemta/internal/catalog"
)

// Module describes a plugin to the registry. C is its config type (a struct
// whose fields carry `toml` tags; struct{} for none), P the type New returns.
//
// A plugin package registers its Module from init():
//
//	func init() {
//		registry.Register(registry.Module[Config, *Scanner]{
//			Name:   "clamav",
//			Types:  []registry.PluginType{registry.PluginTypeAntivirus},
//			Stages: []registry.Stage{registry.PostReception},
//			Config: func() Config { return Config{Address: "127.0.0.1:3310"} },
//			New:    New,
//		})
//	}
type Module[C any, P any] struct {
	// Name is the plugin's name in config and plugins.yaml: lowercase
	// letters, digits, '-' and '_', starting with a letter.
	Name        string
	Version     string
	Description string
	// Types the plugin declares; P must implement each type's interface.
	Types []PluginType
	// Stages the plugin runs in by default; config may narrow them. A
	// plugin with stages implements StageHandler (antivirus and antispam
	// plugins may rely on the built-in adapter instead).
	Stages []Stage
	// Phases are the SMTP phases at which the plugin has work to do when
	// pre-reception runs (PhaseMessage included, for offline scans); nil
	// means every phase. At any other phase the executor does not call the
	// plugin at all: it gets no goroutine and leaves no result. Phases do
	// not filter the other stages.
	Phases []Phase
	// Produces and Consumes declare the result types (the Data of a
	// Result) the plugin publishes and reads with Find or FindAll, each
	// as a typed nil: Produces: []any{(*registry.SPFResult)(nil)}. In a
	// stage, a plugin runs after every plugin that produces what it
	// consumes, whatever their names (DMARC consumes *SPFResult and
	// *DKIMResult).
	Produces []any
	Consumes []any
	// After and Before name plugins this one must run after or before when
	// both run in the same stage. A plugin's name holds for every instance
	// of it; "name/instance" for one. Prefer Consumes: it also orders
	// plugins under other names.
	After  []string
	Before []string
	// Config returns the default configuration; nil means the zero C.
	Config func() C
	// New builds the plugin from its decoded, defaulted config. It must not
	// do I/O: opening connections belongs in Starter.Start.
	New func(cfg C, host Host) (P, error)
}

// StageHandler is implemented by plugins that act at a processing stage.
type StageHandler interface {
	HandleStage(ctx context.Context, stage Stage, pc *ProcessingContext) (*Result, error)
}

// The optional lifecycle interfaces. The Manager calls, for each enabled
// plugin in config order: New, then Validate, then Start. Close is called
// in reverse order on every plugin New returned, whether or not its Start
// ran or succeeded, so Close must be safe without Start and when called
// twice.
type (
	// Validator checks a plugin's config beyond what decoding can.
	Validator interface{ Validate() error }
	// Starter opens pools, loads keys, starts background work.
	Starter interface {
		Start(ctx context.Context) error
	}
	// HealthChecker reports whether the plugin can do its work now (its
	// daemon answers, its keys load). Used by `elemta plugins test`.
	HealthChecker interface {
		HealthCheck(ctx context.Context) error
	}
	// Closer releases what Start acquired.
	Closer interface{ Close() error }
	// SessionEnder is told when an SMTP session ends (QUIT, disconnect or
	// shutdown), so it can release per-session state such as a rate
	// limiter's connection slot. pc is the session's last context.
	SessionEnder interface {
		EndSession(ctx context.Context, pc *ProcessingContext) error
	}
)

// HeaderOwner is implemented by a config type (by its value or pointer)
// whose plugin writes header fields that state its verdict (clamav's
// X-Virus-Status, rspamd's X-Spam-Score, authres's Authentication-Results)
// and removes the ones a message arrives with, so that a sender cannot
// forge them. OwnedHeaders returns the names of those fields for this
// config (none, e.g. with the plugin's header option off: nil).
//
// When a call of the plugin fails at a stage (an error, a timeout, a
// panic, a dead worker of an isolated instance), the host discards the
// plugin's result and gives its on_error verdict, as for any plugin; for a
// HeaderOwner it also removes every field of these names from the message
// (Removal{Name, Index: -1} in the failed Result's RemoveHeaders). A
// sender's forged verdict field therefore never reaches the mailbox
// because a daemon was down and on_error is "accept": the message arrives
// without the field, which says it was not checked. The plugin's own error
// path has nothing to return; a plugin without verdict fields implements
// nothing. The host checks the names when it parses the config; the
// operator may add names with the instance's remove_on_error key.
type HeaderOwner interface{ OwnedHeaders() []string }

// SingleProcess is implemented by a config type (by its value or pointer)
// whose plugin keeps state that only one process may hold at a time: a
// bbolt file is locked by the process that opens it. SingleProcess returns
// why, or "" when this config shares its state safely (a Redis store). The
// host refuses isolation = "process" with workers > 1 for such a config
// when it parses the file, so `elemta config check` says so instead of a
// worker failing at run time.
type SingleProcess interface{ SingleProcess() string }

var capabilities = map[PluginType]reflect.Type{
	PluginTypeAntivirus: reflect.TypeFor[AntivirusPlugin](),
	PluginTypeAntispam:  reflect.TypeFor[AntispamPlugin](),
	PluginTypeDKIM:      reflect.TypeFor[DKIMPlugin](),
	PluginTypeSPF:       reflect.TypeFor[SPFPlugin](),
	PluginTypeDMARC:     reflect.TypeFor[DMARCPlugin](),
	PluginTypeARC:       reflect.TypeFor[ARCPlugin](),
	PluginTypeGreylist:  reflect.TypeFor[StageHandler](),
	PluginTypeRateLimit: reflect.TypeFor[StageHandler](),
	PluginTypeFilter:    reflect.TypeFor[StageHandler](),
	PluginTypeCustom:    reflect.TypeFor[StageHandler](),
}

// Register adds a plugin to the registry. It is meant to be called from the
// plugin package's init function and panics, naming the plugin and the
// registering package, on a duplicate or invalid name, a nil constructor,
// an unknown type or stage, or a plugin type P that does not implement the
// interfaces its declared types require: mistakes show at the first
// `go test`, never in production.
func Register[C any, P any](m Module[C, P]) {
	e, err := erase(m, callerPackage(2))
	if err == nil {
		err = catalog.Target().Add(e)
	}
	if err != nil {
		panic(err)
	}
}

// erase checks m and turns it into a module.
func erase[C any, P any](m Module[C, P], pkg string) (*catalog.Entry, error) {
	fail := func(format string, args ...any) (*catalog.Entry, error) {
		return nil, fmt.Errorf("registry: plugin %q registered by %s: %s", m.Name, pkg, fmt.Sprintf(format, args...))
	}
	if err := catalog.CheckName(m.Name); err != nil {
		return fail("%v", err)
	}
	if m.New == nil {
		return fail("nil constructor (Module.New)")
	}
	if len(m.Types) == 0 {
		return fail("no plugin type declared")
	}
	impl := reflect.TypeFor[P]()
	for _, t := range m.Types {
		iface, ok := capabilities[t]
		if !ok {
			return fail("unknown plugin type %q", t)
		}
		if !impl.Implements(iface) {
			return fail("declares type %q but %v does not implement registry.%s", t, impl, iface.Name())
		}
	}
	if len(m.Stages) > 0 && !impl.Implements(reflect.TypeFor[StageHandler]()) && !slices.Contains(m.Types, PluginTypeAntivirus) && !slices.Contains(m.Types, PluginTypeAntispam) {
		return fail("runs in stages %v but %v implements neither registry.StageHandler nor AntivirusPlugin/AntispamPlugin", m.Stages, impl)
	}
	for i, s := range m.Stages {
		if s < 0 || s >= numStages {
			return fail("unknown stage %d", int(s))
		}
		if slices.Contains(m.Stages[:i], s) {
			return fail("stage %s listed twice", s)
		}
	}
	for i, p := range m.Phases {
		if p < 0 || p >= numPhases {
			return fail("unknown phase %d", int(p))
		}
		if slices.Contains(m.Phases[:i], p) {
			return fail("phase %d listed twice", int(p))
		}
	}
	if len(m.Phases) > 0 && !slices.Contains(m.Stages, PreReception) {
		return fail("declares phases but does not run at pre-reception")
	}
	for _, dep := range append(slices.Clone(m.After), m.Before...) {
		if _, _, err := catalog.ParseID(dep); err != nil || dep == m.Name {
			return fail("invalid ordering constraint %q", dep)
		}
	}
	produces, err := resultTypes(m.Produces)
	if err != nil {
		return fail("Produces: %v", err)
	}
	consumes, err := resultTypes(m.Consumes)
	if err != nil {
		return fail("Consumes: %v", err)
	}
	if t := reflect.TypeFor[C](); t.Kind() != reflect.Struct {
		return fail("config type %v is not a struct", t)
	}
	newConfig := func() any {
		c := new(C)
		if m.Config != nil {
			*c = m.Config()
		}
		return c
	}
	build := func(cfg any, host any) (any, error) {
		p, err := m.New(*cfg.(*C), host.(Host))
		if err != nil {
			return nil, err
		}
		if v := reflect.ValueOf(p); !v.IsValid() || (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return nil, fmt.Errorf("constructor returned nil without an error")
		}
		return p, nil
	}
	types := make([]string, len(m.Types))
	for i, t := range m.Types {
		types[i] = string(t)
	}
	stages := make([]int, len(m.Stages))
	for i, st := range m.Stages {
		stages[i] = int(st)
	}
	var phases []int
	for _, p := range m.Phases {
		phases = append(phases, int(p))
	}
	return &catalog.Entry{
		Name: m.Name, Version: m.Version, Description: m.Description, Package: pkg,
		Types: types, Stages: stages, Phases: phases,
		After: slices.Clone(m.After), Before: slices.Clone(m.Before),
		Produces: produces, Consumes: consumes,
		NewConfig: newConfig,
		Build:     build,
		Impl:      impl,
	}, nil
}

// resultTypes returns the types of the typed nils in vs.
func resultTypes(vs []any) ([]reflect.Type, error) {
	var types []reflect.Type
	for i, v := range vs {
		t := reflect.TypeOf(v)
		if t == nil {
			return nil, fmt.Errorf("entry %d is an untyped nil: write (*T)(nil)", i)
		}
		if slices.Contains(types, t) {
			return nil, fmt.Errorf("%v listed twice", t)
		}
		types = append(types, t)
	}
	return types, nil
}

// callerPackage returns the import path of the function skip frames up.
func callerPackage(skip int) string {
	pc, _, _, ok := runtime.Caller(skip)
	if !ok {
		return "unknown package"
	}
	fn := runtime.FuncForPC(pc).Name() // e.g. github.com/x/y/plugins/clamav.init.0
	slash := strings.LastIndexByte(fn, '/')
	if dot := strings.IndexByte(fn[slash+1:], '.'); dot >= 0 {
		return fn[:slash+1+dot]
	}
	return fn
}
