package registry

import (
	"context"
	"testing"
)

// handlerFunc is a plugin made of one function, for executor tests.
type handlerFunc func(ctx context.Context, stage Stage, pc *ProcessingContext) (*Result, error)

func (f handlerFunc) HandleStage(ctx context.Context, stage Stage, pc *ProcessingContext) (*Result, error) {
	return f(ctx, stage, pc)
}

type stagePlugin struct {
	name          string
	fn            handlerFunc
	stages        []Stage
	after, before []string
}

// testManager registers plugins in a fresh registry, parses config (which
// may be "" for `plugins = [all, in order]`) and loads them.
func testManager(t testing.TB, config string, plugins ...stagePlugin) *Manager {
	t.Helper()
	r := newRegistry()
	var names []string
	for _, p := range plugins {
		stages := p.stages
		if stages == nil {
			stages = []Stage{PostReception}
		}
		fn := p.fn
		mod, err := erase(Module[struct{}, handlerFunc]{
			Name: p.name, Types: []PluginType{PluginTypeCustom}, Stages: stages, After: p.after, Before: p.before,
			New: func(struct{}, Host) (handlerFunc, error) { return fn, nil },
		}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.add(mod); err != nil {
			t.Fatal(err)
		}
		names = append(names, `"`+p.name+`"`)
	}
	if config == "" {
		config = "[plugins]\nplugins = [" + join(names) + "]\n"
	}
	cfg, err := r.parseConfig("test.toml", []byte(config))
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

func testContext(t testing.TB) *ProcessingContext {
	t.Helper()
	msg, err := ParseMessage([]byte("From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n"), Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	return NewProcessingContext(msg, nil)
}

func verdictPlugin(v Verdict, headers ...Field) handlerFunc {
	return func(context.Context, Stage, *ProcessingContext) (*Result, error) {
		return &Result{Verdict: v, AddHeaders: headers}, nil
	}
}
