package smtpd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// smtpdtest is a test-only plugin: its verdicts are driven by the envelope
// and by an X-Test-Verdict header.
type testPlugin struct{}

func (testPlugin) HandleStage(_ context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	switch {
	case stage == registry.PreReception && pc.Phase == registry.PhaseConnect && env.ClientIP.String() == "127.0.0.3":
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "Client refused by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail && strings.HasPrefix(env.MailFrom, "trickle@"):
		select {
		case mailsRun <- env.MailFrom:
		default:
		}
	case stage == registry.PreReception && pc.Phase == registry.PhaseHelo && env.HELO == "refused.test":
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "HELO refused by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail && strings.HasPrefix(env.MailFrom, "blocked@"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "Sender blocked by test plugin")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(env.RcptTo[len(env.RcptTo)-1], "refuse"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.1.1", "No such user here (test)")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(env.RcptTo[len(env.RcptTo)-1], "hold"):
		return &registry.Result{Verdict: registry.QuarantineVerdict("recipient held (test)")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail:
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Test-Mail", Value: env.MailFrom}}}, nil
	case stage == registry.PostReception:
		switch pc.Message.Header.Get("X-Test-Verdict") {
		case "reject":
			return &registry.Result{Verdict: registry.RejectVerdict(554, "5.7.1", "Rejected by test plugin")}, nil
		case "tempfail":
			return &registry.Result{Verdict: registry.TempFailVerdict(451, "4.7.1", "Greylisted by test plugin")}, nil
		case "quarantine":
			return &registry.Result{Verdict: registry.QuarantineVerdict("held by test plugin")}, nil
		}
	case stage == registry.PreQueue:
		return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Test-Stamp", Value: "ok"}},
			RemoveHeaders: []registry.Removal{{Name: "X-Remove-Me", Index: -1}}}, nil
	}
	return &registry.Result{}, nil
}

// sessionsEnded receives the client address of every session whose end
// the test plugin was told of.
var sessionsEnded = make(chan string, 64)

// mailsRun receives every sender starting with "trickle@" that reached the
// MAIL phase: a command cut off by a timeout must never get there.
var mailsRun = make(chan string, 64)

func (testPlugin) EndSession(_ context.Context, pc *registry.ProcessingContext) error {
	select { // never block a session's end on a test that does not listen
	case sessionsEnded <- pc.Message.Envelope.ClientIP.String():
	default:
	}
	return nil
}

func init() {
	registry.Register(registry.Module[struct{}, testPlugin]{
		Name:   "smtpdtest",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreReception, registry.PostReception, registry.PreQueue},
		New:    func(struct{}, registry.Host) (testPlugin, error) { return testPlugin{}, nil },
	})
}

type harness struct {
	addr  string
	spool *spool.Spool
	srv   *Server
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	return startOn(t, cfg, nil)
}

// startOn starts a server on a loopback listener, wrapped by wrap if set.
func startOn(t *testing.T, cfg Config, wrap func(net.Listener) net.Listener) *harness {
	t.Helper()
	pcfg, err := pluginhost.NewConfig("smtpdtest")
	require.NoError(t, err)
	mgr := pluginhost.NewManager(pcfg)
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	sp, _, err := spool.Open(t.TempDir())
	require.NoError(t, err)
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	if cfg.LocalDomains == nil {
		cfg.AllDomainsLocal = true
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(cfg, mgr, sp, logger)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, <-done)
		sp.Close()
		mgr.Close()
	})
	return &harness{addr: addr, spool: sp, srv: srv}
}

// step is one command (or raw DATA payload when raw) and the reply code
// and text fragment it must get.
type step struct {
	send string
	raw  bool
	code int
	text string
}

func converse(t *testing.T, addr string, steps []step) {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	converseOn(t, c, steps)
}

// converseOn runs steps on a connection past its greeting.
func converseOn(t *testing.T, c *textproto.Conn, steps []step) {
	t.Helper()
	var err error
	for _, s := range steps {
		if s.raw {
			_, err = c.W.WriteString(s.send)
			require.NoError(t, err)
			require.NoError(t, c.W.Flush())
		} else {
			require.NoError(t, c.PrintfLine("%s", s.send))
		}
		code, msg, err := c.ReadResponse(0)
		require.Equal(t, s.code, code, "reply to %.60q: %d %s (%v)", s.send, code, msg, err)
		assert.Contains(t, msg, s.text, "reply to %.60q", s.send)
	}
}

