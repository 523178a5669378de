package pluginhost

import (
	"context"
	"testing"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// handlerFunc is a plugin made of one function, for executor tests.
type handlerFunc func(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error)

func (f handlerFunc) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	return f(ctx, stage, pc)
}

type stagePlugin struct {
	name          string
	fn            handlerFunc
	stages        []registry.Stage
	phases        []registry.Phase
	after, before []string
}

// testManager registers plugins in a fresh registry, parses config (which
// may be "" for `plugins = [all, in order]`) and loads them.
func testManager(t testing.TB, config string, plugins ...stagePlugin) *Manager {
	t.Helper()
	var regs []func()
	var names []string
	for _, p := range plugins {
		stages := p.stages
		if stages == nil {
			stages = []registry.Stage{registry.PostReception}
		}
		fn := p.fn
		regs = append(regs, module(registry.Module[struct{}, handlerFunc]{
			Name: p.name, Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: stages, Phases: p.phases, After: p.after, Before: p.before,
			New: func(struct{}, registry.Host) (handlerFunc, error) { return fn, nil },
		}))
		names = append(names, `"`+p.name+`"`)
	}
	if config == "" {
		config = "[plugins]\nplugins = [" + join(names) + "]\n"
	}
	cfg, err := parseConfig(newCatalog(regs...), "test.toml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(cfg)
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

func testContext(t testing.TB) *registry.ProcessingContext {
	t.Helper()
	msg, err := registry.ParseMessage([]byte("From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n"), registry.Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	return registry.NewProcessingContext(msg, nil)
}

func verdictPlugin(v registry.Verdict, headers ...registry.Field) handlerFunc {
	return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
		return &registry.Result{Verdict: v, AddHeaders: headers}, nil
	}
}

// newCatalog returns a fresh catalog holding what regs register, leaving
// the binary's own plugins alone.
func newCatalog(regs ...func()) *catalog.Catalog {
	return catalog.Capture(func() {
		for _, r := range regs {
			r()
		}
	})
}

// module returns a registration of m, for newCatalog.
func module[C, P any](m registry.Module[C, P]) func() { return func() { registry.Register(m) } }

// scanner is an antivirus plugin that finds every message clean.
type scanner struct{}

func (scanner) ScanMessage(context.Context, *registry.Message) (*registry.ScanResult, error) {
	return &registry.ScanResult{Status: registry.StatusClean}, nil
}
func (scanner) GetInfo() *registry.PluginInfo { return &registry.PluginInfo{Name: "scanner"} }
