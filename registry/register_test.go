package registry

import (
	"context"
	"testing"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type scanner struct{}

func (scanner) ScanMessage(context.Context, *Message) (*ScanResult, error) {
	return &ScanResult{Status: StatusClean}, nil
}
func (scanner) GetInfo() *PluginInfo { return &PluginInfo{Name: "scanner"} }

type nothing struct{}

func TestRegisterRefusesBadModules(t *testing.T) {
	newScanner := func(struct{}, Host) (scanner, error) { return scanner{}, nil }
	newNothing := func(struct{}, Host) (nothing, error) { return nothing{}, nil }
	av := []PluginType{PluginTypeAntivirus}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"uppercase name", eraseErr(Module[struct{}, scanner]{Name: "ClamAV", Types: av, New: newScanner}), "invalid name"},
		{"space in name", eraseErr(Module[struct{}, scanner]{Name: "clam av", Types: av, New: newScanner}), "invalid name"},
		{"empty name", eraseErr(Module[struct{}, scanner]{Types: av, New: newScanner}), "invalid name"},
		{"reserved name", eraseErr(Module[struct{}, scanner]{Name: "directory", Types: av, New: newScanner}), "reserved"},
		{"nil constructor", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av}), "nil constructor"},
		{"no type", eraseErr(Module[struct{}, scanner]{Name: "x", New: newScanner}), "no plugin type"},
		{"unknown type", eraseErr(Module[struct{}, scanner]{Name: "x", Types: []PluginType{"virus"}, New: newScanner}), `unknown plugin type "virus"`},
		{"type not implemented", eraseErr(Module[struct{}, nothing]{Name: "x", Types: av, New: newNothing}),
			`declares type "antivirus" but registry.nothing does not implement registry.AntivirusPlugin`},
		{"dkim not implemented", eraseErr(Module[struct{}, scanner]{Name: "x", Types: []PluginType{PluginTypeDKIM}, New: newScanner}),
			`does not implement registry.DKIMPlugin`},
		{"stages without handler", eraseErr(Module[struct{}, nothing]{Name: "x", Types: []PluginType{PluginTypeCustom}, Stages: []Stage{PreQueue}, New: newNothing}),
			"does not implement registry.StageHandler"},
		{"stage twice", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Stages: []Stage{PreQueue, PreQueue}, New: newScanner}), "listed twice"},
		{"bad stage", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Stages: []Stage{Stage(9)}, New: newScanner}), "unknown stage"},
		{"after itself", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, After: []string{"x"}, New: newScanner}), "invalid ordering constraint"},
		{"untyped nil product", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Produces: []any{nil}, New: newScanner}), "Produces: entry 0 is an untyped nil"},
		{"consumed twice", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Consumes: []any{(*SPFResult)(nil), (*SPFResult)(nil)}, New: newScanner}), "*registry.SPFResult listed twice"},
		{"bad phase", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Stages: []Stage{PreReception}, Phases: []Phase{Phase(7)}, New: newScanner}), "unknown phase 7"},
		{"phase twice", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Stages: []Stage{PreReception}, Phases: []Phase{PhaseMail, PhaseMail}, New: newScanner}), "phase 3 listed twice"},
		{"phases without pre-reception", eraseErr(Module[struct{}, scanner]{Name: "x", Types: av, Stages: []Stage{PostReception}, Phases: []Phase{PhaseMail}, New: newScanner}), "declares phases but does not run at pre-reception"},
		{"config not a struct", eraseErr(Module[int, scanner]{Name: "x", Types: av, New: func(int, Host) (scanner, error) { return scanner{}, nil }}), "is not a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, tt.err)
			assert.Contains(t, tt.err.Error(), tt.want)
			assert.Contains(t, tt.err.Error(), "registered by example.com/plugin")
		})
	}
}

func eraseErr[C, P any](m Module[C, P]) error {
	_, err := erase(m, "example.com/plugin")
	return err
}

func TestAntivirusWithoutStageHandlerIsAdapted(t *testing.T) {
	_, err := erase(Module[struct{}, scanner]{Name: "x", Types: []PluginType{PluginTypeAntivirus}, Stages: []Stage{PostReception},
		New: func(struct{}, Host) (scanner, error) { return scanner{}, nil }}, "p")
	assert.NoError(t, err)
}

func TestRegisterPanicsOnDuplicateNamingBothPackages(t *testing.T) {
	m := Module[struct{}, scanner]{Name: "duplicate-test", Types: []PluginType{PluginTypeAntivirus},
		New: func(struct{}, Host) (scanner, error) { return scanner{}, nil }}
	c := catalog.Capture(func() { Register(m) })
	e, ok := c.Lookup("duplicate-test")
	require.True(t, ok)
	assert.Equal(t, "github.com/elemta/elemta/registry", e.Package)
	_, ok = catalog.Global().Lookup("duplicate-test")
	assert.False(t, ok, "Capture must keep the global catalog untouched")

	r := catalog.New()
	first, err := erase(m, "example.com/first")
	require.NoError(t, err)
	require.NoError(t, r.Add(first))
	second, err := erase(m, "example.com/second")
	require.NoError(t, err)
	assert.EqualError(t, r.Add(second),
		`registry: plugin "duplicate-test" registered by example.com/second: already registered by example.com/first`)

	catalog.Capture(func() {
		Register(m)
		assert.PanicsWithError(t,
			`registry: plugin "duplicate-test" registered by github.com/elemta/elemta/registry: already registered by github.com/elemta/elemta/registry`,
			func() { Register(m) })
		assert.Panics(t, func() { Register(Module[struct{}, scanner]{Name: "Bad Name"}) })
	})
}

func TestNilPluginFromConstructorIsAnError(t *testing.T) {
	e, err := erase(Module[struct{}, *scanner]{Name: "x", Types: []PluginType{PluginTypeAntivirus},
		New: func(struct{}, Host) (*scanner, error) { return nil, nil }}, "p")
	require.NoError(t, err)
	_, err = e.Build(e.NewConfig(), Host{})
	assert.EqualError(t, err, "constructor returned nil without an error")
}
