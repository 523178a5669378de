package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// fakeProxy serves the modules in testdata/modules/<path with _>@<version>
// from a file:// GOPROXY, with a private module cache, so the builder's
// version checks run against a real module graph without a network.
//
//	github.com/elemta/elemta v1.0.0, v1.1.0  a stand-in core: reg + cmd/elemta/cli
//	example.com/good v1.0.0, v1.1.0          registers "good"
//	example.com/liar v1.0.0                  registers "somethingelse"
//	example.com/bumper v1.0.0                requires the core at v1.1.0
//	example.com/needsnewgood v1.0.0          requires example.com/good v1.1.0
func fakeProxy(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries")
	}
	proxy := t.TempDir()
	dirs, err := filepath.Glob("testdata/modules/*@v*")
	require.NoError(t, err)
	for _, dir := range dirs {
		base := filepath.Base(dir)
		at := strings.LastIndex(base, "@")
		mv := module.Version{Path: strings.ReplaceAll(base[:at], "_", "/"), Version: base[at+1:]}
		esc, err := module.EscapePath(mv.Path)
		require.NoError(t, err)
		vdir := filepath.Join(proxy, esc, "@v")
		require.NoError(t, os.MkdirAll(vdir, 0o755))
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".mod"), gomod, 0o644))
		info := fmt.Sprintf(`{"Version":%q,"Time":"2024-01-01T00:00:00Z"}`, mv.Version)
		require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".info"), []byte(info), 0o644))
		var zip bytes.Buffer
		require.NoError(t, modzip.CreateFromDir(&zip, mv, dir))
		require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".zip"), zip.Bytes(), 0o644))
		list, _ := os.ReadFile(filepath.Join(vdir, "list"))
		list = append(list, mv.Version+"\n"...)
		require.NoError(t, os.WriteFile(filepath.Join(vdir, "list"), list, 0o644))
	}
	t.Setenv("GOPROXY", "file://"+filepath.ToSlash(proxy))
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GONOSUMDB", "")
	t.Setenv("GOPRIVATE", "")
	t.Setenv("GOTOOLCHAIN", "local")
	t.Setenv("GOMODCACHE", t.TempDir())
	// A module cache is read-only; -modcacherw lets t.TempDir remove it.
	t.Setenv("GOFLAGS", "-modcacherw -buildvcs=false")
}

// writeConfig writes a plugins.yaml into a fresh directory (so no built-in
// plugins exist next to it) and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "plugins.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o644))
	return cfg
}

