package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/config"
	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// hostname is the test server's name: greeting, Received and authserv-id.
const hostname = "mx.e2e.test"

// testClock is registry.Host.Clock under the test's control.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// server is a running `elemta serve` for one test.
type server struct {
	t    testing.TB
	addr string
	// mail is the Maildir root; dir the test's temporary directory.
	mail, dir string
	res       *resolver.Resolver
}

// start parses toml (a whole config file: [plugins], [dns], [server]) the
// way the binary does, points the spool and Maildirs into a temporary
// directory, listens on 127.0.0.1:0 and stops everything at cleanup. clock
// may be nil (the system clock).
func start(t testing.TB, toml string, clock registry.Clock) *server {
	t.Helper()
	return startOn(t, toml, clock, "127.0.0.1:0")
}

// startOn is start listening on listen.
func startOn(t testing.TB, toml string, clock registry.Clock, listen string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse("e2e.toml", []byte(toml))
	require.NoError(t, err)
	cfg.Server.Listen = listen
	cfg.Server.Hostname = hostname
	cfg.Server.SpoolDir = filepath.Join(dir, "spool")
	cfg.Server.MaildirRoot = filepath.Join(dir, "mail")
	cfg.Server.ShutdownTimeout = registry.Duration(5 * time.Second)
	res, err := resolver.New(cfg.DNS, resolver.Options{})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	host := registry.Host{Logger: logger, Resolver: res, Clock: clock, Hostname: hostname, DataDir: filepath.Join(dir, "data")}
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	s, err := serve.Start(context.Background(), cfg.Server, mgr, logger)
	if err != nil {
		mgr.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := mgr.Close(); err != nil {
			t.Errorf("closing plugins: %v", err)
		}
	})
	return &server{t: t, addr: s.Addr().String(), mail: cfg.Server.MaildirRoot, dir: dir, res: res}
}

// swaksResult is one swaks run: its exit status and its transcript.
type swaksResult struct {
	code int
	out  string
}

// swaks runs swaks against the server (at most 30 s). Exit
// statuses (swaks(1)): 0 delivered, 24 no RCPT accepted, 26 DATA refused,
// 28 AUTH failed.
func (s *server) swaks(args ...string) swaksResult {
	s.t.Helper()
	swaks := testenv.RequireTool(s.t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks, append([]string{"--server", s.addr, "--timeout", "20"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return swaksResult{0, out.String()}
	case ctx.Err() != nil:
		s.t.Fatalf("swaks did not finish within 30 s:\n%s", out.String())
	case errors.As(err, &ee):
		return swaksResult{ee.ExitCode(), out.String()}
	}
	s.t.Fatalf("swaks: %v", err)
	return swaksResult{}
}

// message is a small RFC 5322 message with CRLF line ends.
func message(from, to, subject, body string, extra ...string) []byte {
	var b strings.Builder
	for _, f := range extra {
		b.WriteString(f + "\r\n")
	}
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), from, strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}

// send submits msg with Go's net/smtp (EHLO helo; AUTH PLAIN when auth is
// set) and returns the first error with its reply.
func (s *server) send(helo string, auth smtp.Auth, from string, to []string, msg []byte) error {
	c, err := smtp.Dial(s.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return err
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// mailbox returns the messages in addr's Maildir new/ (none when it does
// not exist yet).
func (s *server) mailbox(addr string) []string {
	s.t.Helper()
	box, err := mbox.Path(s.mail, addr) // the delivery's rules
	require.NoError(s.t, err)
	dir := filepath.Join(box, "new")
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(s.t, err)
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(s.t, err)
		out = append(out, string(b))
	}
	return out
}

// waitMail polls (every 5 ms, for at most 10 s) until addr's Maildir holds
// n messages: delivery runs after the 250, in the background.
func (s *server) waitMail(addr string, n int) []string {
	s.t.Helper()
	var got []string
	require.Eventually(s.t, func() bool { got = s.mailbox(addr); return len(got) >= n }, 10*time.Second, 5*time.Millisecond,
		"waiting for %d message(s) for %s", n, addr)
	return got
}

// headerFields returns the unfolded values of every field called name in
// the header of msg, as the plugins see them (registry.ParseMessage).
func headerFields(msg, name string) []string {
	m, err := registry.ParseMessage([]byte(msg), registry.Envelope{})
	if err != nil {
		return nil
	}
	return m.Header.Values(name)
}
