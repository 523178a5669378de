package milter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/config"
	elmilter "github.com/elemta/elemta/internal/milter"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/arc"
	_ "github.com/elemta/elemta/plugins/authres"
	_ "github.com/elemta/elemta/plugins/clamav"
	_ "github.com/elemta/elemta/plugins/dkim"
	_ "github.com/elemta/elemta/plugins/dmarc"
	_ "github.com/elemta/elemta/plugins/greylist"
	_ "github.com/elemta/elemta/plugins/spf"
	"github.com/elemta/elemta/registry"
)

// The Postfix of tools/testenv (postfix-milter.sh): its SMTP address, the
// address its smtpd_milters points at, the Maildir it delivers
// example.test to.
const (
	envPostfix = "ELEMTA_TEST_POSTFIX_MILTER"
	envListen  = "ELEMTA_TEST_POSTFIX_MILTER_LISTEN"
	envMaildir = "ELEMTA_TEST_POSTFIX_MILTER_MAILDIR"
)

// authservID is the milter's hostname in these tests.
const authservID = "mx.milter.test"

// postfix is the test environment's Postfix with an `elemta milter` of
// this test behind it.
type postfix struct {
	t       *testing.T
	addr    string
	maildir string
	dns     string
	res     *resolver.Resolver
}

// testClock is registry.Host.Clock under the test's control.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// withPostfix starts `elemta milter` from doc (a config file; [dns]
// servers is set to the test DNS) where the test Postfix expects it, and
// stops it at cleanup. clock may be nil.
func withPostfix(t *testing.T, doc string, clock registry.Clock) *postfix {
	t.Helper()
	pf := &postfix{t: t, addr: testenv.Require(t, envPostfix), maildir: testenv.Require(t, envMaildir), dns: testenv.Require(t, testenv.DNS)}
	listen := testenv.Require(t, envListen)
	cfg, err := config.Parse("postfix-e2e.toml", []byte(doc+fmt.Sprintf("\n[dns]\nservers = [%q]\n[milter]\nlisten = \"inet:%s\"\nhostname = %q\n", pf.dns, listen, authservID)))
	require.NoError(t, err)
	pf.res, err = resolver.New(cfg.DNS, resolver.Options{})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(registry.Host{Logger: logger, Resolver: pf.res, Clock: clock,
		Hostname: authservID, DataDir: t.TempDir()}))
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	srv, err := elmilter.Start(context.Background(), cfg.Milter, mgr, logger)
	if err != nil {
		mgr.Close()
		t.Fatalf("%v (is another test's milter on %s?)", err, listen)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("milter shutdown: %v", err)
		}
		if err := mgr.Close(); err != nil {
			t.Errorf("close plugins: %v", err)
		}
	})
	return pf
}

