package pluginhost

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// TestProducerWarnings: config check says which result a consumer reads
// when two or more enabled instances publish the type it consumes.
func TestProducerWarnings(t *testing.T) {
	custom := []registry.PluginType{registry.PluginTypeCustom}
	post := []registry.Stage{registry.PostReception}
	plugin := func(name string, produces, consumes []any) func() {
		return module(registry.Module[struct{}, handlerFunc]{Name: name, Types: custom, Stages: post, Produces: produces, Consumes: consumes,
			New: func(struct{}, registry.Host) (handlerFunc, error) {
				return func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
					return &registry.Result{}, nil
				}, nil
			}})
	}
	spf := []any{(*registry.SPFResult)(nil)}
	c := newCatalog(
		plugin("spf", spf, nil),
		plugin("otherspf", spf, nil),
		plugin("dmarc", []any{(*registry.DMARCResult)(nil)}, spf),
		plugin("authres", nil, []any{(*registry.SPFResult)(nil), (*registry.DMARCResult)(nil)}),
	)
	for _, tc := range []struct {
		name    string
		plugins string
		want    []string
	}{
		{"one producer", `["spf", "dmarc", "authres"]`, nil},
		{"two producers, no consumer", `["spf", "spf/strict"]`, nil},
		{"two instances of one plugin", `["spf", "spf/strict", "dmarc", "authres"]`, []string{
			`t.toml: dmarc, authres read *registry.SPFResult, which 2 enabled instances publish (spf, spf/strict): registry.Find gives them spf's, the first in plugins.plugins; ` +
				`the others' reach only a plugin that reads them with registry.FindAll or FindFrom. Put the instance whose result should count first, or enable one`}},
		{"two plugins, config order decides", `["dmarc", "otherspf", "spf"]`, []string{
			`t.toml: dmarc reads *registry.SPFResult, which 2 enabled instances publish (otherspf, spf): registry.Find gives it otherspf's`}},
		{"listed but all off", `["spf", "spf/strict", "dmarc"]` + "\nenabled = false", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(c, "t.toml", []byte("[plugins]\nplugins = "+tc.plugins+"\n"))
			require.NoError(t, err)
			require.Len(t, cfg.Warnings, len(tc.want), "%q", cfg.Warnings)
			for i, w := range tc.want {
				assert.Contains(t, cfg.Warnings[i], w)
			}
		})
	}
}
