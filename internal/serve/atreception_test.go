package serve

import (
	"context"
	"fmt"
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

	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/registry"
)

// receptiontest is a test-only plugin with no delivery stage: it adds a
// field at pre-queue and quarantines a message carrying
// X-Test-Verdict: quarantine.
type receptionPlugin struct{}

func (receptionPlugin) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if pc.Message.Header.Get("X-Test-Verdict") == "quarantine" {
		return &registry.Result{Verdict: registry.QuarantineVerdict("held (receptiontest)")}, nil
	}
	return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Reception", Value: "seen"}}}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, receptionPlugin]{
		Name:   "receptiontest",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreQueue},
		New:    func(struct{}, registry.Host) (receptionPlugin, error) { return receptionPlugin{}, nil },
	})
}

// startWith starts a server on cfg with the plugins given.
func startWith(t *testing.T, cfg Config, plugins ...string) *Server {
	t.Helper()
	mgr, err := manager(plugins...)
	require.NoError(t, err)
	s, err := Start(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
		mgr.Close()
	})
	return s
}

// sendTo sends one message to rcpts; nil means 250 at the end of DATA.
func sendTo(addr, msgID, extra string, rcpts ...string) error {
	msg := fmt.Sprintf("From: a@example.org\r\nSubject: at reception\r\nMessage-ID: %s\r\n%s\r\nBody.\r\n", msgID, extra)
	return smtp.SendMail(addr, nil, "a@example.org", rcpts, []byte(msg))
}

// queued is the number of entries in the spool's queue/ on disk.
func queued(t *testing.T, s *Server) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(s.cfg.SpoolDir, "queue", "*.json"))
	require.NoError(t, err)
	return len(m)
}

// TestDeliverAtReception: which messages are written into the Maildirs
// before the 250 with no spool entry, and which still go through the
// spool; either way each recipient gets one copy.
func TestDeliverAtReception(t *testing.T) {
	rcpts := []string{"u1@example.net", "u2@example.net"}
	tests := []struct {
		name    string
		cfg     func(c *Config)
		plugins []string
		extra   string
		atOnce  bool // delivered at reception
	}{
		{name: "local recipients, no delivery-stage plugin", plugins: []string{"receptiontest"}, atOnce: true},
		{name: "no plugin at all", atOnce: true},
		{name: "deliver_at_reception = false", cfg: func(c *Config) { c.DeliverAtReception = false }, plugins: []string{"receptiontest"}},
		{name: "a pre-delivery and post-delivery plugin", plugins: []string{"receptiontest", "servetest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := startWith(t, cfg, tt.plugins...)
			require.NoError(t, sendTo(s.Addr().String(), "<m1@example.org>", tt.extra, rcpts...))
			if tt.atOnce {
				// No waiting: the copies were durable before the 250.
				for _, r := range rcpts {
					m := maildir(t, cfg.MaildirRoot, r)
					require.Len(t, m, 1, r)
					assert.Contains(t, m[0], "Message-ID: <m1@example.org>")
					assert.Contains(t, m[0], "Received: from ")
				}
				assert.Zero(t, queued(t, s), "no spool entry")
				assert.Empty(t, s.Spool().List())
				d := s.DeliveryStats()
				assert.Equal(t, int64(1), d.AtReception)
				assert.Equal(t, int64(2), d.RcptDelivered)
				assert.Equal(t, int64(1), d.Completed)
			} else {
				for _, r := range rcpts {
					require.Len(t, waitMail(t, cfg.MaildirRoot, r, 1), 1, r)
				}
				require.Eventually(t, func() bool { return s.DeliveryStats().Completed == 1 }, 10*time.Second, time.Millisecond)
				assert.Zero(t, s.DeliveryStats().AtReception, "went through the spool")
			}
			if len(tt.plugins) > 0 && tt.plugins[0] == "receptiontest" {
				assert.Contains(t, maildir(t, cfg.MaildirRoot, rcpts[0])[0], "X-Reception: seen", "pre-queue's field")
			}
			assert.Equal(t, int64(1), s.SMTPStats().Accepted)
		})
	}
}

// TestDeliverAtReceptionQuarantine: a quarantined message is held in the
// spool, not delivered.
func TestDeliverAtReceptionQuarantine(t *testing.T) {
	cfg := testConfig(t)
	s := startWith(t, cfg, "receptiontest")
	require.NoError(t, sendTo(s.Addr().String(), "<q@example.org>", "X-Test-Verdict: quarantine\r\n", "u1@example.net"))
	q, err := s.Spool().Quarantined()
	require.NoError(t, err)
	assert.Len(t, q, 1)
	assert.Empty(t, maildir(t, cfg.MaildirRoot, "u1@example.net"))
	assert.Zero(t, s.DeliveryStats().AtReception)
	assert.Equal(t, int64(1), s.SMTPStats().Quarantined)
}