func TestBuildAgainstModuleGraph(t *testing.T) {
	fakeProxy(t)
	mine, err := filepath.Abs("testdata/modules/local-mine")
	require.NoError(t, err)
	fakeCore, err := filepath.Abs("testdata/modules/github.com_elemta_elemta@v1.0.0")
	require.NoError(t, err)

	plugins := `plugins:
  - name: good
    module: example.com/good
    version: v1.0.0
  - name: bumper
    module: example.com/bumper
    version: v1.0.0
    default: false
  - name: liar
    module: example.com/liar
    version: v1.0.0
    default: false
  - name: needsnewgood
    module: example.com/needsnewgood
    version: v1.0.0
    default: false
  - name: mine
    module: example.com/mine
    path: ` + mine + `
    default: false
  - name: wrongpath
    module: example.com/notmine
    path: ` + mine + `
    default: false
variants:
  bump: [good, bumper]
  liar: [liar]
  drift: [good, needsnewgood]
  local: [good, mine]
  wrongpath: [wrongpath]
`
	tests := []struct {
		name        string
		variant     string
		coreVersion string
		coreDir     string
		want        []string // plugins of a successful build
		errs        []string // substrings of the error
		note        string   // substring of the log
	}{
		{name: "pinned", coreVersion: "v1.0.0", want: []string{"good"}},
		{name: "core moved by a plugin", variant: "bump", coreVersion: "v1.0.0", errs: []string{
			"core module github.com/elemta/elemta (from -core-version): asked for v1.0.0, but the plugin modules move it to v1.1.0",
			`example.com/bumper@v1.0.0 requires github.com/elemta/elemta@v1.1.0 (plugin "bumper", `,
			"build with -core-version v1.1.0",
		}},
		{name: "core asked at the version a plugin needs", variant: "bump", coreVersion: "v1.1.0", want: []string{"bumper", "good"}},
		{name: "plugin registers another name", variant: "liar", coreVersion: "v1.0.0", errs: []string{
			`manifest names "liar" but no package registered it`,
		}},
		{name: "pinned plugin moved by another", variant: "drift", coreVersion: "v1.0.0", errs: []string{
			`plugins.yaml:2: plugin "good": module example.com/good is pinned at v1.0.0, but the module graph moves it to v1.1.0: example.com/needsnewgood@v1.0.0 requires example.com/good@v1.1.0 (plugin "needsnewgood", `,
		}},
		{name: "local path and core checkout", variant: "local", coreDir: fakeCore, want: []string{"good", "mine"},
			note: "requires github.com/elemta/elemta@v1.0.0"},
		{name: "path holds another module", variant: "wrongpath", coreVersion: "v1.0.0", errs: []string{
			`plugins.yaml:21: plugin "wrongpath": path ` + mine + ` holds module "example.com/mine", not example.com/notmine`,
		}},
	}
	cfg := writeConfig(t, plugins)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			out := filepath.Join(t.TempDir(), BinaryName("", tt.variant))
			res, err := build(context.Background(), options{
				config: cfg, variant: tt.variant, output: out,
				coreVersion: tt.coreVersion, coreDir: tt.coreDir,
				check: true, log: &log,
			})
			if len(tt.errs) > 0 {
				require.Error(t, err)
				for _, e := range tt.errs {
					assert.Contains(t, err.Error(), e)
				}
				assert.NoFileExists(t, out, "a binary that fails its check is removed")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Plugins)
			assert.Contains(t, log.String(), tt.note)
			listed, err := exec.Command(out, "plugins", "list", "--json").Output()
			require.NoError(t, err)
			got, err := parsePluginList(listed)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestKeepModule checks that -workdir leaves a reproducible module behind:
// go.mod pins what was asked, go.sum is there, and building it again by
// hand gives a working binary.
func TestKeepModule(t *testing.T) {
	fakeProxy(t)
	cfg := writeConfig(t, "plugins:\n  - name: good\n    module: example.com/good\n    version: v1.0.0\n")
	work := t.TempDir()
	out := filepath.Join(t.TempDir(), "elemta")
	res, err := build(context.Background(), options{config: cfg, output: out, coreVersion: "v1.0.0", workDir: work, check: true})
	require.NoError(t, err)
	assert.Equal(t, work, res.KeptDir)
	gomod, err := os.ReadFile(filepath.Join(work, "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(gomod), "github.com/elemta/elemta v1.0.0")
	assert.Contains(t, string(gomod), "example.com/good v1.0.0")
	assert.FileExists(t, filepath.Join(work, "go.sum"))
	main, err := os.ReadFile(filepath.Join(work, "main.go"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(main), "// Code generated by elemta-build from plugins.yaml; DO NOT EDIT.\n"))

	rebuilt := filepath.Join(t.TempDir(), "again")
	cmd := exec.Command("go", "build", "-mod=readonly", "-o", rebuilt, ".")
	cmd.Dir = work
	outb, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", outb)
	listed, err := exec.Command(rebuilt, "plugins", "list", "--json").Output()
	require.NoError(t, err)
	assert.JSONEq(t, `[{"name":"good"}]`, string(listed))
}

func TestRunAllVariants(t *testing.T) {
	fakeProxy(t)
	cfg := writeConfig(t, `plugins:
  - name: good
    module: example.com/good
    version: v1.0.0
variants:
  one: [good]
  none: []
`)
	bin := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-config", cfg, "-all-variants", "-core-version", "v1.0.0", "-o", bin}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.FileExists(t, filepath.Join(bin, "elemta-one"))
	assert.FileExists(t, filepath.Join(bin, "elemta-none"))
	assert.NoFileExists(t, filepath.Join(bin, "elemta"), "-all-variants builds only the named variants")
	assert.Contains(t, stdout.String(), "elemta-one: good")
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"variant and all", []string{"-variant", "x", "-all-variants"}, 2, "exclude each other"},
		{"stray argument", []string{"x"}, 2, "unexpected arguments"},
		{"missing config", []string{"-config", "testdata/nope.yaml"}, 1, "nope.yaml"},
		{"unknown variant", []string{"-config", "testdata/variants.yaml", "-variant", "huge", "-plugins-dir", "testdata/none"}, 1, `no variant "huge"; variants: minimal`},
		{"no variants", []string{"-config", "testdata/novariants.yaml", "-all-variants", "-plugins-dir", "testdata/none"}, 1, "declares no variants"},
		{"bad core version", []string{"-config", "testdata/variants.yaml", "-core-version", "1.0", "-plugins-dir", "testdata/none"}, 1, `-core-version "1.0" is not a full semantic version`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tt.code, run(context.Background(), tt.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.msg)
		})
	}
}

func TestOutputPath(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		out, distOut, name string
		dirMode            bool
		want               string
	}{
		{"", "", "elemta", false, filepath.Join("bin", "elemta")},
		{"", "", "elemta-minimal", false, filepath.Join("bin", "elemta-minimal")},
		{"", "dist", "acme-minimal", false, filepath.Join("dist", "acme-minimal")},
		{"bin/elemta-x", "dist", "elemta-minimal", false, "bin/elemta-x"},
		{"bin/", "", "elemta-minimal", false, filepath.Join("bin", "elemta-minimal")},
		{"bin", "", "elemta-full", true, filepath.Join("bin", "elemta-full")},
		{dir, "", "elemta-full", false, filepath.Join(dir, "elemta-full")},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, outputPath(tt.out, tt.distOut, tt.name, tt.dirMode), "%+v", tt)
	}
	assert.Equal(t, "elemta", BinaryName("", "default"))
	assert.Equal(t, "acme-full", BinaryName("acme", "full"))
}

