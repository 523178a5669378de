package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// servetest is a test-only plugin: it refuses recipients starting with
// "refuse" and rejects messages carrying X-Test-Verdict: reject at DATA.
type testPlugin struct{}

func (testPlugin) HandleStage(_ context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	switch {
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(env.RcptTo[len(env.RcptTo)-1], "refuse"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.1.1", "No such user here (servetest)")}, nil
	case stage == registry.PostReception && pc.Message.Header.Get("X-Test-Verdict") == "reject":
		return &registry.Result{Verdict: registry.RejectVerdict(554, "5.7.1", "Rejected by servetest")}, nil
	case stage == registry.PreQueue:
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Servetest", Value: "seen"}}}, nil
	}
	return &registry.Result{}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, testPlugin]{
		Name:   "servetest",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreReception, registry.PostReception, registry.PreQueue, registry.PreDelivery, registry.PostDelivery},
		New:    func(struct{}, registry.Host) (testPlugin, error) { return testPlugin{}, nil },
	})
}

func TestMain(m *testing.M) {
	if os.Getenv("ELEMTA_SERVE_CHILD") == "1" {
		os.Exit(runChild())
	}
	if os.Getenv(dieAfterHandover) == "1" {
		os.Exit(failAfterHandover())
	}
	os.Exit(m.Run())
}

// child runs the server as a subprocess for the kill -9 test: config from
// the environment, its address written to $ELEMTA_ADDR_FILE.
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "mx.test"
	cfg.SpoolDir = os.Getenv("ELEMTA_SPOOL")
	cfg.MaildirRoot = os.Getenv("ELEMTA_MAIL")
	cfg.ShutdownTimeout = registry.Duration(5 * time.Second)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	plugins := []string{"servetest"}
	if v, ok := os.LookupEnv("ELEMTA_CHILD_PLUGINS"); ok {
		plugins = strings.Fields(v)
	}
	mgr, err := manager(plugins...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer mgr.Close()
	s, err := Start(ctx, cfg, mgr, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f := os.Getenv("ELEMTA_ADDR_FILE")
	if err := os.WriteFile(f+".tmp", []byte(s.Addr().String()), 0o600); err != nil || os.Rename(f+".tmp", f) != nil {
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func manager(plugins ...string) (*pluginhost.Manager, error) {
	pcfg, err := pluginhost.NewConfig(plugins...)
	if err != nil {
		return nil, err
	}
	mgr := pluginhost.NewManager(pcfg)
	return mgr, mgr.LoadPlugins(context.Background())
}

func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "mx.test"
	cfg.SpoolDir = filepath.Join(dir, "spool")
	cfg.MaildirRoot = filepath.Join(dir, "mail")
	cfg.MaxMessageSize = 1 << 20
	return cfg
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	return startWith(t, cfg, "servetest")
}

// maildir returns the messages in addr's new/ under root.
func maildir(t *testing.T, root, addr string) []string {
	t.Helper()
	box, err := mbox.Path(root, addr) // the delivery's rules
	require.NoError(t, err)
	dir := filepath.Join(box, "new")
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out = append(out, string(b))
	}
	return out
}

func waitMail(t *testing.T, root, addr string, n int) []string {
	t.Helper()
	var got []string
	require.Eventually(t, func() bool { got = maildir(t, root, addr); return len(got) >= n }, 10*time.Second, 5*time.Millisecond,
		"waiting for %d message(s) for %s", n, addr)
	return got
}

func TestConfigDecode(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		want    func(c *Config)
		wantErr string
	}{
		{"seconds", "shutdown_timeout = 30\nretry_base = 0.5", func(c *Config) {
			c.ShutdownTimeout = registry.Duration(30 * time.Second)
			c.RetryBase = registry.Duration(500 * time.Millisecond)
		}, ""},
		{"duration strings", `shutdown_timeout = "1m30s"` + "\nlisten = \"0.0.0.0:25\"\nmax_recipients = 500", func(c *Config) {
			c.ShutdownTimeout = registry.Duration(90 * time.Second)
			c.Listen = "0.0.0.0:25"
			c.MaxRecipients = 500
		}, ""},
		{"mail standards keys default on, off when set", "add_date_message_id = false\nrelay_downgrade_8bit = false", func(c *Config) {
			require.True(t, c.AddDateMessageID && c.RelayDowngrade8Bit, "defaults")
			c.AddDateMessageID, c.RelayDowngrade8Bit = false, false
		}, ""},
		{"reload and upgrade keys", "pid_file = \"/run/elemta.pid\"\nupgrade_timeout = \"45s\"", func(c *Config) {
			require.Equal(t, "var/spool/elemta.pid", c.PIDPath(), "default under spool_dir")
			c.PIDFile, c.UpgradeTimeout = "/run/elemta.pid", registry.Duration(45*time.Second)
			require.Equal(t, "/run/elemta.pid", c.PIDPath())
		}, ""},
		{"deliver_at_reception defaults on, off when set", "deliver_at_reception = false", func(c *Config) {
			require.True(t, c.DeliverAtReception, "default")
			c.DeliverAtReception = false
		}, ""},
		{"deliver_at_reception is a boolean", `deliver_at_reception = "yes"`, nil, "DeliverAtReception of type bool"},
		{"unknown key", "listen_addr = \"x\"", nil, "listen_addr"},
		{"bad duration", `shutdown_timeout = "soon"`, nil, "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc struct {
				Server Config `toml:"server"`
			}
			doc.Server = DefaultConfig()
			err := toml.NewDecoder(strings.NewReader("[server]\n" + tt.toml)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(&doc)
			if tt.wantErr != "" {
				require.Error(t, err)
				var sm *toml.StrictMissingError
				if errorsAs(err, &sm) {
					err = fmt.Errorf("%s", sm.String())
				}
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := DefaultConfig()
			tt.want(&want)
			assert.Equal(t, want, doc.Server)
		})
	}
}

