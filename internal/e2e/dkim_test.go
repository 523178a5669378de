package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/dkim"
	"github.com/elemta/elemta/registry"
)

// TestAuthenticatedSubmissionDKIM: a message submitted with AUTH PLAIN
// (over plaintext: allow_plaintext_auth = true) is DKIM-signed at
// pre-queue with the test zone's rsa2048 key, and the delivered copy
// verifies with our dkim plugin (through the test unbound) and with dkimpy.
// A message from an unauthenticated session is not signed; a wrong
// password is refused with 535.
func TestAuthenticatedSubmissionDKIM(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	keys := testenv.Require(t, testenv.Keys)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pass"), bcrypt.MinCost)
	require.NoError(t, err)
	authFile := filepath.Join(t.TempDir(), "users")
	require.NoError(t, os.WriteFile(authFile, []byte("# e2e\nalice:"+string(hash)+"\n"), 0o600))
	s := start(t, fmt.Sprintf(`
[plugins]
plugins = ["dkim"]
[plugins.dkim]
timeout = "5s"
selector = "rsa2048"
private_key = %q
[dns]
servers = [%q]
[server]
auth_file = %q
allow_plaintext_auth = true
`, filepath.Join(keys, "rsa2048.pem"), dns, authFile), nil)

	const rcpt = "bob@example.test"
	t.Run("swaks AUTH PLAIN", func(t *testing.T) {
		r := s.swaks("--helo", "laptop.example.test", "--from", "alice@example.test", "--to", rcpt,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret pass",
			"--header", "From: Alice <alice@example.test>", "--header", "Subject: signed (swaks)")
		require.Equal(t, 0, r.code, r.out)
		assert.Contains(t, r.out, "235 2.0.0 Authentication succeeded")
	})
	t.Run("net/smtp PlainAuth", func(t *testing.T) {
		// net/smtp sends PLAIN without TLS only to localhost/127.0.0.1.
		auth := smtp.PlainAuth("", "alice", "s3cret pass", "127.0.0.1")
		require.NoError(t, s.send("laptop.example.test", auth, "alice@example.test", []string{rcpt},
			message("alice@example.test", rcpt, "signed (net/smtp)", "Hello Bob,\nthis is signed.\n")))
	})
	t.Run("wrong password", func(t *testing.T) {
		r := s.swaks("--helo", "laptop.example.test", "--from", "alice@example.test", "--to", rcpt,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "guess")
		require.Equal(t, 28, r.code, r.out)
		assert.Regexp(t, `(?m)^<\*\* +535 5\.7\.8`, r.out)
		err := s.send("laptop.example.test", smtp.PlainAuth("", "alice", "guess", "127.0.0.1"), "alice@example.test", []string{rcpt}, nil)
		var te *textproto.Error
		require.True(t, errors.As(err, &te), "want an SMTP error, got %v", err)
		assert.Equal(t, 535, te.Code)
	})
	const anon = "anon@example.test"
	t.Run("unauthenticated", func(t *testing.T) {
		require.NoError(t, s.send("laptop.example.test", nil, "alice@example.test", []string{anon},
			message("alice@example.test", anon, "unsigned", "not signed")))
	})

	got := s.waitMail(rcpt, 2)
	require.Len(t, got, 2)
	txt := zoneKeys(t, s, "rsa2048._domainkey.example.test")
	verifyOurs := dkimVerifier(t, dns)
	for _, m := range got {
		sigs := headerFields(m, "DKIM-Signature")
		require.Len(t, sigs, 1, m)
		assert.Contains(t, sigs[0], "d=example.test")
		assert.Contains(t, sigs[0], "s=rsa2048")
		assert.Contains(t, sigs[0], "a=rsa-sha256")

		assert.Equal(t, registry.AuthPass, verifyOurs(m), "our dkim plugin")
		assert.Equal(t, []string{"0 pass"}, dkimpy(t, txt, m), "dkimpy")

		tampered := strings.Replace(m, "\r\n\r\n", "\r\n\r\nP.S. added in transit\r\n", 1)
		assert.Equal(t, registry.AuthFail, verifyOurs(tampered), "our dkim plugin, body changed")
		assert.Regexp(t, `^0 fail`, strings.Join(dkimpy(t, txt, tampered), "\n"), "dkimpy, body changed")
	}
	unsigned := s.waitMail(anon, 1)
	assert.Empty(t, headerFields(unsigned[0], "DKIM-Signature"), "unauthenticated mail is not signed")
}

// dkimVerifier returns a function that verifies a message's only DKIM
// signature with the dkim plugin at post-reception, through its own
// Manager and the test unbound.
func dkimVerifier(t *testing.T, dns string) func(msg string) registry.AuthResult {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("verify.toml", []byte("[plugins]\nplugins = [\"dkim\"]\n[plugins.dkim]\nsign = false\ntimeout = \"5s\"\n"))
	require.NoError(t, err)
	res, err := resolver.New(resolver.Config{Servers: []string{dns}}, resolver.Options{})
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: res, Hostname: "verifier.test"}))
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { m.Close() })
	return func(msg string) registry.AuthResult {
		t.Helper()
		parsed, err := registry.ParseMessage([]byte(msg), registry.Envelope{})
		require.NoError(t, err)
		pc := registry.NewProcessingContext(parsed, nil)
		_, err = m.ExecuteStage(context.Background(), registry.PostReception, pc)
		require.NoError(t, err)
		r, ok := registry.Find[*registry.DKIMResult](pc)
		require.True(t, ok, "no DKIM result: %+v", pc.Results())
		require.Len(t, r.Signatures, 1)
		return r.Signatures[0].Result
	}
}

// zoneKeys returns the TXT record at name as the test unbound serves it.
func zoneKeys(t *testing.T, s *server, name string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	txt, err := s.res.LookupTXT(ctx, name)
	require.NoError(t, err)
	require.Len(t, txt, 1)
	return map[string]string{name + ".": txt[0]}
}

// dkimpy verifies msg with Debian's python3-dkim through the project's
// helper (plugins/dkim/testdata/dkimpy_helper.py), its DNS answered from
// records (looked up in the test zone). One line per signature.
func dkimpy(t *testing.T, records map[string]string, msg string) []string {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "dkim")
	js, err := json.Marshal(records)
	require.NoError(t, err)
	dnsFile := filepath.Join(t.TempDir(), "dns.json")
	require.NoError(t, os.WriteFile(dnsFile, js, 0o600))
	helper, err := filepath.Abs("../../plugins/dkim/testdata/dkimpy_helper.py")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, helper, "verify", "--dns", dnsFile)
	cmd.Stdin = strings.NewReader(msg)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Run(), errOut.String())
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}
