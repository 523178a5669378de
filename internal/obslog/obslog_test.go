package obslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestPluginFilesAndReopen: each instance's file gets its lines only;
// after a rename (logrotate) and Reopen, new lines go to a new file.
func TestPluginFilesAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs", "plugins")
	var stderr bytes.Buffer
	l, err := New(Config{Format: "text", PluginDir: dir}, &stderr, slog.LevelInfo)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	require.NoError(t, l.Open([]string{"clamav", "contentfilter/strict"}))

	av, cf := l.Plugin("clamav"), l.Plugin("contentfilter/strict")
	av.Info("scanned", "n", 1)
	cf.Info("inspected", "n", 2)
	l.Logger().Info("process line")

	avPath, cfPath := filepath.Join(dir, "clamav.log"), filepath.Join(dir, "contentfilter.strict.log")
	assert.Contains(t, read(t, avPath), "plugin=clamav")
	assert.Contains(t, read(t, avPath), "scanned")
	assert.NotContains(t, read(t, avPath), "inspected")
	assert.NotContains(t, read(t, avPath), "process line")
	assert.Contains(t, read(t, cfPath), `plugin=contentfilter/strict`)
	assert.NotContains(t, read(t, cfPath), "scanned")
	assert.Contains(t, stderr.String(), "process line")
	assert.NotContains(t, stderr.String(), "scanned", "a plugin with a file does not log to stderr")

	require.NoError(t, os.Rename(avPath, avPath+".1"))
	av.Info("before reopen")
	require.NoError(t, l.Reopen())
	av.Info("after reopen")
	assert.Contains(t, read(t, avPath+".1"), "before reopen")
	assert.NotContains(t, read(t, avPath+".1"), "after reopen")
	assert.Contains(t, read(t, avPath), "after reopen")
	assert.NotContains(t, read(t, avPath), "before reopen")
}

func TestLevelsAndJSON(t *testing.T) {
	var out bytes.Buffer
	l, err := New(Config{Format: "json", Level: "warn", PluginLevels: map[string]string{"spf": "debug", "spf/eu": "error"}}, &out, slog.LevelInfo)
	require.NoError(t, err)
	l.Logger().Info("hidden: process at warn")
	l.Plugin("spf").Debug("spf debug")
	l.Plugin("spf/us").Debug("spf/us debug: the plugin's level")
	l.Plugin("spf/eu").Warn("hidden: spf/eu at error")
	l.Plugin("dkim").Info("hidden: dkim at the process level")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, out.String())
	for _, line := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		assert.Contains(t, []any{"spf", "spf/us"}, rec["plugin"])
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Format: "xml"}, `format "xml"`},
		{Config{Format: "text", Level: "loud"}, `level: "loud"`},
		{Config{Format: "text", PluginLevels: map[string]string{"spf": "verbose"}}, `plugin_levels.spf: "verbose"`},
	} {
		assert.ErrorContains(t, tc.cfg.Validate(), tc.want)
	}
	assert.NoError(t, DefaultConfig().Validate())
}

func TestUnwritableDir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	l, err := New(Config{Format: "text", PluginDir: filepath.Join(f, "sub")}, &bytes.Buffer{}, slog.LevelInfo)
	require.NoError(t, err)
	assert.ErrorContains(t, l.Open([]string{"clamav"}), "plugin_dir")
}

func TestSessionFromContext(t *testing.T) {
	var out bytes.Buffer
	l, err := New(Config{Format: "text"}, &out, slog.LevelInfo)
	require.NoError(t, err)
	msg, err := registry.ParseMessage([]byte("Subject: x\r\n\r\nbody\r\n"), registry.Envelope{})
	require.NoError(t, err)
	pc := registry.NewProcessingContext(msg, &registry.Session{ID: "19a2b3c4d5e6f"})
	log := l.Plugin("spf").With("k", "v")
	log.InfoContext(registry.WithProcessingContext(context.Background(), pc), "checked")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[0], "session=19a2b3c4d5e6f")
	assert.Contains(t, lines[0], "plugin=spf")
	assert.NotContains(t, lines[1], "session=")
}
