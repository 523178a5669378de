package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv"
	_ "github.com/elemta/elemta/plugins/authres"
	_ "github.com/elemta/elemta/plugins/dkim"
	_ "github.com/elemta/elemta/plugins/dmarc"
	_ "github.com/elemta/elemta/plugins/spf"
)

// TestCleanMailAuthenticationResults: a clean message from 127.0.0.1 with
// MAIL FROM and From in example.test (whose SPF record lists 127.0.0.0/8
// and whose DMARC policy is p=reject) is delivered to the Maildir with our
// Authentication-Results: spf=pass, dkim=none (unsigned), dmarc=pass
// through aligned SPF. A field claiming our authserv-id that the client
// sent is removed.
func TestCleanMailAuthenticationResults(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	s := start(t, fmt.Sprintf(`
[plugins]
plugins = ["spf", "dkim", "dmarc", "authres"]
[plugins.dkim]
timeout = "5s"
[dns]
servers = [%q]
`, dns), nil)

	const rcpt = "postmaster@example.test"
	t.Run("swaks", func(t *testing.T) {
		r := s.swaks("--helo", "mail.example.test", "--from", "alice@example.test", "--to", rcpt,
			"--header", "From: <alice@example.test>", "--header", "Subject: e2e clean (swaks)")
		require.Equal(t, 0, r.code, r.out)
		assert.Contains(t, r.out, "<-  250 2.0.0 OK queued as ")
	})
	t.Run("net/smtp", func(t *testing.T) {
		forged := "Authentication-Results: " + hostname + "; spf=pass smtp.mailfrom=forged@example.test; dmarc=pass header.from=example.test"
		msg := message("bob@example.test", rcpt, "e2e clean (net/smtp)", "hello", forged)
		require.NoError(t, s.send("mail.example.test", nil, "bob@example.test", []string{rcpt}, msg))
	})

	got := s.waitMail(rcpt, 2)
	require.Len(t, got, 2)
	senders := map[string]bool{}
	for _, m := range got {
		ars := headerFields(m, "Authentication-Results")
		require.Len(t, ars, 1, "exactly one Authentication-Results (ours; the forged one is removed):\n%s", m)
		ar := ars[0]
		assert.True(t, strings.HasPrefix(ar, hostname+";"), ar)
		pythonAuthres(t, "Authentication-Results: "+ar)
		checkWritten(t, m)
		assert.NotContains(t, ar, "forged")
		var from string
		for _, f := range []string{"alice@example.test", "bob@example.test"} {
			if strings.Contains(ar, "spf=pass smtp.mailfrom="+f) {
				from = f
			}
		}
		require.NotEmpty(t, from, "spf=pass for the envelope sender: %s", ar)
		senders[from] = true
		assert.Contains(t, ar, "dkim=none", ar)
		assert.Contains(t, ar, "dmarc=pass header.from=example.test", ar)
		spf := headerFields(m, "Received-SPF")
		require.Len(t, spf, 1, m)
		assert.True(t, strings.HasPrefix(spf[0], "pass "), spf[0])
		assert.Contains(t, spf[0], "client-ip=127.0.0.1")
		assert.Contains(t, headerFields(m, "Received")[0], "by "+hostname+" (Elemta)")
	}
	assert.Len(t, senders, 2, "one message from each client")
}
