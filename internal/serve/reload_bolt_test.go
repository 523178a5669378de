package serve

import (
	"context"
	"io"
	"log/slog"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/greylist"
	"github.com/elemta/elemta/registry"
)

// TestReloadKeepsBoltState reloads a server whose greylist keeps its
// triplets in a bbolt file: the new instance opens the file the old one
// holds (without the in-process sharing it would wait bolt_lock_timeout
// and the reload would fail), and the triplet greylisted before the
// reload passes after it, so the state is the same file's.
func TestReloadKeepsBoltState(t *testing.T) {
	cfg := testConfig(t)
	cfg.LocalDomains = []string{"example.test"}
	dir := t.TempDir()
	clock := storetest.NewClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	file := filepath.Join(dir, "plugins.toml")
	doc := "[plugins]\nplugins = [\"greylist\"]\n[plugins.greylist]\ndelay = \"1m\"\nexempt_networks = []\nbolt_lock_timeout = \"200ms\"\nbolt_path = " +
		`"` + filepath.Join(dir, "greylist.db") + `"` + "\n"
	require.NoError(t, os.WriteFile(file, []byte(doc), 0o600))
	load := func(ctx context.Context, path string) (Config, *pluginhost.Manager, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, nil, err
		}
		pcfg, err := pluginhost.ParseConfig(path, data)
		if err != nil {
			return Config{}, nil, err
		}
		mgr := pluginhost.NewManager(pcfg, pluginhost.WithHost(registry.Host{Clock: clock, DataDir: dir}))
		return cfg, mgr, mgr.LoadPlugins(ctx)
	}
	_, mgr, err := load(context.Background(), file)
	require.NoError(t, err)
	s, err := StartWith(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Load: load, ConfigPath: file})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	rcpt := func() error {
		c, err := smtp.Dial(s.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Mail("a@client.test"))
		return c.Rcpt("user@example.test")
	}
	err = rcpt()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "451"), "first sight greylisted: %v", err)

	for i := range 3 {
		_, err := s.Reload(context.Background(), "")
		require.NoError(t, err, "reload %d with the bbolt file held by the serving instance", i+1)
	}
	clock.Advance(2 * time.Minute)
	assert.NoError(t, rcpt(), "the retry after the delay passes: the reloaded instance has the triplet")
}
