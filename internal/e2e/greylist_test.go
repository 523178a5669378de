package e2e

import (
	"errors"
	"net/textproto"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/elemta/elemta/plugins/greylist"
)

// TestGreylistRetry: the first attempt of a (client, sender, recipient)
// triplet gets 451 at RCPT, a retry before `delay` is refused again, and a
// retry after `delay` passes and is delivered. Time moves only through the
// clock handed to the plugins (registry.Host.Clock); the bbolt store lives
// under the test's DataDir. Loopback is not exempt here
// (exempt_networks = []).
func TestGreylistRetry(t *testing.T) {
	clock := newTestClock()
	s := start(t, `
[plugins]
plugins = ["greylist"]
[plugins.greylist]
delay = "5m"
retry_window = "4h"
exempt_networks = []
store = "bolt"
`, clock)

	const from, rcpt = "alice@example.test", "greylisted@example.test"
	swaks := func() swaksResult {
		return s.swaks("--helo", "client.example.test", "--from", from, "--to", rcpt, "--header", "Subject: greylist (swaks)")
	}
	netsmtp := func() error {
		return s.send("client.example.test", nil, from, []string{rcpt}, message(from, rcpt, "greylist (net/smtp)", "retry"))
	}

	r := swaks()
	require.Equal(t, 24, r.code, "first sight: no RCPT accepted\n%s", r.out)
	assert.Regexp(t, `(?m)^<\*\* +451 4\.7\.1 Greylisted, please try again in 300 seconds`, r.out)

	clock.Advance(4 * time.Minute) // early retry: still refused
	err := netsmtp()
	var te *textproto.Error
	require.True(t, errors.As(err, &te), "want an SMTP error, got %v", err)
	assert.Equal(t, 451, te.Code)
	assert.Contains(t, te.Msg, "4.7.1 Greylisted")

	clock.Advance(61 * time.Second) // 5m01s after the first sight
	r = swaks()
	require.Equal(t, 0, r.code, "retry after delay passes\n%s", r.out)
	require.NoError(t, netsmtp(), "the triplet now passes for net/smtp too")

	got := s.waitMail(rcpt, 2)
	assert.Len(t, got, 2)
	// Another recipient is a new triplet: greylisted although the first passed.
	r = s.swaks("--helo", "client.example.test", "--from", from, "--to", "other@example.test")
	assert.Equal(t, 24, r.code, r.out)
}