func errorsAs(err error, target **toml.StrictMissingError) bool {
	sm, ok := err.(*toml.StrictMissingError) //nolint:errorlint // go-toml returns it unwrapped
	if ok {
		*target = sm
	}
	return ok
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(c *Config)
		wantErr []string
	}{
		{"default is valid", func(*Config) {}, nil},
		{"everything wrong", func(c *Config) {
			c.Listen = "nope"
			c.SpoolDir = ""
			c.MaildirRoot = ""
			c.TLSCert = "cert.pem"
			c.MaxRecipients = -1
			c.Relay = "smarthost"
		}, []string{"relay \"smarthost\"", "listen \"nope\"", "spool_dir is required", "maildir_root is required", "tls_cert and tls_key go together", "max_recipients must not be negative"}},
		{"public listener needs local_domains", func(c *Config) { c.Listen = "0.0.0.0:25" }, []string{"local_domains is required when listen (\"0.0.0.0:25\")"}},
		{"public listener with local_domains", func(c *Config) { c.Listen = ":25"; c.LocalDomains = []string{"example.org"} }, nil},
		{"local_domains in UTF-8", func(c *Config) { c.LocalDomains = []string{"bücher.example", "例え.テスト"} }, nil},
		{"local_domains, no IDN", func(c *Config) { c.LocalDomains = []string{"a\u200db.example"} },
			[]string{`local_domains: "a\u200db.example" is not a valid internationalized domain name`}},
		{"public submission-only relay", func(c *Config) { c.Listen = "[2001:db8::1]:587"; c.Relay = "smarthost:25" }, nil},
		{"localhost listener", func(c *Config) { c.Listen = "localhost:2525" }, nil},
		{"memory limits", func(c *Config) { c.MaxHeaderSize = 0; c.MaxBytesInFlight = -1 },
			[]string{"max_header_size must be positive", "max_bytes_in_flight must not be negative"}},
		{"budget below the largest message", func(c *Config) { c.MaxBytesInFlight = c.MaxMessageSize - 1 },
			[]string{"max_bytes_in_flight (52428799) must be at least max_message_size (52428800"}},
		{"budget with no message size limit", func(c *Config) { c.MaxMessageSize = 0 }, []string{"must be at least max_message_size (0"}},
		{"budget exactly the largest message", func(c *Config) { c.MaxBytesInFlight = c.MaxMessageSize }, nil},
		{"no budget", func(c *Config) { c.MaxBytesInFlight = 0; c.MaxMessageSize = 0 }, nil},
		{"IPv6 loopback listener", func(c *Config) { c.Listen = "[::1]:2525" }, nil},
		{"upgrade and shutdown timeouts at zero", func(c *Config) { c.UpgradeTimeout = 0; c.ShutdownTimeout = 0 },
			[]string{"upgrade_timeout must be positive (got 0s)", "shutdown_timeout must be positive (got 0s)"}},
		{"upgrade and shutdown timeouts at their smallest", func(c *Config) {
			c.UpgradeTimeout, c.ShutdownTimeout = registry.Duration(time.Nanosecond), registry.Duration(time.Nanosecond)
		}, nil},
		{"bad local domains", func(c *Config) { c.LocalDomains = []string{"", "a@example.org", ".example.org", "ex ample.org"} },
			[]string{`local_domains: "" is not`, `"a@example.org" is not`, `".example.org" is not`, `"ex ample.org" is not`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.wantErr {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestEndToEndNetSMTP(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg)
	addr := s.Addr().String()

	msg := "From: a@example.org\r\nTo: b@example.net\r\nSubject: net/smtp\r\nMessage-ID: <netsmtp-1@example.org>\r\n\r\nHello from net/smtp.\r\n"
	require.NoError(t, smtp.SendMail(addr, nil, "a@example.org", []string{"b@example.net", "c@example.net"}, []byte(msg)))
	for _, rcpt := range []string{"b@example.net", "c@example.net"} {
		got := waitMail(t, cfg.MaildirRoot, rcpt, 1)
		require.Len(t, got, 1)
		assert.Contains(t, got[0], "X-Servetest: seen\r\n")
		assert.Contains(t, headerfold.Unfold(got[0]), "Received: from localhost ([127.0.0.1]) by mx.test (Elemta) with ESMTP id ")
		assert.True(t, strings.HasSuffix(got[0], msg), "the message follows the added fields unchanged")
	}

	tests := []struct {
		name     string
		rcpts    []string
		body     string
		wantCode int
		wantText string
	}{
		{"reject at DATA", []string{"b@example.net"}, "X-Test-Verdict: reject\r\n\r\nx\r\n", 554, "5.7.1 Rejected by servetest"},
		{"all recipients refused", []string{"refuse@example.net"}, "Subject: x\r\n\r\nx\r\n", 550, "5.1.1 No such user here (servetest)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := smtp.SendMail(addr, nil, "a@example.org", tt.rcpts, []byte(tt.body))
			var te *textproto.Error
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tt.wantCode, te.Code)
			assert.Equal(t, tt.wantText, te.Msg)
		})
	}

	// One recipient refused, the other kept (net/smtp stops at the first
	// refusal, so talk to the server directly).
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, c.Mail("a@example.org"))
	require.NoError(t, c.Rcpt("keep@example.net"))
	err = c.Rcpt("refuse-me@example.net")
	var te *textproto.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 550, te.Code)
	w, err := c.Data()
	require.NoError(t, err)
	_, err = io.WriteString(w, "Subject: partial\r\nMessage-ID: <partial@example.org>\r\n\r\nx\r\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())
	assert.Len(t, waitMail(t, cfg.MaildirRoot, "keep@example.net", 1), 1)
	assert.Empty(t, maildir(t, cfg.MaildirRoot, "refuse-me@example.net"))
	assert.Empty(t, maildir(t, cfg.MaildirRoot, "refuse@example.net"))
}