func msg(extra string) string {
	return "From: a@example.org\r\nTo: b@example.net\r\nSubject: test\r\nMessage-ID: <1@example.org>\r\nX-Remove-Me: yes\r\n" + extra + "\r\nHello.\r\n.\r\n"
}

func hello(from string, rcpts ...string) []step {
	s := []step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<" + from + ">", code: 250}}
	for _, r := range rcpts {
		s = append(s, step{send: "RCPT TO:<" + r + ">", code: 250})
	}
	return s
}

func TestConversations(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 64 << 10, MaxRecipients: 100, MaxLineLength: 2000})
	data := step{send: "DATA", code: 354}
	tests := []struct {
		name       string
		steps      []step
		queued     int // entries in queue/ after
		quarantine int
		check      func(t *testing.T, e *spool.Entry)
	}{
		{
			name:   "clean",
			steps:  append(hello("a@example.org", "b@example.net"), data, step{send: msg(""), raw: true, code: 250, text: "queued as"}),
			queued: 1,
			check: func(t *testing.T, e *spool.Entry) {
				m := headerfold.Unfold(string(e.Message))
				assert.True(t, strings.HasPrefix(m, "X-Test-Mail: a@example.org\r\nX-Test-Stamp: ok\r\nReceived: from client.test ([127.0.0.1]) by mx.test (Elemta) with ESMTP id "), m)
				assert.NotContains(t, m, "X-Remove-Me")
				assert.True(t, strings.HasSuffix(m, "\r\n\r\nHello.\r\n"), "dot and CRLF of the terminator are not part of the message")
				assert.Equal(t, spool.Envelope{ClientIP: "127.0.0.1", HELO: "client.test", MailFrom: "a@example.org", RcptTo: []string{"b@example.net"}}, e.Envelope)
				assert.NotEmpty(t, e.Results)
			},
		},
		{
			name:  "reject at DATA carries the plugin's reply",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: msg("X-Test-Verdict: reject\r\n"), raw: true, code: 554, text: "5.7.1 Rejected by test plugin"}),
		},
		{
			name:  "tempfail at DATA",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: msg("X-Test-Verdict: tempfail\r\n"), raw: true, code: 451, text: "4.7.1 Greylisted by test plugin"}),
		},
		{
			name:       "quarantine is accepted into quarantine",
			steps:      append(hello("a@example.org", "b@example.net"), data, step{send: msg("X-Test-Verdict: quarantine\r\n"), raw: true, code: 250, text: "queued as"}),
			quarantine: 1,
		},
		{
			name:       "quarantine at RCPT holds the message",
			steps:      append(hello("a@example.org", "hold@example.net", "b@example.net"), data, step{send: msg(""), raw: true, code: 250, text: "queued as"}),
			quarantine: 1,
		},
		{
			name:   "the next transaction is not held",
			steps:  append(hello("a@example.org", "b@example.net"), data, step{send: msg(""), raw: true, code: 250, text: "queued as"}),
			queued: 1,
		},
		{
			name:  "sender refused at MAIL",
			steps: []step{{send: "EHLO c", code: 250}, {send: "MAIL FROM:<blocked@example.org>", code: 550, text: "5.7.1 Sender blocked by test plugin"}, {send: "RCPT TO:<b@example.net>", code: 503, text: "5.5.1 Bad sequence of commands: MAIL FROM first"}},
		},
		{
			name: "one recipient refused, the others kept",
			steps: append(hello("a@example.org", "one@example.net"),
				step{send: "RCPT TO:<refuse@example.net>", code: 550, text: "5.1.1 No such user here (test)"},
				step{send: "RCPT TO:<two@example.net>", code: 250},
				data, step{send: msg(""), raw: true, code: 250}),
			queued: 1,
			check: func(t *testing.T, e *spool.Entry) {
				assert.Equal(t, []string{"one@example.net", "two@example.net"}, e.Envelope.RcptTo)
				assert.NotContains(t, string(e.Message), "\tfor <", "several recipients: none is named in Received")
			},
		},
		{
			// A smarthost given the same RCPT twice may deliver two copies.
			name: "a repeated recipient is kept once",
			steps: append(hello("a@example.org", "b@example.net", "c@example.net", "b@example.net"),
				data, step{send: msg(""), raw: true, code: 250}),
			queued: 1,
			check: func(t *testing.T, e *spool.Entry) {
				assert.Equal(t, []string{"b@example.net", "c@example.net"}, e.Envelope.RcptTo)
			},
		},
		{
			name:  "bare LF",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "Subject: x\nbare: lf\r\n\r\nbody\r\n.\r\n", raw: true, code: 554, text: "5.6.0 Bare LF"}),
		},
		{
			name: "LF.LF does not end DATA (no smuggling)",
			steps: append(hello("a@example.org", "b@example.net"), data,
				step{send: "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@example.org>\nRCPT TO:<b@example.net>\nDATA\n\r\n.\r\n", raw: true, code: 554, text: "5.6.0 Bare LF"},
				step{send: "NOOP", code: 250}),
		},
		{
			name:  "bare CR",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "Subject: x\r\n\r\nbo\rdy\r\n.\r\n", raw: true, code: 554, text: "5.6.0 Bare LF or CR"}),
		},
		{
			name:  "NUL byte",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "Subject: x\r\n\r\nbo\x00dy\r\n.\r\n", raw: true, code: 554, text: "5.6.0 NUL"}),
		},
		{
			name:  "line over the limit",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "Subject: x\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n.\r\n", raw: true, code: 500, text: "5.5.6 Line too long"}),
		},
		{
			name:  "message over the size limit",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 80) + ".\r\n", raw: true, code: 552, text: "5.3.4"}),
		},
		{
			name:  "malformed header",
			steps: append(hello("a@example.org", "b@example.net"), data, step{send: "this is no header\r\n\r\nbody\r\n.\r\n", raw: true, code: 554, text: "Malformed message"}),
		},
		{
			name:  "recipient syntax",
			steps: append(hello("a@example.org"), step{send: "RCPT TO:<../../etc/passwd>", code: 501}, step{send: "RCPT TO:<a/../b@example.net>", code: 553}, step{send: "RCPT TO:<nodomain>", code: 501}),
		},
		{
			name:  "DATA without recipients",
			steps: append(hello("a@example.org"), step{send: "DATA", code: 503, text: "5.5.1 Bad sequence of commands: no valid recipients"}),
		},
		{
			name:  "DATA after every recipient was refused",
			steps: append(hello("a@example.org"), step{send: "RCPT TO:<a/../b@example.net>", code: 553}, step{send: "DATA", code: 503, text: "5.5.1 Bad sequence of commands: no valid recipients"}),
		},
		{
			name:  "DATA without MAIL",
			steps: []step{{send: "EHLO c", code: 250}, {send: "DATA", code: 503, text: "5.5.1 Bad sequence of commands: no valid recipients"}},
		},
		{
			name:  "BDAT without recipients",
			steps: append(hello("a@example.org"), step{send: "BDAT 3 LAST\r\nabc", raw: true, code: 503, text: "5.5.1 Bad sequence of commands: no valid recipients"}, step{send: "NOOP", code: 250}),
		},
		{
			name: "after a refused DATA the session goes on",
			steps: append(append(hello("a@example.org", "b@example.net"), data, step{send: msg("X-Test-Verdict: reject\r\n"), raw: true, code: 554}),
				step{send: "MAIL FROM:<a@example.org>", code: 250}, step{send: "RCPT TO:<c@example.net>", code: 250}, data,
				step{send: msg(""), raw: true, code: 250}),
			queued: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.spool.List())
			qBefore, err := h.spool.Quarantined()
			require.NoError(t, err)
			converse(t, h.addr, tt.steps)
			items := h.spool.List()
			require.Len(t, items, before+tt.queued)
			q, err := h.spool.Quarantined()
			require.NoError(t, err)
			assert.Len(t, q, len(qBefore)+tt.quarantine)
			if tt.check != nil && tt.queued > 0 {
				e, err := h.spool.Get(items[len(items)-1].ID)
				require.NoError(t, err)
				tt.check(t, e)
			}
			tmp, err := os.ReadDir(filepath.Join(h.spool.Root(), "tmp"))
			require.NoError(t, err)
			assert.Empty(t, tmp)
		})
	}
}

