package milter_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/config"
	elmilter "github.com/elemta/elemta/internal/milter"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// miltertest is a test-only plugin: its verdicts are driven by the
// envelope and by an X-Test-Verdict header.
type testPlugin struct{}

func (testPlugin) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	last := func() string { return env.RcptTo[len(env.RcptTo)-1] }
	switch {
	case stage == registry.PreReception && pc.Phase == registry.PhaseConnect && env.ClientIP.String() == "127.0.0.3":
		return &registry.Result{Verdict: registry.RejectVerdict(554, "5.7.1", "Client refused by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseHelo && env.HELO == "refused.test":
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "HELO refused by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail && strings.HasPrefix(env.MailFrom, "blocked@"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "Sender blocked by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail && strings.HasPrefix(env.MailFrom, "wrongclass@"):
		return &registry.Result{Verdict: registry.RejectVerdict(250, "2.0.0", "not a refusal code")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(last(), "refuse"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.1.1", "No such user here (test)")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(last(), "grey"):
		return &registry.Result{Verdict: registry.TempFailVerdict(451, "4.7.1", "Greylisted by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(last(), "hold"):
		return &registry.Result{Verdict: registry.QuarantineVerdict("recipient held (test)")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail:
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Test-Mail", Value: env.MailFrom}}}, nil
	case stage == registry.PostReception:
		switch pc.Message.Header.Get("X-Test-Verdict") {
		case "reject":
			return &registry.Result{Verdict: registry.RejectVerdict(554, "5.7.1", "Rejected by test plugin")}, nil
		case "tempfail":
			return &registry.Result{Verdict: registry.TempFailVerdict(451, "4.7.1", "Try later, test plugin")}, nil
		case "quarantine":
			return &registry.Result{Verdict: registry.QuarantineVerdict("held by test plugin")}, nil
		}
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Test-Post",
			Value: fmt.Sprintf("auth=%s tls=%v ip=%s helo=%s rcpts=%d session=%s", env.AuthUser, env.TLS, env.ClientIP, env.HELO, len(env.RcptTo), pc.Session.ID)}}}, nil
	case stage == registry.PreQueue:
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Test-Stamp", Value: "ok"}},
			RemoveHeaders: []registry.Removal{{Name: "X-Remove-Me", Index: -1}, {Name: "X-Second", Index: 1}}}, nil
	}
	return &registry.Result{}, nil
}

// boom is a test-only plugin that fails on demand at post-reception:
// X-Boom: panic panics, X-Boom: hang ignores its context until the test
// releases it (the executor abandons it at its timeout).
type boom struct{}

// released unblocks the hung boom calls; a test that hangs one makes a
// new channel before it starts its milter and closes it at its end.
var released chan struct{}

// hangUntilCleanup arms released for one test.
func hangUntilCleanup(t *testing.T) {
	ch := make(chan struct{})
	released = ch
	t.Cleanup(func() { close(ch) })
}

func (boom) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	switch pc.Message.Header.Get("X-Boom") {
	case "panic":
		panic("boom test plugin")
	case "hang":
		<-released
	}
	return &registry.Result{}, nil
}

// delivery runs after reception and after delivery.
type delivery struct{}

func (delivery) HandleStage(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, testPlugin]{
		Name: "miltertest", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreReception, registry.PostReception, registry.PreQueue},
		New:    func(struct{}, registry.Host) (testPlugin, error) { return testPlugin{}, nil },
	})
	registry.Register(registry.Module[struct{}, boom]{
		Name: "milterboom", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception},
		New:    func(struct{}, registry.Host) (boom, error) { return boom{}, nil },
	})
	registry.Register(registry.Module[struct{}, delivery]{
		Name: "milterdelivery", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception, registry.PostDelivery},
		New:    func(struct{}, registry.Host) (delivery, error) { return delivery{}, nil },
	})
}

// harness is a milter on 127.0.0.1:0 with the plugins of a config file.
type harness struct {
	t   *testing.T
	srv *elmilter.Server
	mgr *pluginhost.Manager
}

// startTOML parses a whole config file as the binary does, listens on
// 127.0.0.1:0 and stops at cleanup.
func startTOML(t *testing.T, doc string, edit func(*elmilter.Config)) *harness {
	t.Helper()
	cfg, err := config.Parse("milter-test.toml", []byte(doc))
	require.NoError(t, err)
	mc := cfg.Milter
	mc.Listen = "inet:127.0.0.1:0"
	mc.Hostname = "mx.milter.test"
	if edit != nil {
		edit(&mc)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(registry.Host{Logger: logger, Hostname: mc.Hostname, DataDir: t.TempDir()}))
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	srv, err := elmilter.Start(context.Background(), mc, mgr, logger)
	if err != nil {
		mgr.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := mgr.Close(); err != nil {
			t.Errorf("close plugins: %v", err)
		}
	})
	return &harness{t: t, srv: srv, mgr: mgr}
}

func startPlugins(t *testing.T, edit func(*elmilter.Config), plugins ...string) *harness {
	t.Helper()
	return startTOML(t, fmt.Sprintf("[plugins]\nplugins = [%q]\n", strings.Join(plugins, `", "`)), edit)
}

// mta is one milter connection as Postfix would open it.
type mta struct {
	t      *testing.T
	s      *milter.ClientSession
	macros *milter.MacroBag
}

func (h *harness) dial() *mta {
	h.t.Helper()
	c := milter.NewClient("tcp", h.srv.Addr().String(), milter.WithReadTimeout(10*time.Second))
	macros := milter.NewMacroBag()
	s, err := c.Session(macros)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { s.Close() })
	return &mta{t: h.t, s: s, macros: macros}
}

// open sends connect and HELO and requires both to continue.
func (m *mta) open(ip, helo string) {
	m.t.Helper()
	act, err := m.s.Conn("client.test", milter.FamilyInet, 25, ip)
	require.NoError(m.t, err)
	require.Equal(m.t, milter.ActionContinue, act.Type, act.SMTPReply)
	act, err = m.s.Helo(helo)
	require.NoError(m.t, err)
	require.Equal(m.t, milter.ActionContinue, act.Type, act.SMTPReply)
}

// message sends MAIL, the RCPTs (each must continue), the header fields
// and the body, and returns the end-of-message actions.
func (m *mta) message(from string, rcpts []string, fields [][2]string, body string) ([]milter.ModifyAction, *milter.Action) {
	m.t.Helper()
	act, err := m.s.Mail("<"+from+">", "")
	require.NoError(m.t, err)
	require.Equal(m.t, milter.ActionContinue, act.Type, act.SMTPReply)
	for _, r := range rcpts {
		act, err := m.s.Rcpt("<"+r+">", "")
		require.NoError(m.t, err)
		require.Equal(m.t, milter.ActionContinue, act.Type, "%s: %s", r, act.SMTPReply)
	}
	_, err = m.s.DataStart()
	require.NoError(m.t, err)
	for _, f := range fields {
		_, err := m.s.HeaderField(f[0], f[1], nil)
		require.NoError(m.t, err)
	}
	_, err = m.s.HeaderEnd()
	require.NoError(m.t, err)
	if body != "" {
		_, err = m.s.BodyChunk([]byte(body))
		require.NoError(m.t, err)
	}
	mods, act, err := m.s.End()
	require.NoError(m.t, err)
	return mods, act
}

// simple is a small message's header.
var simple = [][2]string{{"From", " <a@example.test>"}, {"To", " <b@example.test>"}, {"Subject", " hello"}}