// TestDeliverAtReceptionRelay: a message with a recipient for the
// smarthost goes through the spool.
func TestDeliverAtReceptionRelay(t *testing.T) {
	smarthostCfg := testConfig(t)
	smarthost := startWith(t, smarthostCfg)
	cfg := testConfig(t) // loopback, no local_domains: everything is relayed
	cfg.Relay = smarthost.Addr().String()
	s := startWith(t, cfg, "receptiontest")
	require.NoError(t, sendTo(s.Addr().String(), "<relayed@example.org>", "", "x@remote.test"))
	got := waitMail(t, smarthostCfg.MaildirRoot, "x@remote.test", 1)
	assert.Contains(t, got[0], "X-Reception: seen")
	assert.Zero(t, s.DeliveryStats().AtReception, "the relaying server spooled it")
	require.Eventually(t, func() bool { return smarthost.DeliveryStats().AtReception == 1 }, 10*time.Second, time.Millisecond, "the smarthost delivered it at reception")
}

// TestDeliverAtReceptionReload: a reload that adds a pre-delivery plugin
// applies to the next message.
func TestDeliverAtReceptionReload(t *testing.T) {
	cfg := testConfig(t)
	s := startWith(t, cfg, "receptiontest")
	require.NoError(t, sendTo(s.Addr().String(), "<before@example.org>", "", "u1@example.net"))
	require.Equal(t, int64(1), s.DeliveryStats().AtReception)
	mgr, err := manager("receptiontest", "servetest")
	require.NoError(t, err)
	_, _, err = s.plugins.Swap(mgr) // what Reload does; closed by Shutdown
	require.NoError(t, err)
	require.NoError(t, sendTo(s.Addr().String(), "<after@example.org>", "", "u1@example.net"))
	got := waitMail(t, cfg.MaildirRoot, "u1@example.net", 2)
	require.Len(t, got, 2)
	assert.Equal(t, int64(1), s.DeliveryStats().AtReception, "the second went through the spool")
}

// TestDeliverAtReceptionFallback: a Maildir that cannot be written makes
// the message go to the spool for the recipients not delivered; once the
// Maildir is fixed the worker delivers them: each recipient exactly once,
// each counted delivered once.
func TestDeliverAtReceptionFallback(t *testing.T) {
	cfg := testConfig(t)
	cfg.RetryBase, cfg.RetryMax = registry.Duration(time.Millisecond), registry.Duration(2*time.Millisecond)
	rcpts := []string{"u1@example.net", "u2@example.net", "u3@example.net"}
	// A file where u2's Maildir goes: not writable even by root.
	box, err := mbox.Path(cfg.MaildirRoot, "u2@example.net")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(box), 0o700))
	require.NoError(t, os.WriteFile(box, nil, 0o600))

	s := startWith(t, cfg, "receptiontest")
	require.NoError(t, sendTo(s.Addr().String(), "<fallback@example.org>", "", rcpts...))
	require.Len(t, maildir(t, cfg.MaildirRoot, "u1@example.net"), 1, "delivered before the 250")
	require.Eventually(t, func() bool {
		items := s.Spool().List()
		if len(items) != 1 {
			return false
		}
		e, err := s.Spool().Get(items[0].ID)
		return err == nil && e.Attempts >= 1 // the worker tried while the Maildir was broken
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, os.Remove(box))
	for _, r := range rcpts {

		got := waitMail(t, cfg.MaildirRoot, r, 1)
		require.Len(t, got, 1, r)
		assert.True(t, strings.Contains(got[0], "<fallback@example.org>") && strings.Contains(got[0], "X-Reception: seen"), got[0])
	}
	require.Eventually(t, func() bool { return len(s.Spool().List()) == 0 }, 10*time.Second, time.Millisecond)
	assert.Len(t, maildir(t, cfg.MaildirRoot, "u1@example.net"), 1, "u1 not written twice")
	d := s.DeliveryStats()
	assert.Zero(t, d.AtReception)
	assert.Equal(t, int64(3), d.RcptDelivered, "each recipient counted delivered once")
	assert.Equal(t, int64(1), s.SMTPStats().Accepted)
}
