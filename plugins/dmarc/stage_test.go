package dmarc

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// testAuth stands in for the spf and dkim plugins: it records the results
// stored in the context under "testauth.spf" and "testauth.dkim" as its
// Data, so dmarc finds them with registry.Find as it would theirs.
type testAuth struct{}

func (testAuth) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if v, ok := pc.Get("testauth.dkim"); ok {
		return &registry.Result{Data: v}, nil
	}
	return &registry.Result{}, nil
}

type testSPF struct{}

func (testSPF) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if v, ok := pc.Get("testauth.spf"); ok {
		return &registry.Result{Data: v}, nil
	}
	return &registry.Result{}, nil
}

func init() {
	// They declare what they produce, so dmarc's Consumes orders them first.
	registry.Register(registry.Module[struct{}, testSPF]{
		Name: "spf", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		Produces: []any{(*registry.SPFResult)(nil)},
		New:      func(struct{}, registry.Host) (testSPF, error) { return testSPF{}, nil },
	})
	registry.Register(registry.Module[struct{}, testAuth]{
		Name: "dkim", Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
		Produces: []any{(*registry.DKIMResult)(nil)},
		New:      func(struct{}, registry.Host) (testAuth, error) { return testAuth{}, nil },
	})
}

func TestStage(t *testing.T) {
	const annotate = "[plugins]\nplugins = [\"dmarc\", \"spf\", \"dkim\"]\n"
	const enforce = annotate + "[plugins.dmarc]\nenforce = true\n"
	tests := []struct {
		name   string
		toml   string
		from   string
		spf    *registry.SPFResult
		dkim   *registry.DKIMResult
		want   registry.AuthResult
		action registry.Action
	}{
		{"pass", enforce, "a@example.com", spfPass("example.com"), nil, registry.AuthPass, registry.Accept},
		{"pass by dkim", enforce, "a@example.com", nil, dkimSig("example.com", registry.AuthPass), registry.AuthPass, registry.Accept},
		{"reject enforced", enforce, "a@example.com", spfPass("evil.test"), nil, registry.AuthFail, registry.Reject},
		{"reject annotated only", annotate, "a@example.com", spfPass("evil.test"), nil, registry.AuthFail, registry.Accept},
		{"quarantine enforced", enforce, "a@sub.example.com", nil, nil, registry.AuthFail, registry.Quarantine},
		{"p=none never acts", enforce, "a@none.com", nil, nil, registry.AuthFail, registry.Accept},
		{"temperror tempfails", enforce, "a@temp.com", nil, nil, registry.AuthTempError, registry.TempFail},
		{"temperror accepted with on_temperror = accept", enforce + "on_temperror = \"accept\"\n", "a@temp.com", nil, nil, registry.AuthTempError, registry.Accept},
		{"temperror annotated only", annotate, "a@temp.com", nil, nil, registry.AuthTempError, registry.Accept},
		{"permerror of the record never acts", enforce, "a@badpct.com", nil, nil, registry.AuthPermError, registry.Accept},
		{"unparseable From rejected", enforce, "undisclosed", nil, nil, registry.AuthPermError, registry.Reject},
		{"unparseable From accepted with on_unparseable_from = accept", enforce + "on_unparseable_from = \"accept\"\n", "undisclosed", nil, nil, registry.AuthPermError, registry.Accept},
		{"unparseable From annotated only", annotate, "undisclosed", nil, nil, registry.AuthPermError, registry.Accept},
		{"two domains, strictest", enforce, "a@example.com, b@nodmarc.org", spfPass("example.com"), nil, registry.AuthPass, registry.Accept},
		{"two domains, on_multiple_from = reject", enforce + "on_multiple_from = \"reject\"\n", "a@example.com, b@nodmarc.org", spfPass("example.com"), nil, registry.AuthPermError, registry.Reject},
		{"two domains, on_multiple_from = quarantine", enforce + "on_multiple_from = \"quarantine\"\n", "a@example.com, b@nodmarc.org", spfPass("example.com"), nil, registry.AuthPermError, registry.Quarantine},
		{"one domain twice, on_multiple_from = reject", enforce + "on_multiple_from = \"reject\"\n", "a@example.com, b@EXAMPLE.com.", spfPass("example.com"), nil, registry.AuthPass, registry.Accept},
		{"no policy", enforce, "a@nodmarc.org", nil, nil, registry.AuthNone, registry.Accept},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pluginhost.ParseConfig("test.toml", []byte(tc.toml))
			require.NoError(t, err)
			m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: testZone(), Logger: slog.New(slog.DiscardHandler)}))
			require.NoError(t, m.LoadPlugins(context.Background()))
			defer m.Close()
			require.Equal(t, [][]string{{"spf", "dkim"}, {"dmarc"}}, m.Waves(registry.PostReception), "dmarc runs after spf and dkim")
			pc := registry.NewProcessingContext(message(t, tc.from), nil)
			if tc.spf != nil {
				pc.Set("testauth.spf", tc.spf)
			}
			if tc.dkim != nil {
				pc.Set("testauth.dkim", tc.dkim)
			}
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
			require.NoError(t, err)
			res, ok := registry.Find[*registry.DMARCResult](pc)
			require.True(t, ok)
			require.Equal(t, tc.want, res.Result, res.Reason)
			require.Equal(t, tc.action, sr.Verdict.Action)
			if tc.action != registry.Accept {
				require.Equal(t, "dmarc", sr.DecidedBy)
			}
		})
	}
}
