package delivery

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// deliverytest is a test-only plugin driven by an X-Test-Delivery header.
type testPlugin struct{}

var (
	outcomesMu sync.Mutex
	outcomes   []*Outcome
	// posted, when set, receives each attempt's outcome at post-delivery.
	posted chan post
)

// post is one attempt's outcome as the post-delivery stage saw it.
type post struct {
	id  string
	out *Outcome
}

func (testPlugin) HandleStage(_ context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if stage == registry.PostDelivery {
		if v, ok := pc.Get(OutcomeKey); ok {
			outcomesMu.Lock()
			outcomes = append(outcomes, v.(*Outcome))
			ch := posted
			outcomesMu.Unlock()
			if ch != nil {
				ch <- post{id: pc.Session.ID, out: v.(*Outcome)}
			}
		}
		return &registry.Result{}, nil
	}
	switch pc.Message.Header.Get("X-Test-Delivery") {
	case "reject":
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "Refused at delivery (test)")}, nil
	case "tempfail":
		return &registry.Result{Verdict: registry.TempFailVerdict(451, "4.7.1", "Not now (test)")}, nil
	case "quarantine":
		return &registry.Result{Verdict: registry.QuarantineVerdict("held (test)")}, nil
	}
	return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Delivered-By", Value: "test"}}}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, testPlugin]{
		Name:   "deliverytest",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreDelivery, registry.PostDelivery},
		New:    func(struct{}, registry.Host) (testPlugin, error) { return testPlugin{}, nil },
	})
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	clk   *clock
	spool *spool.Spool
	w     *Worker
	root  string
}

func setup(t testing.TB) *env {
	t.Helper()
	return setupWith(t, Config{}, "deliverytest")
}

// setupWith is setup with cfg (MaildirRoot, Hostname and Now are set) and
// the plugins given.
func setupWith(t testing.TB, cfg Config, plugins ...string) *env {
	t.Helper()
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	pcfg, err := pluginhost.NewConfig(plugins...)
	require.NoError(t, err)
	mgr := pluginhost.NewManager(pcfg)
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	t.Cleanup(func() { mgr.Close() })
	sp, _, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.WithClock(clk.now))
	require.NoError(t, err)
	t.Cleanup(func() { sp.Close() })
	root := filepath.Join(t.TempDir(), "mail")
	cfg.MaildirRoot, cfg.Hostname, cfg.Now = root, "mx.test", clk.now
	w := New(cfg, mgr, sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &env{clk: clk, spool: sp, w: w, root: root}
}

func (e *env) put(t *testing.T, from string, header string, rcpts ...string) string {
	t.Helper()
	id, err := e.spool.Put(&spool.Entry{
		Envelope: spool.Envelope{MailFrom: from, RcptTo: rcpts},
		Message:  []byte("From: <" + from + ">\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n" + header + "\r\nBody.\r\n"),
	}, false)
	require.NoError(t, err)
	return id
}

func (e *env) run(t *testing.T) int {
	t.Helper()
	n, err := e.w.RunOnce(context.Background())
	require.NoError(t, err)
	return n
}

// mails returns the contents of the files in addr's new/.
func (e *env) mails(t *testing.T, addr string) []string {
	t.Helper()
	box, err := mbox.Path(e.root, addr)
	require.NoError(t, err)
	ents, err := os.ReadDir(filepath.Join(box, "new"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(box, "new", ent.Name()))
		require.NoError(t, err)
		out = append(out, string(b))
	}
	return out
}

