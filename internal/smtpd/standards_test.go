package smtpd

import (
	"encoding/base64"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/mime7bit"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pkg/headerfold"
)

// dial connects and reads the greeting.
func dial(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	return c
}

// onlyEntry returns the one spooled entry.
func onlyEntry(t *testing.T, h *harness) *spool.Entry {
	t.Helper()
	items := h.spool.List()
	require.Len(t, items, 1)
	e, err := h.spool.Get(items[0].ID)
	require.NoError(t, err)
	return e
}

func TestAddressLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":        "[127.0.0.1]",
		"::1":              "[IPv6:::1]",
		"2001:db8::1":      "[IPv6:2001:db8::1]",
		"::ffff:192.0.2.1": "[192.0.2.1]",
		"fe80::1%eth0":     "[IPv6:fe80::1]",
	} {
		assert.Equal(t, want, addressLiteral(netip.MustParseAddr(in)), in)
	}
	assert.Equal(t, "[unknown]", addressLiteral(netip.Addr{}))
}

// TestReceivedFolded: the Received field names the client by its address
// literal and is folded, whatever the length of the HELO name and the
// recipient.
func TestReceivedFolded(t *testing.T) {
	h := start(t, Config{})
	helo := strings.Repeat("h", 200) + ".test"
	rcpt := strings.Repeat("r", 200) + "@example.net"
	converse(t, h.addr, []step{{send: "EHLO " + helo, code: 250}, {send: "MAIL FROM:<a@example.org>", code: 250},
		{send: "RCPT TO:<" + rcpt + ">", code: 250}, {send: "DATA", code: 354}, {send: msg(""), raw: true, code: 250}})
	e := onlyEntry(t, h)
	raw := string(e.Message)
	at := strings.Index(raw, "\r\nReceived: ") // after the stages' fields
	require.Positive(t, at, raw)
	raw = raw[at+2:]
	end := strings.LastIndex(raw[:strings.Index(raw, "\r\n\r\n")], "\r\nFrom: a@example.org")
	require.Positive(t, end)
	value := strings.TrimPrefix(raw[:end], "Received: ")
	assert.Equal(t, headerfold.Value("Received", headerfold.Unfold(value), headerfold.CRLF), value, "folded")
	for _, line := range strings.Split(raw[:end], "\r\n") {
		require.LessOrEqual(t, len(line), headerfold.MaxLine)
	}
	assert.Contains(t, headerfold.Unfold(value), "from "+helo+" ([127.0.0.1]) by mx.test (Elemta) with ESMTP id "+e.ID+" for <"+rcpt+">; ")
}

func TestEmptyMessageRefused(t *testing.T) {
	h := start(t, Config{})
	converse(t, h.addr, append(hello("a@example.org", "b@example.net"),
		step{send: "BDAT 0 LAST", code: 554, text: "Empty message"},
		step{send: "MAIL FROM:<a@example.org>", code: 250}, step{send: "RCPT TO:<b@example.net>", code: 250},
		step{send: "DATA", code: 354}, step{send: ".\r\n", raw: true, code: 554, text: "Empty message"},
		// The connection goes on: a real message is queued.
		step{send: "MAIL FROM:<a@example.org>", code: 250}, step{send: "RCPT TO:<b@example.net>", code: 250},
		step{send: "BDAT 9 LAST\r\nSubject: \r\n", raw: true, code: 250}))
	assert.Len(t, h.spool.List(), 1)
}