func TestEndToEndSwaks(t *testing.T) {
	swaks := testenv.RequireTool(t, "swaks")
	cfg := testConfig(t)
	s := startServer(t, cfg)
	host, port, err := net.SplitHostPort(s.Addr().String())
	require.NoError(t, err)
	tests := []struct {
		name     string
		args     []string
		wantExit int
		wantOut  []string
		mailbox  string // gets the message when set
		header   string
	}{
		{"clean", []string{"--to", "b@example.net", "--header", "Subject: swaks clean", "--header", "Message-Id: <swaks-1@example.org>"},
			0, []string{"250 2.0.0 OK queued as "}, "b@example.net", "Message-Id: <swaks-1@example.org>"},
		{"reject at DATA", []string{"--to", "b@example.net", "--header", "X-Test-Verdict: reject"},
			26, []string{"554 5.7.1 Rejected by servetest"}, "", ""},
		{"refused recipient", []string{"--to", "refuse@example.net"},
			24, []string{"550 5.1.1 No such user here (servetest)"}, "", ""},
		{"one of two recipients refused", []string{"--to", "refuse@example.net,two@example.net", "--header", "Subject: swaks partial"},
			0, []string{"550 5.1.1", "250 2.0.0 OK queued as "}, "two@example.net", "Subject: swaks partial"},
		{"over the size limit", []string{"--to", "b@example.net", "--body", bigBody(t)},
			26, []string{"552 5.3.4 Maximum message size exceeded"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"--server", host, "--port", port, "--from", "a@example.org", "--helo", "swaks.test", "--timeout", "20"}, tt.args...)
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, swaks, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // exec returns it unwrapped
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantExit, code, out.String())
			for _, w := range tt.wantOut {
				assert.Contains(t, out.String(), w)
			}
			if tt.mailbox != "" {
				got := waitMail(t, cfg.MaildirRoot, tt.mailbox, 1)
				assert.Contains(t, got[0], tt.header)
				assert.Contains(t, got[0], "Received: from swaks.test ([127.0.0.1])")
			}
		})
	}
	assert.Empty(t, maildir(t, cfg.MaildirRoot, "refuse@example.net"))
}