func TestDelivery(t *testing.T) {
	tests := []struct {
		name    string
		from    string
		header  string
		rcpts   []string
		prepare func(t *testing.T, e *env, id string)
		check   func(t *testing.T, e *env, id string)
		handled int // entries the first pass handles (default 1)
	}{
		{
			name: "clean, two recipients", from: "a@example.org", rcpts: []string{"b@example.net", "C@Example.NET"},
			check: func(t *testing.T, e *env, _ string) {
				for _, r := range []string{"b@example.net", "C@example.net"} {
					m := e.mails(t, r)
					require.Len(t, m, 1, r)
					assert.True(t, strings.HasPrefix(m[0], "X-Delivered-By: test\r\nFrom: <a@example.org>"), m[0])
				}
				assert.Empty(t, e.spool.List())
				assert.Empty(t, e.mails(t, "a@example.org"), "no bounce")
			},
		},
		{
			name: "bad mailbox bounces to the sender", from: "a@example.org", rcpts: []string{"..@example.net", "ok@example.net"},
			handled: 2, // the message, then its DSN
			check: func(t *testing.T, e *env, id string) {
				assert.Len(t, e.mails(t, "ok@example.net"), 1)
				dsn := e.mails(t, "a@example.org")
				require.Len(t, dsn, 1)
				for _, want := range []string{
					"Content-Type: multipart/report; report-type=delivery-status;",
					"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n",
					"Final-Recipient: rfc822; ..@example.net\r\nAction: failed\r\nStatus: 5.1.3\r\n",
					"Content-Type: text/rfc822-headers\r\n\r\nFrom: <a@example.org>\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n",
					"Auto-Submitted: auto-replied",
					"queue id " + id,
				} {
					assert.Contains(t, dsn[0], want)
				}
				assert.NotContains(t, dsn[0], "ok@example.net")
				assert.Empty(t, e.spool.List())
			},
		},
		{
			name: "null sender: failure without bounce", from: "", rcpts: []string{"..@example.net"},
			check: func(t *testing.T, e *env, _ string) {
				assert.Empty(t, e.spool.List())
				assert.Equal(t, 0, e.run(t))
			},
		},
		{
			name: "pre-delivery reject bounces with the plugin's reply", from: "a@example.org", header: "X-Test-Delivery: reject\r\n", rcpts: []string{"b@example.net"},
			handled: 2,
			check: func(t *testing.T, e *env, _ string) {
				assert.Empty(t, e.mails(t, "b@example.net"))
				dsn := e.mails(t, "a@example.org")
				require.Len(t, dsn, 1)
				assert.Contains(t, dsn[0], "Status: 5.7.1\r\nDiagnostic-Code: smtp; 550 5.7.1 Refused at delivery (test)\r\n")
			},
		},
		{
			name: "pre-delivery quarantine", from: "a@example.org", header: "X-Test-Delivery: quarantine\r\n", rcpts: []string{"b@example.net"},
			check: func(t *testing.T, e *env, id string) {
				assert.Empty(t, e.mails(t, "b@example.net"))
				assert.Empty(t, e.spool.List())
				q, err := e.spool.GetQuarantined(id)
				require.NoError(t, err)
				assert.Equal(t, "deliverytest: held (test)", q.Reason)
			},
		},
		{
			name: "tempfail retries with backoff, then expires into a bounce", from: "a@example.org", header: "X-Test-Delivery: tempfail\r\n", rcpts: []string{"b@example.net"},
			check: func(t *testing.T, e *env, id string) {
				ent, err := e.spool.Get(id)
				require.NoError(t, err)
				assert.Equal(t, 1, ent.Attempts)
				assert.Equal(t, e.clk.now().Add(time.Minute), ent.NextAttempt)
				assert.Equal(t, 0, e.run(t), "not due yet")
				e.clk.advance(time.Minute)
				assert.Equal(t, 1, e.run(t))
				ent, err = e.spool.Get(id)
				require.NoError(t, err)
				assert.Equal(t, 2, ent.Attempts)
				assert.Equal(t, e.clk.now().Add(2*time.Minute), ent.NextAttempt)
				e.clk.advance(5 * 24 * time.Hour)
				assert.Equal(t, 2, e.run(t), "expired into a bounce, which is delivered")
				dsn := e.mails(t, "a@example.org")
				require.Len(t, dsn, 1)
				assert.Contains(t, dsn[0], "Status: 5.4.7")
				assert.Empty(t, e.spool.List())
			},
		},
		{
			name: "maildir error is temporary; the retry delivers only what is missing", from: "a@example.org", rcpts: []string{"ok@example.net", "blocked@example.net"},
			prepare: func(t *testing.T, e *env, _ string) {
				require.NoError(t, os.MkdirAll(filepath.Join(e.root, "example.net"), 0o700))
				require.NoError(t, os.WriteFile(filepath.Join(e.root, "example.net", "blocked"), []byte("not a dir"), 0o600))
			},
			check: func(t *testing.T, e *env, id string) {
				assert.Len(t, e.mails(t, "ok@example.net"), 1)
				ent, err := e.spool.Get(id)
				require.NoError(t, err)
				assert.Equal(t, []string{"blocked@example.net"}, ent.Pending())
				assert.Contains(t, ent.LastError, "451 4.3.0 maildir")
				require.NoError(t, os.Remove(filepath.Join(e.root, "example.net", "blocked")))
				e.clk.advance(time.Minute)
				assert.Equal(t, 1, e.run(t))
				assert.Len(t, e.mails(t, "ok@example.net"), 1)
				assert.Len(t, e.mails(t, "blocked@example.net"), 1)
				assert.Empty(t, e.spool.List())
			},
		},
		{
			name: "a copy written before a crash is not written again", from: "a@example.org", rcpts: []string{"b@example.net"},
			prepare: func(t *testing.T, e *env, id string) {
				ent, err := e.spool.Get(id)
				require.NoError(t, err)
				_, err = e.w.deliverMaildir(ent, "b@example.net", 0, rawMessage(ent.Message), false)
				require.NoError(t, err)
			},
			check: func(t *testing.T, e *env, _ string) {
				m := e.mails(t, "b@example.net")
				require.Len(t, m, 1)
				assert.NotContains(t, m[0], "X-Delivered-By", "the first copy stays")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			id := e.put(t, tt.from, tt.header, tt.rcpts...)
			if tt.prepare != nil {
				tt.prepare(t, e, id)
			}
			if tt.handled == 0 {
				tt.handled = 1
			}
			assert.Equal(t, tt.handled, e.run(t))
			tt.check(t, e, id)
		})
	}
}