func TestTenThousandRecipients(t *testing.T) {
	h := start(t, Config{MaxRecipients: 100})
	c, err := textproto.Dial("tcp", h.addr)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	const n = 10000
	werr := make(chan error, 1)
	go func() { // pipelined: write everything while the replies are read
		var err error
		fmt.Fprintf(c.W, "EHLO c\r\nMAIL FROM:<a@example.org>\r\n")
		for i := range n {
			fmt.Fprintf(c.W, "RCPT TO:<r%d@example.net>\r\n", i)
		}
		fmt.Fprintf(c.W, "DATA\r\n")
		err = c.W.Flush()
		werr <- err
	}()
	codes := map[int]int{}
	for range n + 2 {
		code, _, err := c.ReadResponse(0)
		require.NoError(t, err)
		codes[code]++
	}
	require.NoError(t, <-werr)
	assert.Equal(t, map[int]int{250: 2 + 100, 452: n - 100}, codes)
	_, _, err = c.ReadResponse(354)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("Subject: many\r\n\r\nhi\r\n."))
	code, text, err := c.ReadResponse(250)
	require.NoError(t, err, "%d %s", code, text)
	items := h.spool.List()
	require.Len(t, items, 1)
	e, err := h.spool.Get(items[0].ID)
	require.NoError(t, err)
	assert.Len(t, e.Envelope.RcptTo, 100)
}

