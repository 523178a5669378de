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
)

func TestAddEntry(t *testing.T) {
	tests := []struct {
		name string
		src  string
		inc  bool
		want string
		err  string
	}{
		{
			name: "after the last entry, comments kept",
			src:  "# head\nplugins:\n  - name: spf   # auth\n  - name: dkim\n    # dkim's own note\n\n# variants below\nvariants:\n  small: [spf]\n",
			inc:  true,
			want: "# head\nplugins:\n  - name: spf   # auth\n  - name: dkim\n    # dkim's own note\n  - name: greylist\n\n# variants below\nvariants:\n  small: [spf]\n",
		},
		{
			name: "multi-line last entry, not in the default binary",
			src:  "plugins:\n- name: headerlist\n  module: example.com/h\n  version: v1.0.0\n",
			want: "plugins:\n- name: headerlist\n  module: example.com/h\n  version: v1.0.0\n- name: greylist\n  default: false\n",
		},
		{
			name: "empty flow list",
			src:  "# c\nplugins: [] # none yet\n",
			inc:  true,
			want: "# c\nplugins: # none yet\n  - name: greylist\n",
		},
		{
			name: "no final newline",
			src:  "plugins:\n  - name: spf",
			inc:  true,
			want: "plugins:\n  - name: spf\n  - name: greylist\n",
		},
		{name: "already declared", src: "plugins:\n  - name: spf\n  - name: greylist\n", err: `plugins.yaml:3: plugin "greylist" is already declared`},
		{name: "flow list with entries", src: "plugins: [{name: spf}]\n", err: "plugins.yaml:1: the plugins list is in flow style"},
		{name: "no plugins key", src: "variants: {}\n", err: `no top-level "plugins" list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := addEntry("plugins.yaml", []byte(tt.src), "greylist", tt.inc)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
}

func TestBadNames(t *testing.T) {
	tests := []struct{ name, typ, stage, err string }{
		{"Grey", "filter", "post-reception", "invalid name"},
		{"1x", "filter", "post-reception", "invalid name"},
		{"enabled", "filter", "post-reception", "name is reserved: a key of the [plugins] table"},
		{"9x", "filter", "post-reception", "starting with a letter"},
		{"go-to", "filter", "post-reception", "not a Go identifier"},
		{"ok", "antivirus", "post-reception", `-type "antivirus"`},
		{"ok", "filter", "pre-data", `-stage "pre-data"`},
	}
	for _, tt := range tests {
		_, err := scaffold(options{name: tt.name, typ: tt.typ, stage: tt.stage, root: t.TempDir()})
		assert.ErrorContains(t, err, tt.err, tt.name)
	}
}

// TestScaffoldBuildsAndPasses scaffolds a plugin into a copy of a small
// repository, checks plugins.yaml and gen/, then compiles the plugin
// against this checkout's registry and runs its tests (which run the
// contract kit).
func TestScaffoldBuildsAndPasses(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "plugins", "spf"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "plugins", "spf", "spf.go"), []byte("package spf\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "plugins.yaml"), []byte("plugins:\n  - name: spf\nvariants:\n  auth: [spf]\n"), 0o644))

	var stdout, stderr bytes.Buffer
	code := run([]string{"-root", root, "-name", "rate-limit", "-type", "ratelimit", "-stage", "pre-reception",
		"-description", "limits how fast clients send"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	for _, f := range []string{"README.md", "register.go", "ratelimit.go", "ratelimit_test.go", "testdata/message.eml"} {
		assert.FileExists(t, filepath.Join(root, "plugins", "rate-limit", f))
	}
	yaml, err := os.ReadFile(filepath.Join(root, "plugins.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "plugins:\n  - name: spf\n  - name: rate-limit\nvariants:\n  auth: [spf]\n", string(yaml))
	gen, err := os.ReadFile(filepath.Join(root, "gen", "plugins_gen.go"))
	require.NoError(t, err)
	assert.Contains(t, string(gen), `_ "github.com/elemta/elemta/plugins/rate-limit" // plugin rate-limit`)

	// Running it again must refuse: the directory exists.
	code = run([]string{"-root", root, "-name", "rate-limit"}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "already exists")

	if testing.Short() {
		return
	}
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	// gen/ imports the plugin by its path in the real repository; this
	// module only checks that the plugin itself builds and passes.
	require.NoError(t, os.RemoveAll(filepath.Join(root, "gen")))
	gomod := "module example.com/scaffoldcheck\n\ngo 1.26.0\n\nrequire github.com/elemta/elemta v0.0.0-00010101000000-000000000000\n\nreplace github.com/elemta/elemta => " + repo + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte(gomod), 0o644))
	for _, args := range [][]string{
		{"mod", "tidy"},
		{"vet", "./plugins/rate-limit/"},
		{"test", "-count=1", "./plugins/rate-limit/"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
	}
	out, err := exec.Command("gofmt", "-l", filepath.Join(root, "plugins")).CombinedOutput()
	require.NoError(t, err)
	assert.Empty(t, string(out), "generated code must be gofmt-clean")
}
