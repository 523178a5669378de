package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// sick makes the adminprobe plugin's health check fail; checks counts them.
var sick, checks atomic.Int64

type probe struct{}

func (probe) HandleStage(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{}, nil
}

func (probe) HealthCheck(context.Context) error {
	checks.Add(1)
	if sick.Load() != 0 {
		return errors.New("backend unreachable")
	}
	return nil
}

func init() {
	registry.Register(registry.Module[struct{}, probe]{
		Name: "adminprobe", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception},
		New:    func(struct{}, registry.Host) (probe, error) { return probe{}, nil },
	})
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	srv   *Server
	base  string
	spool *spool.Spool
	clk   *clock
	c     *http.Client
}

func start(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	sick.Store(0)
	pcfg, err := pluginhost.ParseConfig("t.toml", []byte(`[plugins]
plugins = ["adminprobe", "adminprobe/b"]`))
	require.NoError(t, err)
	m := metrics.New(metrics.BuildInfo{})
	mgr := pluginhost.NewManager(pcfg, pluginhost.WithObserver(m))
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = mgr.Close() })
	sp, _, err := spool.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { _ = sp.Close() })
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, Deps{Plugins: func() *pluginhost.Manager { return mgr }, Metrics: m, Spool: func() *spool.Spool { return sp }, Now: clk.now,
		Config: func() (map[string]any, error) { return map[string]any{"server": map[string]any{"listen": "x"}}, nil }})
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	f := &fixture{srv: s, spool: sp, clk: clk, c: &http.Client{Timeout: 10 * time.Second}}
	if n, _ := cfg.Address(); n == "tcp" {
		f.base = "http://" + s.Addr().String()
	}
	return f
}

func (f *fixture) do(t *testing.T, method, path, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(body, out), "%s %s: %s", method, path, body)
	}
	return resp.StatusCode
}

func TestReadyzCachedAndFlips(t *testing.T) {
	f := start(t, func(c *Config) { c.ReadyInterval = registry.Duration(10 * time.Second) })
	var r Readiness
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/readyz", "", &r))
	assert.True(t, r.Ready)
	assert.True(t, r.Spool.OK)
	assert.Len(t, r.Plugins, 2)
	before := checks.Load()

	sick.Store(1)
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/readyz", "", &r), "within the interval: the cached answer")
	assert.Equal(t, before, checks.Load(), "no health check ran")

	f.clk.add(10 * time.Second)
	require.Equal(t, http.StatusServiceUnavailable, f.do(t, "GET", "/readyz", "", &r))
	assert.False(t, r.Ready)
	assert.Equal(t, "backend unreachable", r.Plugins["adminprobe/b"].Error)

	sick.Store(0)
	f.clk.add(10 * time.Second)
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/readyz", "", &r))

	// An unwritable spool is not ready.
	require.NoError(t, os.Chmod(filepath.Join(f.spool.Root(), "tmp"), 0o500))
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(f.spool.Root(), "tmp"), 0o750) })
	f.clk.add(10 * time.Second)
	if os.Geteuid() != 0 { // root writes anyway
		require.Equal(t, http.StatusServiceUnavailable, f.do(t, "GET", "/readyz", "", &r))
		assert.Contains(t, r.Spool.Error, "not writable")
	}
}

func TestTokenRequired(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "token")
	const token = "0123456789abcdef0123"
	require.NoError(t, os.WriteFile(tokFile, []byte(token+"\n"), 0o600))
	f := start(t, func(c *Config) { c.TokenFile = tokFile })
	for _, p := range []string{"/metrics", "/readyz", "/api/v1/plugins", "/api/v1/queue", "/api/v1/config"} {
		var e ErrorBody
		assert.Equal(t, http.StatusUnauthorized, f.do(t, "GET", p, "", &e), p)
		assert.Contains(t, e.Error, "bearer token")
		assert.Equal(t, http.StatusUnauthorized, f.do(t, "GET", p, "wrong-token-wrong-token", &e), p)
	}
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/healthz", "", nil), "healthz tells nothing")
	var ps []PluginStatus
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/plugins", token, &ps))
	assert.Len(t, ps, 2)
}

func TestConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Listen = "0.0.0.0:8025" }, "token_file is required"},
		{func(c *Config) { c.Listen = "192.0.2.1:8025" }, "token_file is required"},
		{func(c *Config) { c.Listen = "nonsense" }, `listen "nonsense"`},
		{func(c *Config) { c.Listen = "unix:" }, "no socket path"},
		{func(c *Config) { c.ReadyInterval = 0 }, "ready_interval must be positive"},
		{func(c *Config) { c.ReadyTimeout = -1 }, "ready_timeout must be positive"},
		{func(c *Config) { c.MaxPluginSeries = 0 }, "max_plugin_series"},
		{func(c *Config) { c.MaxQueueList = 0 }, "max_queue_list"},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		assert.ErrorContains(t, c.Validate(), tc.want)
	}
	for _, ok := range []string{"127.0.0.1:8025", "[::1]:8025", "localhost:8025", "unix:/run/elemta/admin.sock"} {
		c := DefaultConfig()
		c.Listen = ok
		assert.NoError(t, c.Validate(), ok)
	}
	c := DefaultConfig()
	c.Listen, c.TokenFile = "0.0.0.0:8025", "/x"
	assert.NoError(t, c.Validate())
	c.Enabled, c.Listen, c.TokenFile = false, "0.0.0.0:8025", ""
	assert.NoError(t, c.Validate(), "disabled: no listener to protect")

	short := filepath.Join(t.TempDir(), "short")
	require.NoError(t, os.WriteFile(short, []byte("abc"), 0o600))
	c = DefaultConfig()
	c.TokenFile = short
	_, err := c.token()
	assert.ErrorContains(t, err, "at least 16")
}