func TestDisconnectMidData(t *testing.T) {
	h := start(t, Config{})
	c, err := textproto.Dial("tcp", h.addr)
	require.NoError(t, err)
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	for _, s := range hello("a@example.org", "b@example.net") {
		require.NoError(t, c.PrintfLine("%s", s.send))
		_, _, err := c.ReadResponse(250)
		require.NoError(t, err)
	}
	require.NoError(t, c.PrintfLine("DATA"))
	_, _, err = c.ReadResponse(354)
	require.NoError(t, err)
	_, err = c.W.WriteString("Subject: cut\r\n\r\nhalf a mess")
	require.NoError(t, err)
	require.NoError(t, c.W.Flush())
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return h.srv.Stats().Aborted == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Empty(t, h.spool.List())
	assert.Equal(t, int64(0), h.srv.Stats().Accepted)
	// The server still serves.
	converse(t, h.addr, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354}, step{send: msg(""), raw: true, code: 250}))
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"}, DNSNames: []string{"mx.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func creds(t *testing.T) *Credentials {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	c, err := ParseCredentials("test", strings.NewReader("# users\nalice:"+string(hash)+"\n"))
	require.NoError(t, err)
	return c
}

func TestAuth(t *testing.T) {
	tlsCfg := selfSigned(t)
	tests := []struct {
		name      string
		plaintext bool // allow AUTH without TLS
		starttls  bool
		user      string
		pass      string
		wantErr   string // "" for success
	}{
		{"TLS, right password", false, true, "alice", "s3cret", ""},
		{"TLS, wrong password", false, true, "alice", "nope", "535"},
		{"TLS, unknown user", false, true, "bob", "s3cret", "535"},
		{"plaintext refused", false, false, "alice", "s3cret", "523"},
		{"plaintext allowed by config", true, false, "alice", "s3cret", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Config{TLS: tlsCfg, Credentials: creds(t), AllowPlaintextAuth: tt.plaintext})
			c, err := smtp.Dial(h.addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Hello("client.test"))
			if tt.starttls {
				require.NoError(t, c.StartTLS(&tls.Config{ServerName: "mx.test", InsecureSkipVerify: true})) //nolint:gosec // self-signed test cert
			}
			// net/smtp's PlainAuth sends only over TLS or to localhost; the
			// server's own rule is what is under test.
			err = c.Auth(smtp.PlainAuth("", tt.user, tt.pass, "127.0.0.1"))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Mail("alice@example.org"))
			require.NoError(t, c.Rcpt("b@example.net"))
			w, err := c.Data()
			require.NoError(t, err)
			_, err = io.WriteString(w, "Subject: submitted\r\n\r\nhi\r\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			require.NoError(t, c.Quit())
			items := h.spool.List()
			require.Len(t, items, 1)
			e, err := h.spool.Get(items[0].ID)
			require.NoError(t, err)
			assert.Equal(t, "alice", e.Envelope.AuthUser)
			assert.Equal(t, tt.starttls, e.Envelope.TLS)
			with := "ESMTPA"
			if tt.starttls {
				with = "ESMTPSA"
			}
			assert.Contains(t, headerfold.Unfold(string(e.Message)), "with "+with+" id "+items[0].ID)
		})
	}
}