func TestParsePluginList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{`[{"name":"spf"},{"name":"contentfilter","version":"v1"}]`, []string{"contentfilter", "spf"}, ""},
		{`{"core":"v1","plugins":[{"name":"dkim"}]}`, []string{"dkim"}, ""},
		{`[]`, []string{}, ""},
		{`[{"type":"x"}]`, nil, "without a name"},
		{`not json`, nil, "read `plugins list --json` output"},
	}
	for _, tt := range tests {
		got, err := parsePluginList([]byte(tt.in))
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

func TestBuildEnv(t *testing.T) {
	env := buildEnv([]string{"HOME=/h", "GOWORK=/w/go.work", "GOFLAGS=-buildvcs=true -mod=vendor -modcacherw", "GOPROXY=off", "GOOS=plan9", "GOARCH=arm", "CGO_ENABLED=1"})
	assert.Equal(t, []string{"HOME=/h", "GOPROXY=off", "GOWORK=off", "GOFLAGS=-modcacherw -mod=mod -buildvcs=false"}, env)
}

func TestRunKeep(t *testing.T) {
	fakeProxy(t)
	cfg := writeConfig(t, "plugins:\n  - name: good\n    module: example.com/good\n    version: v1.0.0\n")
	var stdout, stderr bytes.Buffer
	out := filepath.Join(t.TempDir(), "elemta")
	code := run(context.Background(), []string{"-config", cfg, "-core-version", "v1.0.0", "-keep", "-o", out}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	_, kept, ok := strings.Cut(stdout.String(), "build module kept in ")
	require.True(t, ok, stdout.String())
	kept = strings.TrimSpace(kept)
	t.Cleanup(func() { os.RemoveAll(kept) })
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		assert.FileExists(t, filepath.Join(kept, f))
	}
}

// TestRequirersNamesEveryEntry checks that a module holding several
// plugins is named with each of its entries when it moves a version.
func TestRequirersNamesEveryEntry(t *testing.T) {
	f := &pluginsfile.File{Name: "plugins.yaml"}
	plugins := []pluginsfile.Plugin{
		{Name: "a", Module: "example.com/pair", Version: "v1.0.0", Line: 2},
		{Name: "b", Module: "example.com/pair", Version: "v1.0.0", Line: 5},
		{Name: "c", Module: "example.com/other", Version: "v1.0.0", Line: 8},
	}
	graph := []byte("elemta.build/custom github.com/elemta/elemta@v1.1.0\nexample.com/pair@v1.0.0 github.com/elemta/elemta@v1.1.0\n")
	got := requirers(graph, "elemta.build/custom", "github.com/elemta/elemta", "v1.1.0", f, plugins)
	assert.Equal(t, `example.com/pair@v1.0.0 requires github.com/elemta/elemta@v1.1.0 (plugin "a", plugins.yaml:2; plugin "b", plugins.yaml:5)`, got)
}

func TestRunSubcommandAndDownloadOnly(t *testing.T) {
	fakeProxy(t)
	cfg := writeConfig(t, "plugins:\n  - name: good\n    module: example.com/good\n    version: v1.0.0\n")

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"run", "-config", cfg, "-core-version", "v1.0.0", "--", "version"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Equal(t, "core v1.0.0\n", stdout.String(), "the stand-in core's answer to an unknown command")

	stdout.Reset()
	stderr.Reset()
	bin := t.TempDir()
	code = run(context.Background(), []string{"-config", cfg, "-core-version", "v1.0.0", "-download-only", "-o", bin + "/"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Contains(t, stdout.String(), "variant default: modules downloaded: good")
	entries, err := os.ReadDir(bin)
	require.NoError(t, err)
	assert.Empty(t, entries, "-download-only builds nothing")

	stderr.Reset()
	assert.Equal(t, 2, run(context.Background(), []string{"run", "-config", cfg, "-platform", "linux/arm64"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "do not apply")
}

func TestPlatformErrors(t *testing.T) {
	fakeProxy(t)
	cfg := writeConfig(t, "platforms: [linux/amd64, plan10/z80]\nplugins: []\n")
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 1, run(context.Background(), []string{"-config", cfg, "-core-version", "v1.0.0"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "plugins.yaml:1: platform plan10/z80 is not supported by this Go toolchain")
	stderr.Reset()
	assert.Equal(t, 2, run(context.Background(), []string{"-config", cfg, "-platform", "linux"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), `-platform: platform "linux" is not GOOS/GOARCH`)
}

func TestCompiledInOnly(t *testing.T) {
	conf := "[plugins]\nenabled = true\nplugins = [\"contentfilter\", \"authres\"]\n\n[plugins.contentfilter]\nplugins = 3\n"
	got := compiledInOnly([]byte(conf), []string{"contentfilter", "dkim"})
	assert.Equal(t, "[plugins]\nenabled = true\nplugins = [\"contentfilter\"]\n\n[plugins.contentfilter]\nplugins = 3\n", string(got))
	assert.Contains(t, string(compiledInOnly([]byte(conf), nil)), "plugins = []\n")
}
