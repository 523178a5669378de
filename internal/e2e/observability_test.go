package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/pkg/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetricsEndToEnd runs the `elemta serve` command with greylist,
// clamav (the real clamd) and contentfilter, sends a clean message, an
// EICAR one and a greylisted one, and reads the counters per plugin and
// stage from /metrics (which promtool accepts), from `elemta plugins
// metrics --server` and `elemta queue list --server`; clamav's lines go to
// its own log file.
func TestMetricsEndToEnd(t *testing.T) {
	clamd := testenv.Require(t, testenv.Clamd)
	promtool := testenv.RequireTool(t, "promtool")
	dir := t.TempDir()
	t.Chdir(dir) // the command keeps plugin state under ./var
	smtpAddr, adminAddr := freeAddr(t), freeAddr(t)
	logDir := filepath.Join(dir, "logs", "plugins")
	cfgFile := filepath.Join(dir, "elemta.toml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
[plugins]
plugins = ["greylist", "clamav", "contentfilter"]
[plugins.greylist]
delay = "5m"
exempt_networks = []
exempt_recipient_domains = ["example.test"]
store = "bolt"
[plugins.clamav]
servers = [%q]
timeout = "20s"
on_error = "tempfail"
[dns]
offline = true
[server]
listen = %q
hostname = %q
spool_dir = %q
maildir_root = %q
shutdown_timeout = 5
[admin]
listen = %q
ready_interval = "1s"
[log]
plugin_dir = %q
`, clamd, smtpAddr, hostname, filepath.Join(dir, "spool"), filepath.Join(dir, "mail"), adminAddr, logDir)), 0o644))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &lockedBuffer{}
	go func() {
		done <- cli.MainIO(ctx, []string{"-log-level", "info", "serve", "--config", cfgFile}, gen.Manifest, io.Discard, stderr)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-done:
			assert.Equal(t, cli.ExitAccept, code, stderr.String())
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop within 15s")
		}
	})
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "elemta serve started")
	}, 20*time.Second, 10*time.Millisecond)

	s := &server{t: t, addr: smtpAddr, mail: filepath.Join(dir, "mail"), dir: dir}
	const from = "alice@example.test"
	require.NoError(t, s.send("client.example.test", nil, from, []string{"clean@example.test"},
		message(from, "clean@example.test", "clean", "nothing to see here")))
	var te *textproto.Error
	err := s.send("client.example.test", nil, from, []string{"infected@example.test"}, message(from, "infected@example.test", "eicar", eicar))
	require.True(t, errors.As(err, &te), "EICAR: want an SMTP error, got %v", err)
	require.Equal(t, 554, te.Code)
	err = s.send("client.example.test", nil, from, []string{"someone@greylisted.test"}, message(from, "someone@greylisted.test", "grey", "later"))
	require.True(t, errors.As(err, &te), "greylisted: want an SMTP error, got %v", err)
	require.Equal(t, 451, te.Code)
	s.waitMail("clean@example.test", 1)

	scrape := get(t, "http://"+adminAddr+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(scrape))
	require.NoError(t, err)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := families[name]
		require.True(t, ok, "no metric %s in the scrape", name)
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				case m.Histogram != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		t.Fatalf("no series %s%v in the scrape", name, labels)
		return 0
	}
	type L = map[string]string
	post := func(plugin string) L { return L{"plugin": plugin, "stage": "post-reception"} }
	pre := func(plugin string) L { return L{"plugin": plugin, "stage": "pre-reception"} }
	with := func(l L, k, v string) L {
		out := L{k: v}
		for a, b := range l {
			out[a] = b
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		labels L
		want   float64
	}{
		{"elemta_plugin_calls_total", post("clamav"), 2},
		{"elemta_plugin_verdicts_total", with(post("clamav"), "action", "reject"), 1},
		{"elemta_plugin_verdicts_total", with(post("clamav"), "action", "accept"), 1},
		{"elemta_plugin_errors_total", post("clamav"), 0},
		{"elemta_plugin_duration_seconds", post("clamav"), 2},
		// contentfilter shares clamav's wave: it runs on the clean and the EICAR message.
		{"elemta_plugin_calls_total", post("contentfilter"), 2},
		{"elemta_plugin_verdicts_total", with(pre("greylist"), "action", "tempfail"), 1},
		{"elemta_stage_verdicts_total", L{"stage": "post-reception", "action": "reject"}, 1},
		{"elemta_stage_verdicts_total", L{"stage": "pre-reception", "action": "tempfail"}, 1},
		{"elemta_smtp_transactions_total", L{"outcome": "accepted"}, 1},
		{"elemta_smtp_transactions_total", L{"outcome": "rejected"}, 1},
		{"elemta_smtp_connections_total", nil, 3},
		{"elemta_delivery_recipients_total", L{"outcome": "delivered"}, 1},
		{"elemta_plugin_info", L{"plugin": "clamav", "name": "clamav"}, 1},
		{"elemta_build_info", nil, 1},
	} {
		assert.Equal(t, tc.want, value(tc.name, tc.labels), "%s%v", tc.name, tc.labels)
	}
	// The plugin's own metric: one infection, under clamd's signature name
	// (Eicar-Test-Signature, with a suffix for some databases).
	infections := 0.0
	for _, m := range families["elemta_plugin_clamav_infections_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		assert.Equal(t, "clamav", l["plugin"])
		assert.True(t, strings.HasPrefix(l["signature"], "Eicar-Test-Signature"), l["signature"])
		infections += m.GetCounter().GetValue()
	}
	assert.Equal(t, 1.0, infections, "elemta_plugin_clamav_infections_total")
	assert.GreaterOrEqual(t, value("elemta_plugin_calls_total", pre("greylist")), 4.0, "connect, HELO, MAIL and RCPT of each session")

	// promtool accepts the scrape.
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)

	// The CLI against the running server.
	var outBuf, errBuf bytes.Buffer
	require.Equal(t, cli.ExitAccept, cli.MainIO(context.Background(), []string{"plugins", "metrics", "--server", adminAddr, "--json"},
		gen.Manifest, &outBuf, &errBuf), errBuf.String())
	var ps []admin.PluginStatus
	require.NoError(t, json.Unmarshal(outBuf.Bytes(), &ps))
	byName := map[string]admin.PluginStatus{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	assert.Equal(t, int64(2), byName["clamav"].Calls)
	assert.Equal(t, int64(1), byName["clamav"].Rejects)
	outBuf.Reset()
	require.Equal(t, cli.ExitAccept, cli.MainIO(context.Background(), []string{"queue", "list", "--server", adminAddr},
		gen.Manifest, &outBuf, &errBuf), errBuf.String())
	assert.Contains(t, outBuf.String(), "entries")

	// /readyz runs every health check (clamav logs clamd's version).
	var ready admin.Readiness
	require.NoError(t, json.Unmarshal([]byte(get(t, "http://"+adminAddr+"/readyz")), &ready))
	assert.True(t, ready.Ready, "%+v", ready)
	assert.True(t, ready.Plugins["clamav"].OK, "%+v", ready.Plugins["clamav"])

	// clamav's file holds clamav's lines only.
	logText, err := os.ReadFile(filepath.Join(logDir, "clamav.log"))
	require.NoError(t, err)
	assert.Contains(t, string(logText), "plugin=clamav")
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		assert.Contains(t, line, "plugin=clamav", "a line of another plugin in clamav.log")
	}
	assert.NotContains(t, stderr.String(), "clamd answers", "clamav's lines go to its file, not the process's output")
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return string(b)
}

func matches(m *dto.Metric, labels map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range labels {
		if got[k] != v {
			return false
		}
	}
	return true
}