func TestAuthLogin(t *testing.T) {
	h := start(t, Config{Credentials: creds(t), AllowPlaintextAuth: true})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name  string
		steps []step
	}{
		{"challenges", []step{{send: "EHLO c", code: 250, text: "AUTH PLAIN LOGIN"}, {send: "AUTH LOGIN", code: 334, text: b64("Username:")},
			{send: b64("alice"), code: 334, text: b64("Password:")}, {send: b64("s3cret"), code: 235}}},
		{"initial response", []step{{send: "EHLO c", code: 250}, {send: "AUTH LOGIN " + b64("alice"), code: 334, text: b64("Password:")},
			{send: b64("s3cret"), code: 235}, {send: "AUTH LOGIN", code: 503}}},
		{"wrong password", []step{{send: "EHLO c", code: 250}, {send: "AUTH LOGIN " + b64("alice"), code: 334},
			{send: b64("guess"), code: 535}}},
		{"cancelled", []step{{send: "EHLO c", code: 250}, {send: "AUTH LOGIN", code: 334}, {send: "*", code: 501}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { converse(t, h.addr, tt.steps) })
	}
}

func TestVerdictError(t *testing.T) {
	tests := []struct {
		name string
		v    registry.Verdict
		want string
	}{
		{"plugin codes kept", registry.RejectVerdict(554, "5.7.1", "Virus found"), "554 5.7.1 Virus found"},
		{"defaults filled", registry.Verdict{Action: registry.Reject}, "550 5.7.1 Message rejected"},
		{"tempfail defaults", registry.Verdict{Action: registry.TempFail}, "451 4.7.1 Try again later"},
		{"wrong class fixed", registry.RejectVerdict(451, "4.7.1", "odd"), "550 5.7.1 odd"},
		{"bad enhanced code", registry.TempFailVerdict(421, "x.y", "busy"), "421 4.7.1 busy"},
		{"newlines flattened", registry.RejectVerdict(550, "5.7.1", "a\r\nb"), "550 5.7.1 a  b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := VerdictError(tt.v)
			got := fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseCredentials(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	tests := []struct {
		name, in, wantErr string
	}{
		{"ok", "a:" + string(hash) + "\n\n# c\nb:" + string(hash), ""},
		{"no colon", "alice\n", "test:1: want user:bcrypt-hash"},
		{"plain password", "alice:secret\n", "test:1: user alice: not a bcrypt hash"},
		{"duplicate", "a:" + string(hash) + "\na:" + string(hash), "test:2: user a listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCredentials("test", strings.NewReader(tt.in))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, c.Check("a", "pw"))
			assert.False(t, c.Check("a", "PW"))
			assert.False(t, c.Check("nobody", "pw"))
		})
	}
}

// TestSessionEndReachesPlugins checks that QUIT and a dropped connection
// both end the session for plugins (Manager.EndSession).
func TestSessionEndReachesPlugins(t *testing.T) {
	h := start(t, Config{})
	for len(sessionsEnded) > 0 { // sessions of earlier tests
		<-sessionsEnded
	}
	converse(t, h.addr, []step{{send: "EHLO client.test", code: 250}, {send: "QUIT", code: 221}})
	// A client that says EHLO (go-smtp opens the session there) and hangs up.
	c, err := textproto.Dial("tcp", h.addr)
	require.NoError(t, err)
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("EHLO client.test"))
	_, _, err = c.ReadResponse(250)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	for i := range 2 {
		select {
		case ip := <-sessionsEnded:
			assert.Equal(t, "127.0.0.1", ip)
		case <-time.After(5 * time.Second):
			t.Fatalf("session %d: EndSession not called within 5s", i+1)
		}
	}
}

// TestRelayControl: recipients outside the local domains are refused at
// RCPT with 550 5.7.1 (before any plugin sees them: "refuse@" would get the
// test plugin's 5.1.1), unless the session authenticated and relaying is
// on; the refused recipient is dropped and the others kept.
func TestRelayControl(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	auth := step{send: "AUTH PLAIN " + b64("\x00alice\x00s3cret"), code: 235}
	ok := func(rcpt string) step { return step{send: "RCPT TO:<" + rcpt + ">", code: 250} }
	denied := func(rcpt string) step {
		return step{send: "RCPT TO:<" + rcpt + ">", code: 550, text: "5.7.1 Relaying denied"}
	}
	local := []string{"example.test", "Example.ORG."}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"local domains, any case, trailing dot", Config{LocalDomains: local}, []step{ok("a@example.test"), ok("b@EXAMPLE.test"),
			ok("c@example.org"), ok("d@example.org.")}},
		{"other domains refused before the plugins", Config{LocalDomains: local}, []step{denied("refuse@other.test"),
			denied("x@sub.example.test"), denied("x@example.test.evil"), denied("x@[127.0.0.1]"), ok("a@example.test")}},
		{"authenticated, relaying off", Config{LocalDomains: local, Credentials: creds(t), AllowPlaintextAuth: true},
			[]step{denied("x@other.test"), {send: "RSET", code: 250}, auth, {send: "MAIL FROM:<alice@example.test>", code: 250},
				denied("x@other.test"), ok("a@example.test")}},
		{"authenticated, relaying on", Config{LocalDomains: local, Credentials: creds(t), AllowPlaintextAuth: true, RelayAuthenticated: true},
			[]step{denied("x@other.test"), {send: "RSET", code: 250}, auth, {send: "MAIL FROM:<alice@example.test>", code: 250},
				ok("x@other.test"), ok("a@example.test")}},
		{"no local domain accepts nobody", Config{LocalDomains: []string{}}, []step{denied("a@example.test")}},
		// A domain listed in UTF-8 takes mail for its A-label (all mail
		// without SMTPUTF8) and the other way round.
		{"an internationalized domain, either spelling", Config{LocalDomains: []string{"bücher.example", "xn--r8jz45g.xn--zckzah"}},
			[]step{ok("a@xn--bcher-kva.example"), ok("b@XN--BCHER-KVA.example."), denied("c@buecher.example"), denied("d@xn--r8jz45g.test"),
				{send: "RSET", code: 250}, {send: "MAIL FROM:<s@example.net> SMTPUTF8", code: 250},
				ok("e@bücher.example"), ok("f@BÜCHER.example"), ok("g@例え.テスト"), denied("h@büch‍er.example")}},
		{"every domain local", Config{AllDomainsLocal: true}, []step{ok("a@example.test"), ok("b@other.test")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.cfg)
			converse(t, h.addr, append([]step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<s@example.net>", code: 250}}, tt.steps...))
		})
	}

	t.Run("the refused recipient is not in the envelope", func(t *testing.T) {
		h := start(t, Config{LocalDomains: local})
		converse(t, h.addr, append(hello("s@example.net", "a@example.test"), denied("b@other.test"),
			step{send: "DATA", code: 354}, step{send: msg(""), raw: true, code: 250}))
		items := h.spool.List()
		require.Len(t, items, 1)
		e, err := h.spool.Get(items[0].ID)
		require.NoError(t, err)
		assert.Equal(t, []string{"a@example.test"}, e.Envelope.RcptTo)
	})
}

