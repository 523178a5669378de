package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRelayingDenied: with [server] local_domains set and no relay, swaks
// gets 550 5.7.1 for a recipient in another domain while a local one is
// accepted in the same transaction and delivered alone.
func TestRelayingDenied(t *testing.T) {
	s := start(t, `
[plugins]
plugins = []
[server]
local_domains = ["example.test"]
`, nil)
	r := s.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "bob@elsewhere.test")
	require.Equal(t, 24, r.code, "no RCPT accepted\n%s", r.out)
	assert.Regexp(t, `(?m)^<\*\* +550 5\.7\.1 Relaying denied`, r.out)

	r = s.swaks("--helo", "client.example.test", "--from", "alice@example.test", "--to", "carol@example.test,bob@elsewhere.test")
	require.Equal(t, 0, r.code, "one RCPT accepted is enough\n%s", r.out)
	assert.Regexp(t, `(?m)^<\*\* +550 5\.7\.1 Relaying denied`, r.out)
	got := s.waitMail("carol@example.test", 1)
	assert.Len(t, got, 1)
	assert.Empty(t, s.mailbox("bob@elsewhere.test"))
}