// TestRecipientNamesNoMaildir: a local recipient whose Maildir could not
// be named is refused at RCPT (not accepted and bounced); with a
// smarthost a remote one is the smarthost's to judge.
func TestRecipientNamesNoMaildir(t *testing.T) {
	long := strings.Repeat("l", 256) + "@example.org"
	h := start(t, Config{LocalDomains: []string{"example.org"}})
	converse(t, h.addr, []step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<a@example.net>", code: 250},
		{send: "RCPT TO:<" + strings.Repeat("l", 255) + "@example.org>", code: 250}, // the boundary
		{send: "RCPT TO:<" + long + ">", code: 553, text: "Bad recipient address syntax"},
		{send: `RCPT TO:<"a b"@example.org>`, code: 553},
		{send: "RCPT TO:<.hidden@example.org>", code: 553},
		{send: "RCPT TO:<Alice@example.org>", code: 250},
		{send: "RCPT TO:<alice@EXAMPLE.org>", code: 250}, // the same Maildir: one copy
		{send: "DATA", code: 354}, {send: msg(""), raw: true, code: 250}})
	e := onlyEntry(t, h)
	assert.Equal(t, []string{strings.Repeat("l", 255) + "@example.org", "Alice@example.org"}, e.Envelope.RcptTo)
}

// TestSMTPUTF8: offered; a UTF-8 address only in an SMTPUTF8 transaction
// (553 5.6.7 otherwise); with StrictUTF8Headers a UTF-8 header only in one
// (554 5.6.7).
func TestSMTPUTF8(t *testing.T) {
	h := start(t, Config{StrictUTF8Headers: true})
	c := dial(t, h.addr)
	_ = c.PrintfLine("EHLO client.test")
	_, ehlo, err := c.ReadResponse(250)
	require.NoError(t, err)
	assert.Contains(t, ehlo, "SMTPUTF8")
	assert.Contains(t, ehlo, "8BITMIME")
	assert.NotContains(t, ehlo, "BINARYMIME")
	utf8Msg := "From: Jürgen <jürgen@example.org>\r\nTo: b@example.net\r\nSubject: Grüße\r\n\r\nHallo.\r\n.\r\n"
	converseOn(t, c, []step{
		{send: "MAIL FROM:<jürgen@example.org>", code: 553, text: "SMTPUTF8"},
		{send: "MAIL FROM:<a@example.org>", code: 250},
		{send: "RCPT TO:<jürgen@example.net>", code: 553, text: "SMTPUTF8"},
		{send: "RCPT TO:<b@example.net>", code: 250},
		{send: "DATA", code: 354}, {send: utf8Msg, raw: true, code: 554, text: "SMTPUTF8"},
		{send: "MAIL FROM:<\xff@example.org> SMTPUTF8", code: 553},
		{send: "MAIL FROM:<jürgen@example.org> SMTPUTF8 BODY=8BITMIME", code: 250},
		{send: "RCPT TO:<björn@example.net>", code: 250},
		{send: "DATA", code: 354}, {send: utf8Msg, raw: true, code: 250},
	})
	e := onlyEntry(t, h)
	assert.True(t, e.Envelope.SMTPUTF8)
	assert.Equal(t, "8BITMIME", e.Envelope.Body)
	assert.Equal(t, "jürgen@example.org", e.Envelope.MailFrom)
	assert.Contains(t, headerfold.Unfold(string(e.Message)), "with UTF8SMTP id "+e.ID+" for <björn@example.net>;")
}

// TestEightBitHeadersWithoutSMTPUTF8: by default a header section with
// 8-bit bytes (UTF-8 or not) in a transaction without SMTPUTF8 is accepted
// and spooled byte for byte, as Postfix and Exim do.
func TestEightBitHeadersWithoutSMTPUTF8(t *testing.T) {
	h := start(t, Config{})
	subject := "Subject: Gr\xc3\xbc\xc3\x9fe, caf\xe9\r\n" // UTF-8, then a Latin-1 byte
	converse(t, h.addr, []step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<a@example.org>", code: 250},
		{send: "RCPT TO:<b@example.net>", code: 250}, {send: "DATA", code: 354},
		{send: subject + "\r\nx\r\n.\r\n", raw: true, code: 250}})
	e := onlyEntry(t, h)
	assert.False(t, e.Envelope.SMTPUTF8)
	assert.Contains(t, string(e.Message), subject)
}