// TestBDATAbortedThenNewTransaction: go-smtp runs Data in its own goroutine
// for BDAT. When the client resets the transfer (RSET, a new EHLO) the
// aborted Data must not touch the session afterwards: the next transaction
// (or Logout) runs concurrently on the connection's goroutine.
func TestBDATAbortedThenNewTransaction(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 64 << 10, MaxRecipients: 100, MaxLineLength: 2000})
	chunk := step{send: "BDAT 10\r\nSubject: x", raw: true, code: 250, text: "Continue"}
	again := []step{{send: "MAIL FROM:<a@example.org>", code: 250}, {send: "RCPT TO:<c@example.net>", code: 250},
		{send: "RCPT TO:<d@example.net>", code: 250}, {send: "DATA", code: 354}, {send: msg(""), raw: true, code: 250, text: "queued as"}}
	tests := []struct {
		name  string
		reset step
	}{
		{"RSET", step{send: "RSET", code: 250}},
		{"EHLO", step{send: "EHLO client.test", code: 250}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.spool.List())
			steps := append(hello("a@example.org", "b@example.net"), chunk, tt.reset)
			for range 20 { // the aborted Data races with the commands that follow
				steps = append(steps, again...)
			}
			converse(t, h.addr, steps)
			require.Len(t, h.spool.List(), before+20)
		})
	}
}

