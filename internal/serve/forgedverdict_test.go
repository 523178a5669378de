package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/clamav"
	_ "github.com/elemta/elemta/plugins/rspamd"
	"github.com/elemta/elemta/registry"
)

// closedPort returns a loopback address nothing listens on: a daemon
// that is down.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestFailedScanDropsForgedVerdict: a sender's own X-Virus-Status or
// X-Spam field must never reach the mailbox looking like our verdict,
// whether the scan ran (the plugin replaces it) or failed with on_error =
// "accept" (the host removes the fields the plugin owns).
func TestFailedScanDropsForgedVerdict(t *testing.T) {
	forged := "X-Virus-Scanned: ClamAV on mx.test\r\nX-Virus-Status: Clean\r\n" +
		"X-Spam: No\r\nX-Spam-Score: -10.00 / 15.00\r\nX-Spam-Action: no action\r\n" +
		"X-Spamd-Result: default: False [-10.00 / 15.00]\r\n"
	tests := []struct {
		name    string
		plugins string // [plugins] and its tables
		gone    []string
		want    []string // fields the delivered message must carry once
	}{
		{
			name: "clamd down",
			plugins: fmt.Sprintf(`plugins = ["clamav"]
[plugins.clamav]
servers = [%q]
add_headers = true
on_error = "accept"
`, closedPort(t)),
			gone: []string{"X-Virus-Scanned:", "X-Virus-Status:"},
		},
		{
			name: "rspamd down",
			plugins: fmt.Sprintf(`plugins = ["rspamd"]
[plugins.rspamd]
url = "http://%s"
on_error = "accept"
remove_on_error = ["X-Spamd-Result"]
`, closedPort(t)),
			gone: []string{"X-Spam:", "X-Spam-Score:", "X-Spam-Action:", "X-Spamd-Result:"},
		},
		{
			name: "clamd up",
			plugins: fmt.Sprintf(`plugins = ["clamav"]
[plugins.clamav]
servers = [%q]
add_headers = true
cache_ttl = 0
`, testenv.Require(t, testenv.Clamd)),
			want: []string{"X-Virus-Status: Clean\r\n", "X-Virus-Scanned: ClamAV on mx.test\r\n"},
		},
		{
			name: "rspamd up, ham",
			plugins: fmt.Sprintf(`plugins = ["rspamd"]
[plugins.rspamd]
url = %q
`, testenv.Require(t, testenv.Rspamd)),
			gone: []string{"X-Spam:", "X-Spam-Score:", "X-Spam-Action:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "elemta.toml")
			require.NoError(t, os.WriteFile(file, []byte("[plugins]\n"+tt.plugins), 0o600))
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			pcfg, err := pluginhost.ParseConfig(file, data)
			require.NoError(t, err)
			mgr := pluginhost.NewManager(pcfg, pluginhost.WithHost(registry.Host{Hostname: "mx.test"}))
			require.NoError(t, mgr.LoadPlugins(context.Background()))
			t.Cleanup(func() { mgr.Close() })

			cfg := serve.DefaultConfig()
			cfg.Listen = "127.0.0.1:0"
			cfg.Hostname = "mx.test"
			cfg.SpoolDir = filepath.Join(dir, "spool")
			cfg.MaildirRoot = filepath.Join(dir, "mail")
			cfg.MaxMessageSize = 1 << 20
			s, err := serve.Start(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				assert.NoError(t, s.Shutdown(ctx))
			})

			msg := forged + "From: a@example.org\r\nTo: b@example.net\r\nSubject: forged verdict\r\nMessage-ID: <forged@example.org>\r\n\r\nHello.\r\n"
			require.NoError(t, smtp.SendMail(s.Addr().String(), nil, "a@example.org", []string{"b@example.net"}, []byte(msg)))
			got := waitDelivered(t, cfg.MaildirRoot, "b@example.net")
			head, _, _ := strings.Cut(got, "\r\n\r\n")
			head += "\r\n"
			for _, name := range tt.gone {
				assert.NotContains(t, head, "\r\n"+name, "the sender's %s survived a failed scan", name)
			}
			for _, f := range tt.want {
				assert.Equal(t, 1, strings.Count(head, f), "want our %q once in\n%s", f, head)
			}
		})
	}
}

func waitDelivered(t *testing.T, root, addr string) string {
	t.Helper()
	box, err := mbox.Path(root, addr)
	require.NoError(t, err)
	var got string
	require.Eventually(t, func() bool {
		ents, _ := os.ReadDir(filepath.Join(box, "new"))
		if len(ents) == 0 {
			return false
		}
		b, err := os.ReadFile(filepath.Join(box, "new", ents[0].Name()))
		got = string(b)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "waiting for the message to %s", addr)
	return got
}
