package e2e

import (
	"errors"
	"fmt"
	"net/textproto"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv"
	_ "github.com/elemta/elemta/plugins/clamav"
)

// eicar is the EICAR anti-virus test file (not a virus: every scanner
// reports it, clamd as Eicar-Test-Signature).
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// TestEICARRejectedAtData: with clamav enabled (the real clamd of
// tools/testenv), a message carrying EICAR is refused at the end of DATA
// with 554 5.7.1 and never reaches a Maildir; a clean one is delivered.
// A scan failure would tempfail (on_error), not pass for a rejection.
func TestEICARRejectedAtData(t *testing.T) {
	clamd := testenv.Require(t, testenv.Clamd)
	s := start(t, fmt.Sprintf(`
[plugins]
plugins = ["clamav"]
[plugins.clamav]
servers = [%q]
timeout = "20s"
on_error = "tempfail"
`, clamd), nil)

	const infected, clean = "infected@example.test", "clean@example.test"
	t.Run("swaks", func(t *testing.T) {
		r := s.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", infected,
			"--header", "Subject: eicar (swaks)", "--body", eicar)
		require.Equal(t, 26, r.code, "swaks: server did not accept mail following data\n%s", r.out)
		assert.Regexp(t, `(?m)^<\*\* +554 5\.7\.1 Virus found: Eicar-Test-Signature`, r.out)
	})
	t.Run("net/smtp", func(t *testing.T) {
		err := s.send("client.example.test", nil, "bob@example.test", []string{infected},
			message("bob@example.test", infected, "eicar (net/smtp)", eicar))
		var te *textproto.Error
		require.True(t, errors.As(err, &te), "want an SMTP error, got %v", err)
		assert.Equal(t, 554, te.Code)
		assert.Contains(t, te.Msg, "5.7.1 Virus found: Eicar-Test-Signature")
	})
	t.Run("clean", func(t *testing.T) {
		r := s.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", clean,
			"--header", "Subject: clean (swaks)", "--body", "nothing to see here")
		require.Equal(t, 0, r.code, r.out)
		s.waitMail(clean, 1)
	})
	// Refused before the 250, so never spooled: nothing can arrive later.
	assert.Empty(t, s.mailbox(infected))
}
