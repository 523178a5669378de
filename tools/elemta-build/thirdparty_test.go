package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestThirdPartyPlugin builds the real core from this checkout with the
// example plugin module examples/thirdparty (its own go.mod, wired in
// through a path entry, i.e. a replace), then runs `elemta scan` with it to
// show it acts, and checks that a variant without it does not link it.
// Everything resolves from the local module cache: no network.
func TestThirdPartyPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two Elemta binaries")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	example := filepath.Join(root, "examples", "thirdparty")
	cfg := writeConfig(t, `plugins:
  - name: contentfilter
  - name: headerlist
    module: example.com/elemta-headerlist
    import: example.com/elemta-headerlist/headerlist
    path: `+example+`
variants:
  core-only: [contentfilter]
`)
	bin := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-config", cfg, "-core-dir", root, "-plugins-dir", filepath.Join(root, "plugins"),
		"-o", filepath.Join(bin, "elemta")}, &stdout, &stderr)
	require.Equal(t, 0, code, "%s", stderr.String())
	elemta := filepath.Join(bin, "elemta")

	t.Run("plugins list", func(t *testing.T) {
		out, err := exec.Command(elemta, "plugins", "list", "--json", "--config", filepath.Join(example, "testdata", "elemta.toml")).Output()
		require.NoError(t, err)
		var list []struct {
			Name          string `json:"name"`
			Package       string `json:"package"`
			Module        string `json:"module"`
			ModuleVersion string `json:"module_version"`
			Enabled       bool   `json:"enabled"`
		}
		require.NoError(t, json.Unmarshal(out, &list), "%s", out)
		var names []string
		for _, p := range list {
			names = append(names, p.Name)
			if p.Name == "headerlist" {
				assert.Equal(t, "example.com/elemta-headerlist/headerlist", p.Package)
				assert.Equal(t, "example.com/elemta-headerlist", p.Module)
				assert.Equal(t, "(devel)", p.ModuleVersion, "a path entry is a local directory: no version")
				assert.True(t, p.Enabled)
			}
		}
		assert.Equal(t, []string{"contentfilter", "headerlist"}, names)
	})

	scanTests := []struct {
		file   string
		status int
		want   []string
	}{
		{"denied.eml", 2, []string{"headerlist", "deny: rule 1", "Sender is on the deny list"}},
		{"allowed.eml", 0, []string{"headerlist", "allow: rule 0", "X-Elemta-Headerlist: allow; rule=0; from=ceo@spam.example"}},
		{"clean.eml", 0, []string{"headerlist", "no rule matched"}},
	}
	for _, tt := range scanTests {
		t.Run("scan "+tt.file, func(t *testing.T) {
			cmd := exec.Command(elemta, "scan", "--config", filepath.Join(example, "testdata", "elemta.toml"), filepath.Join(example, "testdata", tt.file))
			out, err := cmd.CombinedOutput()
			status := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.status, status, "%s", out)
			for _, w := range tt.want {
				assert.Contains(t, string(out), w)
			}
		})
	}

	t.Run("variant without the plugin does not link it", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		small := filepath.Join(bin, "elemta-core-only")
		code := run(context.Background(), []string{"-config", cfg, "-core-dir", root, "-plugins-dir", filepath.Join(root, "plugins"),
			"-variant", "core-only", "-o", small}, &stdout, &stderr)
		require.Equal(t, 0, code, "%s", stderr.String())
		mods, err := exec.Command("go", "version", "-m", small).Output()
		require.NoError(t, err)
		assert.NotContains(t, string(mods), "example.com/elemta-headerlist")
		full, err := exec.Command("go", "version", "-m", elemta).Output()
		require.NoError(t, err)
		assert.Contains(t, string(full), "example.com/elemta-headerlist")
		out, err := exec.Command(small, "plugins", "list").Output()
		require.NoError(t, err)
		assert.False(t, strings.Contains(string(out), "headerlist"), "%s", out)
	})
	_ = os.Remove(elemta)
}