// TestEnvelopeControlCharacters: go-smtp takes any byte but LF inside a
// quoted local part, and hands the address over unquoted. A CR or other
// control character would reach the spool, the DSN's To and
// Final-Recipient fields and the smarthost's RCPT, so it is refused.
func TestEnvelopeControlCharacters(t *testing.T) {
	h := start(t, Config{})
	tests := []struct {
		name  string
		steps []step
	}{
		{"CR in sender", []step{{send: "EHLO c", code: 250}, {send: "MAIL FROM:<\"a\rBcc: x@example.net\"@example.org>", code: 553, text: "5.1.7"}, {send: "RCPT TO:<b@example.net>", code: 503, text: "5.5.1 Bad sequence of commands: MAIL FROM first"}}},
		{"ESC in sender", []step{{send: "EHLO c", code: 250}, {send: "MAIL FROM:<\"a\x1b\"@example.org>", code: 553, text: "5.1.7"}}},
		{"DEL in sender", []step{{send: "EHLO c", code: 250}, {send: "MAIL FROM:<a\x7f@example.org>", code: 553, text: "5.1.7"}}},
		{"CR in recipient", append(hello("a@example.org"), step{send: "RCPT TO:<\"b\rX-Injected: yes\"@example.net>", code: 553, text: "5.1.3"}, step{send: "DATA", code: 503})},
		{"tab in recipient", append(hello("a@example.org"), step{send: "RCPT TO:<\"b\tc\"@example.net>", code: 553, text: "5.1.3"})},
		{"null sender still accepted", hello("", "b@example.net")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			converse(t, h.addr, tt.steps)
		})
	}
}

// TestRefusedHELOEndsSession: the connect phase runs once per connection,
// before the greeting (a rate limiter takes the client's session slot
// there), and the plugins are told the session ended once, when the
// connection closes, however many of its HELOs were refused.
func TestRefusedHELOEndsSession(t *testing.T) {
	h := start(t, Config{})
	for len(sessionsEnded) > 0 { // sessions of earlier tests
		<-sessionsEnded
	}
	refused := step{send: "EHLO refused.test", code: 550, text: "5.7.1 HELO refused by test plugin"}
	converse(t, h.addr, []step{refused, refused, refused, {send: "MAIL FROM:<a@example.org>", code: 503, text: "5.5.1 Bad sequence of commands: HELO or EHLO first"}})
	select {
	case ip := <-sessionsEnded:
		assert.Equal(t, "127.0.0.1", ip)
	case <-time.After(5 * time.Second):
		t.Fatal("EndSession not called within 5s of the connection's end")
	}
	select {
	case <-sessionsEnded:
		t.Fatal("EndSession called more than once for one connection")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestBDATLineLength: go-smtp lifts its line limit for BDAT chunks, so the
// receiver checks the message itself: a line over MaxLineLength is refused
// with 500 5.5.6 whether it came with DATA or BDAT.
func TestBDATLineLength(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 64 << 10, MaxLineLength: 2000})
	// Short lines first: go-smtp reads ahead with the command line under
	// its limit, so a long line in the first 4 KiB would be caught by
	// accident of buffering.
	filler := "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("f", 78)+"\r\n", 100)
	bdat := func(payload string) string {
		return fmt.Sprintf("BDAT %d LAST\r\n%s", len(filler)+len(payload), filler+payload)
	}
	tests := []struct {
		name    string
		payload string
		code    int
		text    string
		queued  int
	}{
		{"short lines", "body\r\n", 250, "queued as", 1},
		{"line at the limit", strings.Repeat("x", 1998) + "\r\n", 250, "queued as", 1},
		{"line over the limit", strings.Repeat("x", 3000) + "\r\n", 500, "5.5.6 Line too long", 0},
		{"last line over the limit, no CRLF", strings.Repeat("x", 3000), 500, "5.5.6 Line too long", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.spool.List())
			converse(t, h.addr, append(hello("a@example.org", "b@example.net"),
				step{send: bdat(tt.payload), raw: true, code: tt.code, text: tt.text}, step{send: "NOOP", code: 250}))
			assert.Len(t, h.spool.List(), before+tt.queued)
		})
	}
}