func TestQueueAPI(t *testing.T) {
	f := start(t, nil)
	id, err := f.spool.Put(&spool.Entry{Envelope: spool.Envelope{MailFrom: "a@x.test", RcptTo: []string{"b@y.test"}},
		Message: []byte("Subject: hi\r\nFrom: a@x.test\r\n\r\nsecret body\r\n")}, false)
	require.NoError(t, err)

	var list QueueList
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/queue", "", &list))
	require.Len(t, list.Items, 1)
	assert.Equal(t, QueueItem{ID: id, State: "queued", From: "a@x.test", Recipients: 1, Pending: 1, Size: len("Subject: hi\r\nFrom: a@x.test\r\n\r\nsecret body\r\n"),
		ReceivedAt: list.Items[0].ReceivedAt, NextAttempt: list.Items[0].NextAttempt}, list.Items[0])

	var show map[string]any
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/queue/"+id, "", &show))
	assert.Equal(t, "Subject: hi\r\nFrom: a@x.test\r\n", show["header"])
	assert.NotContains(t, fmt.Sprint(show), "secret body", "the body is never shown")

	var op OpResult
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/queue/"+id+"/hold", "", &op))
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/queue", "", &list))
	assert.Equal(t, "held", list.Items[0].State)
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/queue/"+id, "", &show))
	assert.Equal(t, "held", show["state"])
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/queue/"+id+"/release", "", &op))
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/queue/"+id+"/retry", "", &op))
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/queue/flush", "", &op))
	assert.Equal(t, 1, op.Count)

	var e ErrorBody
	assert.Equal(t, http.StatusNotFound, f.do(t, "POST", "/api/v1/queue/"+id+"/explode", "", &e))
	assert.Equal(t, http.StatusNotFound, f.do(t, "POST", "/api/v1/queue/nosuch/hold", "", &e))
	assert.Equal(t, http.StatusNotFound, f.do(t, "GET", "/api/v1/queue/..%2f..%2fetc", "", &e))

	// A claimed entry cannot be held or deleted.
	_, err = f.spool.Claim(1)
	require.NoError(t, err)
	assert.Equal(t, http.StatusConflict, f.do(t, "POST", "/api/v1/queue/"+id+"/hold", "", &e))
	f.spool.Release(id)

	assert.Equal(t, http.StatusBadRequest, f.do(t, "DELETE", "/api/v1/queue/"+id, "", &e), "no confirmation")
	assert.Contains(t, e.Error, "confirm="+id)
	assert.Equal(t, http.StatusBadRequest, f.do(t, "DELETE", "/api/v1/queue/"+id+"?confirm=other", "", &e))
	require.Len(t, f.spool.List(), 1, "nothing deleted without the confirmation")
	require.Equal(t, http.StatusOK, f.do(t, "DELETE", "/api/v1/queue/"+id+"?confirm="+id, "", &op))
	assert.Empty(t, f.spool.List())
}

func TestPluginsStagesConfigAndTest(t *testing.T) {
	f := start(t, nil)
	var st []StageStatus
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/stages", "", &st))
	require.Len(t, st, len(registry.Stages()))
	assert.Equal(t, [][]string{{"adminprobe", "adminprobe/b"}}, st[1].Waves)

	var tr TestResult
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/test/adminprobe/b", "", &tr))
	assert.True(t, tr.OK)
	sick.Store(1)
	require.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/test/adminprobe/b", "", &tr))
	assert.Equal(t, "backend unreachable", tr.Error)
	var e ErrorBody
	assert.Equal(t, http.StatusNotFound, f.do(t, "POST", "/api/v1/test/nosuch", "", &e))

	var cfg map[string]any
	require.Equal(t, http.StatusOK, f.do(t, "GET", "/api/v1/config", "", &cfg))
	assert.Contains(t, cfg, "server")

	resp, err := f.c.Get(f.base + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "elemta_build_info")
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	f := start(t, func(c *Config) { c.Listen = "unix:" + sock })
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://admin/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// A second server on the live socket is refused rather than taking it.
	s2, err := New(f.srv.cfg, f.srv.deps)
	require.NoError(t, err)
	assert.ErrorContains(t, s2.Start(), "another process serves this socket")
}

// TestReloadRoute: POST /api/v1/reload answers 200 with the report when the
// new config serves, 422 with the error while the old one serves on, and
// 404 on a server that cannot reload.
func TestReloadRoute(t *testing.T) {
	f := start(t, nil)
	var got map[string]any
	assert.Equal(t, http.StatusNotFound, f.do(t, "POST", "/api/v1/reload", "", &got))

	fail := true
	f.srv.deps.Reload = func(context.Context) (any, error) {
		if fail {
			return map[string]any{"file": "e.toml"}, errors.New("e.toml:3:1: unknown key \"bogus\"")
		}
		return map[string]any{"file": "e.toml", "plugins": []string{"spf"}}, nil
	}
	assert.Equal(t, http.StatusUnprocessableEntity, f.do(t, "POST", "/api/v1/reload", "", &got))
	assert.Equal(t, "e.toml:3:1: unknown key \"bogus\"", got["error"])
	fail = false
	got = nil
	assert.Equal(t, http.StatusOK, f.do(t, "POST", "/api/v1/reload", "", &got))
	assert.Equal(t, "e.toml", got["file"])
}