// bigBody writes a body over the test's 1 MiB limit to a file for swaks.
func bigBody(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "big.txt")
	require.NoError(t, os.WriteFile(f, bytes.Repeat([]byte(strings.Repeat("z", 900)+"\r\n"), 1300), 0o600))
	return f
}

func TestGracefulShutdown(t *testing.T) {
	tests := []struct {
		name       string
		finish     bool // the client completes its message during shutdown
		wantErr    bool
		wantQueued int
	}{
		{"session in flight finishes", true, false, 1},
		{"session past the deadline is cut", false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			mgr, err := manager("servetest")
			require.NoError(t, err)
			defer mgr.Close()
			s, err := Start(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			c, err := textproto.Dial("tcp", s.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			_, _, err = c.ReadResponse(220)
			require.NoError(t, err)
			for _, cmd := range []string{"EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>"} {
				require.NoError(t, c.PrintfLine("%s", cmd))
				_, _, err = c.ReadResponse(250)
				require.NoError(t, err)
			}
			require.NoError(t, c.PrintfLine("DATA"))
			_, _, err = c.ReadResponse(354)
			require.NoError(t, err)

			timeout := 200 * time.Millisecond
			if tt.finish {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			// New connections are refused once shutdown has begun.
			require.Eventually(t, func() bool {
				nc, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					return true
				}
				nc.Close()
				return false
			}, 5*time.Second, 5*time.Millisecond)
			if tt.finish {
				require.NoError(t, c.PrintfLine("Subject: late\r\n\r\nfinished during shutdown\r\n."))
				_, msg, err := c.ReadResponse(250)
				require.NoError(t, err)
				assert.Contains(t, msg, "queued as")
				require.NoError(t, c.PrintfLine("QUIT"))
				_, _, _ = c.ReadResponse(221)
			}
			err = <-done
			if tt.wantErr {
				require.Error(t, err)
				_, _, rerr := c.ReadResponse(250)
				assert.Error(t, rerr, "the connection was closed")
			} else {
				require.NoError(t, err)
			}
			// What was acknowledged is in the spool or delivered.
			mgr2, err := manager()
			require.NoError(t, err)
			cfg2 := cfg
			s2, err := Start(context.Background(), cfg2, mgr2, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			defer func() { assert.NoError(t, s2.Shutdown(context.Background())) }()
			if tt.wantQueued > 0 {
				waitMail(t, cfg.MaildirRoot, "b@example.net", tt.wantQueued)
			} else {
				assert.Empty(t, maildir(t, cfg.MaildirRoot, "b@example.net"))
			}
		})
	}
}

// TestLocalDomains: with local_domains set, a recipient elsewhere is
// refused at RCPT with 550 5.7.1 Relaying denied and nothing is delivered
// for it; with a relay configured, an authenticated session may send there
// and the message reaches the smarthost (a second server). Without
// local_domains on a loopback listener every domain is local.
func TestLocalDomains(t *testing.T) {
	smarthostCfg := testConfig(t) // loopback, no local_domains: accepts every domain
	smarthost := startServer(t, smarthostCfg)

	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	authFile := filepath.Join(t.TempDir(), "users")
	require.NoError(t, os.WriteFile(authFile, []byte("alice:"+string(hash)+"\n"), 0o600))

	cfg := testConfig(t)
	cfg.LocalDomains = []string{"example.net"}
	cfg.Relay = smarthost.Addr().String()
	cfg.AuthFile = authFile
	cfg.AllowPlaintextAuth = true
	s := startServer(t, cfg)

	noRelayCfg := testConfig(t)
	noRelayCfg.LocalDomains = []string{"example.net"}
	noRelayCfg.AuthFile = authFile
	noRelayCfg.AllowPlaintextAuth = true
	noRelay := startServer(t, noRelayCfg)

	msg := func(id string) []byte {
		return []byte("From: alice@example.net\r\nSubject: relay\r\nMessage-ID: <" + id + "@example.net>\r\n\r\nx\r\n")
	}
	alice := smtp.PlainAuth("", "alice", "s3cret", "127.0.0.1")
	denied := func(t *testing.T, err error) {
		t.Helper()
		var te *textproto.Error
		require.ErrorAs(t, err, &te)
		assert.Equal(t, 550, te.Code)
		assert.Equal(t, "5.7.1 Relaying denied", te.Msg)
	}

	t.Run("unauthenticated to another domain", func(t *testing.T) {
		denied(t, smtp.SendMail(s.Addr().String(), nil, "x@example.org", []string{"bob@elsewhere.test"}, msg("anon")))
	})
	t.Run("authenticated without a relay", func(t *testing.T) {
		denied(t, smtp.SendMail(noRelay.Addr().String(), alice, "alice@example.net", []string{"bob@elsewhere.test"}, msg("norelay")))
	})
	t.Run("authenticated with a relay", func(t *testing.T) {
		require.NoError(t, smtp.SendMail(s.Addr().String(), alice, "alice@example.net", []string{"bob@elsewhere.test"}, msg("relayed")))
		got := waitMail(t, smarthostCfg.MaildirRoot, "bob@elsewhere.test", 1)
		assert.Contains(t, got[0], "<relayed@example.net>")
	})
	t.Run("local domain from anyone", func(t *testing.T) {
		require.NoError(t, smtp.SendMail(noRelay.Addr().String(), nil, "x@example.org", []string{"bob@EXAMPLE.net", "carol@example.net."}, msg("local")))
		for _, rcpt := range []string{"bob@example.net", "carol@example.net"} {
			got := waitMail(t, noRelayCfg.MaildirRoot, rcpt, 1)
			assert.Contains(t, got[0], "<local@example.net>")
		}
	})
	t.Run("with a relay, local domains still go to the Maildirs", func(t *testing.T) {
		require.NoError(t, smtp.SendMail(s.Addr().String(), alice, "alice@example.net", []string{"dave@example.net", "erin@elsewhere.test"}, msg("split")))
		got := waitMail(t, cfg.MaildirRoot, "dave@example.net", 1)
		assert.Contains(t, got[0], "<split@example.net>")
		got = waitMail(t, smarthostCfg.MaildirRoot, "erin@elsewhere.test", 1)
		assert.Contains(t, got[0], "<split@example.net>")
		assert.Empty(t, maildir(t, smarthostCfg.MaildirRoot, "dave@example.net"), "a local recipient is not relayed")
	})
	t.Run("loopback listener without local_domains", func(t *testing.T) {
		require.NoError(t, smtp.SendMail(smarthost.Addr().String(), nil, "x@example.org", []string{"carol@anywhere.test"}, msg("any")))
		waitMail(t, smarthostCfg.MaildirRoot, "carol@anywhere.test", 1)
	})
	assert.Empty(t, maildir(t, noRelayCfg.MaildirRoot, "bob@elsewhere.test"))
	assert.Empty(t, maildir(t, cfg.MaildirRoot, "bob@elsewhere.test"), "relayed, not delivered locally")
}
