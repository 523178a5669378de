package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// TestScaffoldModuleBuildsAndPasses scaffolds a third-party plugin module
// into a temporary directory, with a replace to this checkout, and runs its
// tests offline (GOPROXY=off: everything comes from the module cache).
func TestScaffoldModuleBuildsAndPasses(t *testing.T) {
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "elemta-greet")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-module", "example.com/you/elemta-greet", "-name", "greet", "-dir", dir, "-core-dir", repo,
		"-stage", "pre-queue", "-description", "greets every message"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	for _, f := range []string{"go.mod", "README.md", "register.go", "greet.go", "greet_test.go", "plugins.yaml.snippet", "testdata/message.eml"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	assert.Contains(t, stdout.String(), "go mod tidy")

	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	mf, err := modfile.Parse("go.mod", gomod, nil)
	require.NoError(t, err)
	assert.Equal(t, "example.com/you/elemta-greet", mf.Module.Mod.Path)
	require.Len(t, mf.Require, 1)
	assert.Equal(t, pluginsfile.CorePath, mf.Require[0].Mod.Path)
	require.Len(t, mf.Replace, 1)
	assert.Equal(t, repo, mf.Replace[0].New.Path)

	snippet, err := os.ReadFile(filepath.Join(dir, "plugins.yaml.snippet"))
	require.NoError(t, err)
	f, err := pluginsfile.Parse("plugins.yaml.snippet", snippet, nil)
	require.NoError(t, err)
	require.Len(t, f.Plugins, 1)
	assert.Equal(t, "greet", f.Plugins[0].Name)
	assert.Equal(t, "example.com/you/elemta-greet", f.Plugins[0].Module)

	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	require.NoError(t, err)
	assert.Contains(t, string(readme), "go test -race ./...")
	assert.NotContains(t, string(readme), "./plugins/")

	if testing.Short() {
		return
	}
	for _, args := range [][]string{
		{"mod", "tidy"},
		{"vet", "./..."},
		{"test", "-count=1", "./..."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		if args[0] == "test" {
			assert.Contains(t, string(out), "ok  \texample.com/you/elemta-greet")
		}
	}
	out, err := exec.Command("gofmt", "-l", dir).CombinedOutput()
	require.NoError(t, err)
	assert.Empty(t, string(out), "generated code must be gofmt-clean")
}

func TestScaffoldModuleRefuses(t *testing.T) {
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	exists := t.TempDir()
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"bad module path", []string{"-module", "Not A Path", "-core-dir", repo}, "-module"},
		{"inside the core", []string{"-module", pluginsfile.CorePath + "/plugins/x", "-core-dir", repo}, "inside the core module"},
		{"no core version", []string{"-module", "example.com/x"}, "-core-version"},
		{"bad core version", []string{"-module", "example.com/x", "-core-version", "1.4"}, `-core-version "1.4"`},
		{"core dir without go.mod", []string{"-module", "example.com/x", "-core-dir", exists}, "not an Elemta checkout"},
		{"directory exists", []string{"-module", "example.com/x", "-core-version", "v1.4.0", "-dir", exists}, "already exists"},
		{"bad plugin name", []string{"-module", "example.com/x", "-core-version", "v1.4.0", "-name", "9x"}, "starting with a letter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-name", "greet", "-dir", filepath.Join(t.TempDir(), "m")}, tt.args...)
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 1, run(args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.err)
			if tt.name != "directory exists" {
				assert.NoDirExists(t, args[3], "nothing is written when a check fails")
			}
		})
	}
}

// TestScaffoldModuleCoreVersion: -core-version is required as written,
// without a replace.
func TestScaffoldModuleCoreVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-module", "example.com/you/m", "-name", "greet", "-dir", dir, "-core-version", "v1.4.0"}, &stdout, &stderr), stderr.String())
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	assert.Equal(t, "module example.com/you/m\n\ngo "+goVersion+"\n\nrequire github.com/elemta/elemta v1.4.0\n", string(gomod))
}

// TestGoVersionIsTheCores: a scaffolded module's go directive is the core's.
func TestGoVersionIsTheCores(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	mf, err := modfile.Parse("go.mod", data, nil)
	require.NoError(t, err)
	assert.Equal(t, mf.Go.Version, goVersion)
}