func TestSMTPUTF8InvalidHeader(t *testing.T) {
	h := start(t, Config{})
	converse(t, h.addr, []step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<a@example.org> SMTPUTF8", code: 250},
		{send: "RCPT TO:<b@example.net>", code: 250}, {send: "DATA", code: 354},
		{send: "Subject: \xff\xfe\r\n\r\nx\r\n.\r\n", raw: true, code: 554, text: "not valid UTF-8"}})
	assert.Empty(t, h.spool.List())
}

// TestSubmissionDateMessageID: an authenticated client's message without
// Date and Message-ID gets both, after our Received; one with them keeps
// its own; an unauthenticated one gets none; the key off adds none. (That
// DKIM signs them: internal/e2e.)
func TestSubmissionDateMessageID(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00s3cret"))
	send := func(t *testing.T, add bool, login bool, body string) string {
		h := start(t, Config{Credentials: creds(t), AllowPlaintextAuth: true, AddDateMessageID: add})
		steps := []step{{send: "EHLO client.test", code: 250}}
		if login {
			steps = append(steps, step{send: "AUTH PLAIN " + auth, code: 235})
		}
		steps = append(steps, step{send: "MAIL FROM:<alice@example.org>", code: 250}, step{send: "RCPT TO:<b@example.net>", code: 250},
			step{send: "DATA", code: 354}, step{send: body + "\r\n.\r\n", raw: true, code: 250})
		converse(t, h.addr, steps)
		return string(onlyEntry(t, h).Message)
	}
	bare := "Subject: no date\r\n\r\nhi"
	got := send(t, true, true, bare)
	assert.Regexp(t, `\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n`, got)
	assert.Regexp(t, `\r\nMessage-ID: <[0-9a-f]+@mx\.test>\r\n`, got)
	assert.Less(t, strings.Index(got, "Received:"), strings.Index(got, "Date:"), "after our Received")

	own := send(t, true, true, "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@example.org>\r\n\r\nhi")
	assert.Equal(t, 1, strings.Count(own, "Date:"))
	assert.Equal(t, 1, strings.Count(own, "Message-ID:"))

	assert.NotContains(t, send(t, true, false, bare), "Date:", "only submissions")
	assert.NotContains(t, send(t, false, true, bare), "Message-ID:", "the key off")
}

// TestDowngradeForSmarthost: with a smarthost, an 8-bit message with a
// recipient for it is spooled as 7-bit (before the stages run, so a
// signature covers what is sent); one for local recipients only, or with
// the key off, is spooled as it came.
func TestDowngradeForSmarthost(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00s3cret"))
	body := "From: alice@example.org\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
	for _, tt := range []struct {
		name     string
		rcpt     string
		on       bool
		want7Bit bool
	}{
		{"for the smarthost", "b@remote.test", true, true},
		{"local only", "b@example.org", true, false},
		{"key off", "b@remote.test", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Config{Credentials: creds(t), AllowPlaintextAuth: true, LocalDomains: []string{"example.org"},
				RelayAuthenticated: true, Downgrade8Bit: tt.on})
			converse(t, h.addr, []step{{send: "EHLO client.test", code: 250}, {send: "AUTH PLAIN " + auth, code: 235},
				{send: "MAIL FROM:<alice@example.org> BODY=8BITMIME", code: 250}, {send: "RCPT TO:<" + tt.rcpt + ">", code: 250},
				{send: "DATA", code: 354}, {send: body + ".\r\n", raw: true, code: 250}})
			e := onlyEntry(t, h)
			assert.Equal(t, tt.want7Bit, !mime7bit.Needs(e.Message), string(e.Message))
			if tt.want7Bit {
				assert.Contains(t, string(e.Message), "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n")
				assert.Equal(t, "7BIT", e.Envelope.Body)
			}
		})
	}
}
