package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv"
)

// TestSMTPUTF8Authentication: an SMTPUTF8 message with a UTF-8 sender
// and From goes through spf, dkim, dmarc and authres: SPF checks the
// domain (pass from loopback), DMARC parses the UTF-8 From and aligns
// with SPF, and Authentication-Results and Received-SPF stay parseable
// (python3-authres) with the ASCII forms.
func TestSMTPUTF8Authentication(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	s := start(t, fmt.Sprintf(`
[plugins]
plugins = ["spf", "dkim", "dmarc", "authres"]
[plugins.dkim]
timeout = "5s"
[dns]
servers = [%q]
`, dns), nil)
	msg := "From: \"Jürgen Müller\" <jürgen@example.test>\r\nTo: <björn@example.test>\r\nSubject: Grüße\r\n" +
		"Message-ID: <utf8-auth@example.test>\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHallo.\r\n"
	require.Empty(t, smtplib(t, s.addr, "jürgen@example.test", []string{"björn@example.test"}, msg, "SMTPUTF8"))
	m := s.waitMail("björn@example.test", 1)[0]
	ar := headerFields(m, "Authentication-Results")
	require.Len(t, ar, 1, m)
	assert.Contains(t, ar[0], "spf=pass smtp.mailfrom=@example.test")
	assert.Contains(t, ar[0], "dmarc=pass header.from=example.test")
	pythonAuthres(t, "Authentication-Results: "+ar[0])
	spf := headerFields(m, "Received-SPF")
	require.Len(t, spf, 1)
	assert.True(t, strings.HasPrefix(spf[0], "pass "), spf[0])
	assert.Contains(t, spf[0], `envelope-from="jürgen@example.test"`, "UTF-8 in a header field of an SMTPUTF8 message (RFC 6532)")
	checkWritten(t, m)
}
