package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// custom is the build info of a binary made by tools/elemta-build: the core
// replaced by a checkout, a pinned plugin, a local plugin, and two nested
// modules.
var custom = &debug.BuildInfo{
	GoVersion: "go1.26.8",
	Path:      "elemta.build/custom",
	Main:      debug.Module{Path: "elemta.build/custom", Version: "(devel)"},
	Deps: []*debug.Module{
		{Path: "github.com/elemta/elemta", Version: "v0.0.0-00010101000000-000000000000",
			Replace: &debug.Module{Path: "/src/elemta"}},
		{Path: "example.com/elemta-headerlist", Version: "v1.2.0", Sum: "h1:abc="},
		{Path: "example.com/mine", Version: "v0.0.0-00010101000000-000000000000",
			Replace: &debug.Module{Path: "../mine"}},
		{Path: "example.com/lists", Version: "v1.0.0"},
		{Path: "example.com/lists/deny", Version: "v2.1.0"},
		{Path: "example.com/fork", Version: "v1.0.0",
			Replace: &debug.Module{Path: "example.com/fork-fixed", Version: "v1.0.1"}},
	},
}

func TestModuleOf(t *testing.T) {
	info := FromBuildInfo(custom)
	tests := []struct {
		pkg       string
		path      string
		effective string
		str       string
	}{
		{"github.com/elemta/elemta/plugins/contentfilter", "github.com/elemta/elemta", "(devel)",
			"github.com/elemta/elemta v0.0.0-00010101000000-000000000000 => /src/elemta"},
		{"example.com/elemta-headerlist/plugin", "example.com/elemta-headerlist", "v1.2.0", "example.com/elemta-headerlist v1.2.0"},
		{"example.com/elemta-headerlist", "example.com/elemta-headerlist", "v1.2.0", "example.com/elemta-headerlist v1.2.0"},
		{"example.com/mine", "example.com/mine", "(devel)", "example.com/mine v0.0.0-00010101000000-000000000000 => ../mine"},
		{"example.com/lists/allow", "example.com/lists", "v1.0.0", "example.com/lists v1.0.0"},
		{"example.com/lists/deny", "example.com/lists/deny", "v2.1.0", "example.com/lists/deny v2.1.0"},
		{"example.com/lists/denylist", "example.com/lists", "v1.0.0", "example.com/lists v1.0.0"},
		{"example.com/fork/x", "example.com/fork", "v1.0.1", "example.com/fork v1.0.0 => example.com/fork-fixed v1.0.1"},
		{"elemta.build/custom", "elemta.build/custom", "(devel)", "elemta.build/custom (devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			m, ok := info.ModuleOf(tt.pkg)
			require.True(t, ok)
			assert.Equal(t, tt.path, m.Path)
			assert.Equal(t, tt.effective, m.EffectiveVersion())
			assert.Equal(t, tt.str, m.String())
		})
	}
	for _, pkg := range []string{"example.com/elemta-headerlistx", "example.com", "github.com/elemta/elemtax/y"} {
		_, ok := info.ModuleOf(pkg)
		assert.False(t, ok, pkg)
	}
}

func TestCore(t *testing.T) {
	core, ok := FromBuildInfo(custom).Core()
	require.True(t, ok)
	assert.False(t, core.Main)
	assert.Equal(t, "/src/elemta", core.Replace.Path)

	// go build ./cmd/elemta in the checkout: the core is the main module.
	fromCheckout := &debug.BuildInfo{GoVersion: "go1.26.8",
		Main: debug.Module{Path: "github.com/elemta/elemta", Version: "(devel)"},
		Deps: []*debug.Module{{Path: "go.yaml.in/yaml/v3", Version: "v3.0.6"}}}
	core, ok = FromBuildInfo(fromCheckout).Core()
	require.True(t, ok)
	assert.True(t, core.Main)
	assert.Equal(t, "(devel)", core.EffectiveVersion())
	m, ok := FromBuildInfo(fromCheckout).ModuleOf("github.com/elemta/elemta/plugins/spf")
	require.True(t, ok)
	assert.True(t, m.Main)
}

// TestRead reads this test binary's own build info: the test runs in the
// core module, so the core is the main module. (Test binaries list no
// dependencies; the tables above cover those.)
func TestRead(t *testing.T) {
	info, ok := Read()
	require.True(t, ok)
	assert.Equal(t, runtime.Version(), info.GoVersion)
	core, ok := info.Core()
	require.True(t, ok)
	assert.Equal(t, CorePath, core.Path)
	assert.True(t, core.Main)
	m, ok := info.ModuleOf(CorePath + "/internal/buildinfo")
	require.True(t, ok)
	assert.Equal(t, CorePath, m.Path)
}
