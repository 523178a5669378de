package e2e

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/elemta/elemta/internal/mime7bit"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
)

// smtplib sends msg with Python's smtplib (Debian's python3): EHLO, MAIL
// FROM with mailOptions (SMTPUTF8, BODY=8BITMIME), RCPT, DATA. It returns
// smtplib's error, "" when the message was accepted.
func smtplib(t *testing.T, addr, from string, rcpts []string, msg string, mailOptions ...string) string {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "smtplib")
	if mailOptions == nil {
		mailOptions = []string{}
	}
	host, port, _ := strings.Cut(addr, ":")
	in, err := json.Marshal(map[string]any{"host": host, "port": port, "from": from, "rcpts": rcpts, "msg": msg, "opts": mailOptions})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", `
import json, smtplib, sys
a = json.load(sys.stdin)
try:
    with smtplib.SMTP(a["host"], int(a["port"]), local_hostname="client.example.test", timeout=20) as s:
        s.sendmail(a["from"], a["rcpts"], a["msg"].encode("utf-8"), mail_options=a["opts"])
except Exception as e:
    print(repr(e))
`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.TrimSpace(string(out))
}

// TestPostfixRelaysUTF8ToElemta: smtplib sends Postfix (Debian's, the
// testenv instance) a message with a UTF-8 From display name and UTF-8
// addresses in an SMTPUTF8 transaction; Postfix relays it to Elemta (its
// transport for elemta.test), which delivers it to the recipient's one
// Maildir, the message byte for byte after the trace fields.
func TestPostfixRelaysUTF8ToElemta(t *testing.T) {
	postfix := testenv.Require(t, testenv.Postfix)
	nexthop := testenv.Require(t, testenv.PostfixNextHop)
	s := startOn(t, "[server]\nlocal_domains = [\"elemta.test\"]\n", nil, nexthop)
	token := fmt.Sprintf("utf8-%d", time.Now().UnixNano())
	body := "From: \"Jürgen Müller\" <jürgen@example.test>\r\nTo: <björn@elemta.test>\r\nSubject: Grüße " + token +
		"\r\nMessage-ID: <" + token + "@example.test>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\nHallo Björn, schöne Grüße aus Köln.\r\n"
	require.Empty(t, smtplib(t, postfix, "jürgen@example.test", []string{"björn@elemta.test"}, body, "SMTPUTF8", "BODY=8BITMIME"))

	got := s.waitMail("Björn@elemta.test", 1) // one mailbox: the ASCII case of the local part does not matter
	require.Len(t, got, 1)
	m := got[0]
	assert.True(t, strings.HasSuffix(m, body), "delivered unchanged after the trace fields:\n%s", m)
	assert.Contains(t, headerfold.Unfold(m), "with UTF8SMTP id ", "our Received: an SMTPUTF8 transaction")
	assert.Contains(t, m, "by pf.example.test (Postfix) with UTF8SMTP", "Postfix took it with SMTPUTF8")
	checkWritten(t, m)
}

// TestSMTPUTF8LocalPartOneMaildir: smtplib sends Elemta an SMTPUTF8
// message to a UTF-8 local part in two ASCII cases: one copy, in one
// Maildir.
func TestSMTPUTF8LocalPartOneMaildir(t *testing.T) {
	s := start(t, "", nil)
	msg := "From: <jürgen@example.test>\r\nTo: <Jürgen@example.test>\r\nSubject: Grüße\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nZürich\r\n"
	require.Empty(t, smtplib(t, s.addr, "jürgen@example.test", []string{"Jürgen@example.test", "jürgen@EXAMPLE.test"}, msg, "SMTPUTF8"))
	got := s.waitMail("jürgen@example.test", 1)
	require.Len(t, got, 1)
	assert.True(t, strings.HasSuffix(got[0], msg))
	ents, err := os.ReadDir(filepath.Join(s.mail, "example.test"))
	require.NoError(t, err)
	require.Len(t, ents, 1, "one Maildir")
	assert.Equal(t, "jürgen", ents[0].Name())

	// Without SMTPUTF8 the same address is refused with 553 5.6.7
	// (smtplib will not even send it).
	c, err := textproto.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("EHLO client.example.test"))
	_, _, err = c.ReadResponse(250)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("MAIL FROM:<jürgen@example.test>"))
	code, text, _ := c.ReadResponse(0)
	assert.Equal(t, 553, code)
	assert.True(t, strings.HasPrefix(text, "5.6.7 "), text)
}

// TestElemtaRelays8BitToPostfixWithout8BitMIME: an authenticated client
// submits an 8-bit message for a domain Elemta relays to a Postfix that
// does not offer 8BITMIME; what Postfix delivers is 7-bit and still passes
// our DKIM signature in dkimpy. With relay_downgrade_8bit off the relay
// converts it after signing, and dkimpy finds the body hash broken: what
// the key is for.
func TestElemtaRelays8BitToPostfixWithout8BitMIME(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	keys := testenv.Require(t, testenv.Keys)
	postfix7 := testenv.Require(t, testenv.Postfix7Bit)
	maildir := testenv.Require(t, testenv.PostfixMaildir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	authFile := filepath.Join(t.TempDir(), "users")
	require.NoError(t, os.WriteFile(authFile, []byte("alice:"+string(hash)+"\n"), 0o600))
	for _, tt := range []struct {
		downgrade bool
		dkimpy    string
	}{
		{true, "0 pass"},
		{false, "0 fail"},
	} {
		t.Run(fmt.Sprintf("relay_downgrade_8bit=%v", tt.downgrade), func(t *testing.T) {
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
local_domains = ["elemta.test"]
relay = %q
relay_downgrade_8bit = %v
`, filepath.Join(keys, "rsa2048.pem"), dns, authFile, postfix7, tt.downgrade), nil)
			token := fmt.Sprintf("8bit-%d", time.Now().UnixNano())
			msg := "From: Alice <alice@example.test>\r\nTo: <postmaster@example.test>\r\nSubject: " + token +
				"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
				"Grüße aus Köln: 100 € für die Straße.\r\n"
			require.NoError(t, s.send("laptop.example.test", smtp.PlainAuth("", "alice", "s3cret", "127.0.0.1"),
				"alice@example.test", []string{"postmaster@example.test"}, []byte(msg)))
			m := postfixMail(t, maildir, token)
			assert.False(t, mime7bit.Needs([]byte(m)), "7-bit:\n%s", m)
			assert.Contains(t, m, "Content-Transfer-Encoding: quoted-printable\r\n")
			assert.Contains(t, m, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln")
			require.Len(t, headerFields(m, "DKIM-Signature"), 1)
			got := dkimpy(t, zoneKeys(t, s, "rsa2048._domainkey.example.test"), m)
			require.NotEmpty(t, got)
			assert.True(t, strings.HasPrefix(got[0], tt.dkimpy), "dkimpy: %v", got)
			checkWritten(t, m)
		})
	}
}

// postfixMail waits (at most 20 s) for the message holding token in
// Postfix's Maildir and returns it with CRLF line ends (virtual(8) stores
// LF; the wire had CRLF).
func postfixMail(t *testing.T, maildir, token string) string {
	t.Helper()
	var found string
	require.Eventually(t, func() bool {
		ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
			if err == nil && bytes.Contains(b, []byte(token)) {
				found = string(b)
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "no message with %s in %s", token, maildir)
	return strings.ReplaceAll(strings.ReplaceAll(found, "\r\n", "\n"), "\n", "\r\n")
}

// checkWritten checks what Elemta wrote into a delivered message: no
// header line over 998 characters.
func checkWritten(t *testing.T, m string) {
	t.Helper()
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		assert.LessOrEqual(t, len(line), headerfold.MaxLine, "%.80q", line)
	}
}
