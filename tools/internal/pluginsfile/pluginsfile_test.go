package pluginsfile

import (
	"errors"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `plugins:
  - name: contentfilter
  - name: spf
    default: false
  - name: headerlist
    module: example.com/elemta-headerlist
    path: ../headerlist
    default: false
variants:
  minimal: [contentfilter]
  full: [spf, headerlist, contentfilter]
  empty: []
`

func names(pl []Plugin) []string {
	out := []string{}
	for _, p := range pl {
		out = append(out, p.Name)
	}
	return out
}

func TestSelect(t *testing.T) {
	f, err := Parse("dir/plugins.yaml", []byte(sample), []string{"contentfilter", "spf"})
	require.NoError(t, err)
	assert.Equal(t, []string{"empty", "full", "minimal"}, f.VariantNames())
	tests := []struct {
		variant string
		want    []string
		err     string
	}{
		{"", []string{"contentfilter"}, ""},
		{"default", []string{"contentfilter"}, ""},
		{"minimal", []string{"contentfilter"}, ""},
		{"full", []string{"contentfilter", "headerlist", "spf"}, ""},
		{"empty", []string{}, ""},
		{"huge", nil, `dir/plugins.yaml: no variant "huge"; variants: empty, full, minimal`},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			got, err := f.Select(tt.variant)
			if tt.err != "" {
				require.EqualError(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, names(got))
		})
	}
	hl := f.Plugins[slicesIndex(f.Plugins, "headerlist")]
	assert.Equal(t, filepath.Join("headerlist"), f.LocalDir(hl))
	assert.Equal(t, "example.com/elemta-headerlist", hl.Import)
	assert.False(t, hl.Builtin())
	assert.Equal(t, BuiltinImport("spf"), f.Plugins[slicesIndex(f.Plugins, "spf")].Import)
}

func slicesIndex(pl []Plugin, name string) int {
	for i, p := range pl {
		if p.Name == name {
			return i
		}
	}
	panic(name)
}

func TestErrorsAreValues(t *testing.T) {
	_, err := Parse("plugins.yaml", []byte("plugins:\n  - name: x\n    bogus: 1\n"), nil)
	var pe *Error
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, 3, pe.Line)
	assert.Equal(t, "x", pe.Plugin)
}

func TestBuiltins(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("package x\n"), 0o644))
	}
	write("spf/spf.go")
	write("dkim/register.go")
	write("dkim/dkim_test.go")
	write("onlytests/x_test.go")
	write("notgo/README.md")
	write("nested/sub/x.go")
	write("loose.go")
	got, err := Builtins(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"dkim", "spf"}, got)

	got, err = Builtins(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestRenderMain(t *testing.T) {
	src, err := Render(Source{
		Generator: "elemta-build",
		Package:   "main",
		Variant:   "full",
		Main:      "github.com/elemta/elemta/cmd/elemta/cli",
		Plugins: []Plugin{
			{Name: "zeta", Import: "example.com/cli"}, // same name as the CLI package
			{Name: "alpha", Import: BuiltinImport("alpha")},
		},
	})
	require.NoError(t, err)
	f, err := goparser.ParseFile(token.NewFileSet(), "main.go", src, 0)
	require.NoError(t, err)
	assert.Equal(t, "main", f.Name.Name)
	s := string(src)
	assert.Contains(t, s, "code := cli.Main(ctx, os.Args[1:], manifest)")
	assert.Contains(t, s, "var manifest = []string{\n\t\"alpha\",\n\t\"zeta\",\n}")
	assert.Less(t, strings.Index(s, `_ "example.com/cli"`), strings.Index(s, `_ "github.com/elemta/elemta/plugins/alpha"`))
}

func TestBuildKeys(t *testing.T) {
	f, err := Parse("plugins.yaml", []byte(`platforms: [linux/amd64, darwin/arm64]
cgo: true
dist: {name: acme, version: 2.1.0, module: example.com/acme, output: out/}
replaces: ["example.com/x => ../x", "example.com/y v1.0.0 => example.com/z v1.0.1"]
excludes: ["example.com/bad v1.0.1"]
ldflags: "-s -w"
tags: [netgo, osusergo]
plugins:
  - name: spf
    module: example.com/myspf
    version: v1.0.0
    replace_builtin: true
`), []string{"spf"})
	require.NoError(t, err)
	b := f.Build
	assert.Equal(t, []Platform{{OS: "linux", Arch: "amd64", Line: 1}, {OS: "darwin", Arch: "arm64", Line: 1}}, b.Platforms)
	assert.True(t, b.CGO)
	assert.Equal(t, Dist{Name: "acme", Version: "2.1.0", Module: "example.com/acme", Output: "out/"}, b.Dist)
	require.Len(t, b.Replaces, 2)
	assert.Equal(t, "../x", b.Replaces[0].New.Path)
	assert.Empty(t, b.Replaces[0].New.Version)
	assert.Equal(t, "v1.0.0", b.Replaces[1].Old.Version)
	assert.Equal(t, "example.com/z", b.Replaces[1].New.Path)
	assert.Equal(t, "example.com/bad", b.Excludes[0].Path)
	assert.Equal(t, "-s -w", b.LDFlags)
	assert.Equal(t, []string{"netgo", "osusergo"}, b.Tags)
	assert.Equal(t, 3, b.Line["dist"])
	assert.True(t, f.Plugins[0].ReplaceBuiltin)
}

func TestCheckBuiltinsLater(t *testing.T) {
	f, err := ParseUnchecked("p.yaml", []byte("plugins:\n  - name: spf\n  - name: dkim\n    module: example.com/dkim\n    version: v1.0.0\n"))
	require.NoError(t, err)
	err = f.CheckBuiltins([]string{"dkim"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `p.yaml:2: plugin "spf": no built-in plugin of that name`)
	assert.Contains(t, err.Error(), `p.yaml:3: plugin "dkim": module example.com/dkim would replace the built-in plugin`)
	assert.NoError(t, f.CheckBuiltins([]string{"spf"}))
}