// swaks submits to Postfix (at most 30 s) and returns swaks' exit status
// and transcript: 0 delivered, 24 no RCPT accepted, 26 DATA refused.
func (pf *postfix) swaks(args ...string) (int, string) {
	pf.t.Helper()
	swaks := testenv.RequireTool(pf.t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks, append([]string{"--server", pf.addr, "--timeout", "20"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case ctx.Err() != nil:
		pf.t.Fatalf("swaks did not finish within 30 s:\n%s", out.String())
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	pf.t.Fatalf("swaks: %v", err)
	return 0, ""
}

// delivered waits (every 10 ms, at most 15 s: Postfix delivers after its
// 250) for the message whose Subject holds token in Postfix's Maildir.
func (pf *postfix) delivered(token string) string {
	pf.t.Helper()
	var found string
	require.Eventually(pf.t, func() bool { found = pf.find(token); return found != "" }, 15*time.Second, 10*time.Millisecond,
		"message %q not delivered to %s", token, pf.maildir)
	return found
}

func (pf *postfix) find(token string) string {
	ents, _ := os.ReadDir(filepath.Join(pf.maildir, "new"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(pf.maildir, "new", e.Name()))
		if err == nil && strings.Contains(headerOf(string(b)), token) {
			return string(b)
		}
	}
	return ""
}

// token is a Subject unique to this run.
func token(t *testing.T, what string) string {
	return fmt.Sprintf("%s-%s-%d", t.Name(), what, time.Now().UnixNano())
}

func headerOf(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	head, _, _ := strings.Cut(msg, "\n\n")
	return head
}

// fields returns the unfolded values of the fields called name, as the
// plugins see them (registry.ParseMessage).
func fields(msg, name string) []string {
	m, err := registry.ParseMessage([]byte(msg), registry.Envelope{})
	if err != nil {
		return nil
	}
	return m.Header.Values(name)
}

// TestPostfixCleanMail: swaks → Postfix → milter: a message signed by
// example.test (DKIM, rsa2048 of the test zone) from 127.0.0.1 (in
// example.test's SPF) arrives with our Authentication-Results: spf, dkim
// and dmarc pass; a forged one claiming our authserv-id is removed.
func TestPostfixCleanMail(t *testing.T) {
	keys := testenv.Require(t, testenv.Keys)
	pf := withPostfix(t, `
[plugins]
plugins = ["spf", "dkim", "dmarc", "authres"]
[plugins.dkim]
timeout = "5s"
sign = false
`, nil)
	subject := token(t, "clean")
	msg := "From: Alice <alice@example.test>\r\nTo: <postmaster@example.test>\r\nSubject: " + subject + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <" + subject + "@example.test>\r\n" +
		"Authentication-Results: " + authservID + "; spf=pass smtp.mailfrom=forged@example.test\r\n\r\nHello.\r\n"
	signed := dkimpySign(t, filepath.Join(keys, "rsa2048.pkcs1.pem"), msg)
	file := filepath.Join(t.TempDir(), "msg.eml")
	require.NoError(t, os.WriteFile(file, []byte(signed), 0o600))

	code, out := pf.swaks("--helo", "mail.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test", "--data", file)
	require.Equal(t, 0, code, out)
	got := pf.delivered(subject)
	ars := fields(got, "Authentication-Results")
	require.Len(t, ars, 1, "ours only, the forged one removed:\n%s", got)
	ar := ars[0]
	assert.True(t, strings.HasPrefix(ar, authservID+";"), ar)
	assert.Contains(t, ar, "spf=pass smtp.mailfrom=alice@example.test")
	assert.Contains(t, ar, "dkim=pass")
	assert.Contains(t, ar, "header.d=example.test")
	assert.Contains(t, ar, "dmarc=pass header.from=example.test")
	assert.NotContains(t, ar, "forged")
	require.Len(t, fields(got, "Received-SPF"), 1)
	// Our fields are on top, above Postfix's Received, as serve puts them above its own.
	head := headerOf(got)
	assert.Less(t, strings.Index(head, "Authentication-Results:"), strings.Index(head, "Received: from mail.example.test"), head)
}

// dkimpySign signs msg with dkimpy (s=rsa2048, d=example.test).
func dkimpySign(t *testing.T, key, msg string) string {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "dkim")
	helper, err := filepath.Abs("../../plugins/dkim/testdata/dkimpy_helper.py")
	require.NoError(t, err)
	cmd := exec.Command(python, helper, "sign", "--selector", "rsa2048", "--domain", "example.test", "--key", key,
		"--headers", "from,to,subject,date,message-id")
	cmd.Stdin = strings.NewReader(msg)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	return out.String()
}

// TestPostfixEICAR: clamav (the real clamd) refuses EICAR at the end of
// DATA; Postfix answers the client with our 554 text.
func TestPostfixEICAR(t *testing.T) {
	clamd := testenv.Require(t, testenv.Clamd)
	pf := withPostfix(t, fmt.Sprintf(`
[plugins]
plugins = ["clamav"]
[plugins.clamav]
servers = [%q]
timeout = "20s"
on_error = "tempfail"
`, clamd), nil)
	const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`
	subject := token(t, "eicar")
	code, out := pf.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test",
		"--header", "Subject: "+subject, "--body", eicar)
	require.Equal(t, 26, code, "DATA refused\n%s", out)
	assert.Regexp(t, `(?m)^<\*\* +554 5\.7\.1 Virus found: Eicar-Test-Signature`, out)

	clean := token(t, "clean")
	code, out = pf.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test",
		"--header", "Subject: "+clean, "--body", "nothing to see")
	require.Equal(t, 0, code, out)
	pf.delivered(clean)
	assert.Empty(t, pf.find(subject), "refused before Postfix's 250: never delivered")
}

// TestPostfixGreylist: the first attempt gets 451 at RCPT through Postfix,
// a retry after `delay` (the injected clock) passes and is delivered.
func TestPostfixGreylist(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	pf := withPostfix(t, `
[plugins]
plugins = ["greylist"]
[plugins.greylist]
delay = "5m"
retry_window = "4h"
exempt_networks = []
store = "bolt"
`, clock)
	from := fmt.Sprintf("grey%d@example.test", time.Now().UnixNano()) // a new triplet each run
	subject := token(t, "grey")
	send := func() (int, string) {
		return pf.swaks("--helo", "client.example.test", "--from", from, "--to", "postmaster@example.test", "--header", "Subject: "+subject)
	}
	code, out := send()
	require.Equal(t, 24, code, "first sight: no RCPT accepted\n%s", out)
	assert.Regexp(t, `(?m)^<\*\* +451 4\.7\.1 Greylisted, please try again in 300 seconds`, out)
	clock.Advance(4 * time.Minute)
	code, out = send()
	require.Equal(t, 24, code, "early retry\n%s", out)
	clock.Advance(61 * time.Second)
	code, out = send()
	require.Equal(t, 0, code, "retry after delay\n%s", out)
	pf.delivered(subject)
}

// TestPostfixAuthenticatedSubmission: AUTH PLAIN to Postfix (Cyrus
// sasldb) reaches the milter as {auth_authen}; the message arrives
// DKIM-signed and ARC-sealed, both verified by dkimpy, the signature over
// the header Postfix delivers (its Received and the fields it adds
// included). An unauthenticated message is not signed.
func TestPostfixAuthenticatedSubmission(t *testing.T) {
	keys := testenv.Require(t, testenv.Keys)
	key := filepath.Join(keys, "rsa2048.pem")
	pf := withPostfix(t, fmt.Sprintf(`
[plugins]
plugins = ["spf", "dkim", "dmarc", "arc", "authres"]
[plugins.dkim]
timeout = "5s"
selector = "rsa2048"
private_key = %q
trusted_networks = []
[plugins.arc]
domain = "example.test"
selector = "rsa2048"
private_key = %q
seal_for = "all"
`, key, key), nil)
	subject := token(t, "signed")
	code, out := pf.swaks("--helo", "laptop.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test",
		"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret pass",
		"--header", "From: Alice <alice@example.test>", "--header", "Subject: "+subject)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "235 2.7.0 Authentication successful")
	got := pf.delivered(subject)
	sigs := fields(got, "DKIM-Signature")
	require.Len(t, sigs, 1, got)
	assert.Contains(t, sigs[0], "d=example.test")
	require.Len(t, fields(got, "ARC-Seal"), 1, got)

	dns := pf.zone(t, "rsa2048._domainkey.example.test")
	assert.Equal(t, []string{"0 pass"}, dkimpyVerify(t, dns, got), "dkimpy DKIM")
	arc := strings.Fields(dkimpyARCVerify(t, dns, got))
	require.NotEmpty(t, arc)
	assert.Equal(t, "pass", arc[0], "dkimpy ARC: %v", arc)

	anon := token(t, "anon")
	code, out = pf.swaks("--helo", "laptop.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test",
		"--header", "From: Alice <alice@example.test>", "--header", "Subject: "+anon)
	require.Equal(t, 0, code, out)
	assert.Empty(t, fields(pf.delivered(anon), "DKIM-Signature"), "not authenticated: not signed")
}

func (pf *postfix) zone(t *testing.T, name string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	txt, err := pf.res.LookupTXT(ctx, name)
	require.NoError(t, err)
	require.Len(t, txt, 1)
	return map[string]string{name + ".": txt[0]}
}

func dnsFile(t *testing.T, records map[string]string) string {
	t.Helper()
	js, err := json.Marshal(records)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "dns.json")
	require.NoError(t, os.WriteFile(f, js, 0o600))
	return f
}

func runPython(t *testing.T, script string, stdin string, args ...string) string {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "dkim")
	helper, err := filepath.Abs(script)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{helper}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	return strings.TrimSpace(out.String())
}

func dkimpyVerify(t *testing.T, records map[string]string, msg string) []string {
	return strings.Split(runPython(t, "../../plugins/dkim/testdata/dkimpy_helper.py", msg, "verify", "--dns", dnsFile(t, records)), "\n")
}

func dkimpyARCVerify(t *testing.T, records map[string]string, msg string) string {
	return runPython(t, "../../plugins/arc/testdata/arc_helper.py", msg, "verify", "--dns", dnsFile(t, records))
}

// TestPostfixPluginFailure: a plugin that panics, and one that hangs past
// its timeout, get on_error (tempfail: Postfix answers 451 4.3.0); Postfix
// and the milter keep running and the next message is delivered.
func TestPostfixPluginFailure(t *testing.T) {
	hangUntilCleanup(t)
	pf := withPostfix(t, `
[plugins]
plugins = ["milterboom"]
[plugins.milterboom]
timeout = "200ms"
on_error = "tempfail"
`, nil)
	for _, how := range []string{"panic", "hang"} {
		code, out := pf.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test",
			"--header", "Subject: "+token(t, how), "--header", "X-Boom: "+how)
		require.Equal(t, 26, code, "%s: DATA refused\n%s", how, out)
		assert.Regexp(t, `(?m)^<\*\* +451 4\.3\.0 Message checks temporarily unavailable`, out, how)
	}
	ok := token(t, "after")
	code, out := pf.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "postmaster@example.test", "--header", "Subject: "+ok)
	require.Equal(t, 0, code, out)
	pf.delivered(ok)
}