func TestPostDeliverySeesOutcome(t *testing.T) {
	e := setup(t)
	outcomesMu.Lock()
	outcomes = nil
	outcomesMu.Unlock()
	e.put(t, "", "", "ok@example.net", "..@example.net")
	e.run(t)
	outcomesMu.Lock()
	defer outcomesMu.Unlock()
	require.Len(t, outcomes, 1)
	assert.Equal(t, []string{"ok@example.net"}, outcomes[0].Delivered)
	require.Len(t, outcomes[0].Failed, 1)
	assert.Equal(t, "5.1.3", outcomes[0].Failed[0].Status)
}

func TestRunDeliversNewMailAndStops(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()
	for i := range 20 {
		e.put(t, "a@example.org", "", "b@example.net", "c"+string(rune('a'+i))+"@example.net")
	}
	require.Eventually(t, func() bool { return len(e.spool.List()) == 0 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Len(t, e.mails(t, "b@example.net"), 20)
}

func TestMailbox(t *testing.T) {
	tests := []struct {
		rcpt, want string
		perm       bool
	}{
		{"user@Example.ORG", "/r/example.org/user", false},
		{"user@example.org.", "/r/example.org/user", false},
		{"PostMaster@example.org", "/r/example.org/postmaster", false}, // RFC 5321 §4.5.1
		{"User@example.org", "/r/example.org/user", false},             // ASCII case folded (internal/mailbox)
		{"Jürgen@example.org", "/r/example.org/jürgen", false},
		{"a@.", "", true},
		{"a@...", "", true},
		{"first.last+tag@x.test", "/r/x.test/first.last+tag", false},
		{"../etc@x.test", "", true},
		{"a/b@x.test", "", true},
		{"a@..", "", true},
		{".hidden@x.test", "", true},
		{"noat", "", true},
		{"@x.test", "", true},
		{"sp ace@x.test", "", true},
		// A name longer than a directory entry may be (NAME_MAX, 255) can
		// never be created: permanent, not retried for max_queue_age.
		{strings.Repeat("l", 256) + "@x.test", "", true},
		{"u@" + strings.Repeat("d", 252) + ".org", "", true},
		{strings.Repeat("l", 255) + "@x.test", "/r/x.test/" + strings.Repeat("l", 255), false},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt[:min(len(tt.rcpt), 40)], func(t *testing.T) {
			got, err := mailbox("/r", tt.rcpt)
			if tt.perm {
				var pe *permError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "5.1.3", pe.status)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestDSNReplyOnOneLine: a failure's reply text comes from plugins and
// smarthosts and may hold CR or LF. In the DSN it must stay one CRLF line:
// a bare LF is refused everywhere else, and a line of its own could end the
// MIME part early.
func TestDSNReplyOnOneLine(t *testing.T) {
	e := &spool.Entry{ID: "q1", ReceivedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Envelope: spool.Envelope{MailFrom: "a@example.org", RcptTo: []string{"b@example.net"}},
		Message:  []byte("Subject: hi\r\n\r\nbody\r\n")}
	tests := []struct{ name, reply string }{
		{"LF", "550 5.7.1 first\n--=_elemta_dsn_q1--\nsecond"},
		{"CRLF", "550 5.7.1 first\r\n--=_elemta_dsn_q1--\r\nsecond"},
		{"CR", "550 5.7.1 first\r--=_elemta_dsn_q1--\rsecond"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := string(BuildDSN("mx.test", e, []Failure{{Rcpt: "b@example.net", Status: "5.7.1", Reply: tt.reply}}, e.ReceivedAt))
			assert.Equal(t, strings.Count(dsn, "\n"), strings.Count(dsn, "\r\n"), "bare LF")
			assert.Equal(t, strings.Count(dsn, "\r"), strings.Count(dsn, "\r\n"), "bare CR")
			assert.Equal(t, 1, strings.Count(dsn, "\r\n--=_elemta_dsn_q1--\r\n"), "one closing boundary")
		})
	}
}
