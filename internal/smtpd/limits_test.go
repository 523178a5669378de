package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/elemta/elemta/registry"
)

func ms(n int) registry.Duration { return registry.Duration(time.Duration(n) * time.Millisecond) }

// dialFrom connects to addr from the local address from (127.0.0.x) and
// reads the greeting, returning its code.
func dialFrom(t *testing.T, addr, from string) (*textproto.Conn, int) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
	c := textproto.NewConn(nc)
	t.Cleanup(func() { c.Close() })
	code, _, err := c.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatalf("no greeting from %s: %v", addr, err)
	}
	return c, code
}

// expectCut reads until the server closes the connection and returns the
// last reply, which must be a 421 naming the limit.
func expectCut(t *testing.T, c *textproto.Conn, limit string) {
	t.Helper()
	var last string
	for {
		line, err := c.ReadLine()
		if err != nil {
			break
		}
		last = line
	}
	assert.True(t, strings.HasPrefix(last, "421 4."), "last reply %q", last)
	assert.Contains(t, last, limit)
}

func TestConnectionLimits(t *testing.T) {
	h := start(t, Config{Limits: Limits{MaxConnections: 4, MaxConnectionsPerClient: 2}})
	a1, code := dialFrom(t, h.addr, "127.0.0.1")
	require.Equal(t, 220, code)
	_, code = dialFrom(t, h.addr, "127.0.0.1")
	require.Equal(t, 220, code, "at the per-client limit")
	over, code := dialFrom(t, h.addr, "127.0.0.1")
	require.Equal(t, 421, code, "over the per-client limit")
	_, err := over.ReadLine()
	assert.ErrorIs(t, err, io.EOF, "refused connection is closed")

	_, code = dialFrom(t, h.addr, "127.0.0.2")
	require.Equal(t, 220, code, "another client is not counted with the first")
	_, code = dialFrom(t, h.addr, "127.0.0.4")
	require.Equal(t, 220, code, "at max_connections")
	_, code = dialFrom(t, h.addr, "127.0.0.5")
	require.Equal(t, 421, code, "over max_connections")

	// A slot comes back when a connection ends.
	require.NoError(t, a1.PrintfLine("QUIT"))
	_, _, err = a1.ReadResponse(221)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.srv.Stats().OpenConnections == 3 }, 5*time.Second, 10*time.Millisecond)
	c, code := dialFrom(t, h.addr, "127.0.0.1")
	require.Equal(t, 220, code, "after one left")
	converseOn(t, c, hello("a@example.org", "b@example.net"))
	assert.Equal(t, int64(2), h.srv.Stats().RefusedConnections)
}

// TestIdleFlood: 2,000 idle connections from one address hold only their
// per-client share; another client is served at once.
func TestIdleFlood(t *testing.T) {
	h := start(t, Config{})
	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	require.Eventually(t, func() bool { return h.srv.Stats().RefusedConnections == n-50 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, 50, h.srv.Stats().OpenConnections)
	c, code := dialFrom(t, h.addr, "127.0.0.2")
	require.Equal(t, 220, code)
	converseOn(t, c, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354},
		step{send: msg(""), raw: true, code: 250, text: "queued as"}))
}

func TestClientKey(t *testing.T) {
	tests := []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		assert.Equal(t, netip.MustParsePrefix(tt.b), keyOf(netip.MustParseAddr(tt.a)), tt.a)
	}
	assert.NotEqual(t, keyOf(netip.MustParseAddr("2001:db8:1:2::1")), keyOf(netip.MustParseAddr("2001:db8:1:3::1")))
}

func TestConnectionLimitFollowsFileLimit(t *testing.T) {
	l := DefaultLimits()
	assert.Equal(t, 1000, connectionLimit(l, 0), "unknown limit")
	assert.Equal(t, 1000, connectionLimit(l, 20000))
	assert.Equal(t, 872, connectionLimit(l, 1000))
	assert.Equal(t, 1, connectionLimit(l, 64), "never below one")
}

func TestHeloTimeoutAndCommandsBeforeHelo(t *testing.T) {
	h := start(t, Config{Limits: Limits{HeloTimeout: ms(300), MaxCommandsBeforeHelo: 3}})
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	expectCut(t, c, "helo_timeout")

	c, _ = dialFrom(t, h.addr, "127.0.0.1")
	for range 3 {
		require.NoError(t, c.PrintfLine("NOOP"))
		_, _, err := c.ReadResponse(250)
		require.NoError(t, err)
	}
	require.NoError(t, c.PrintfLine("NOOP"))
	expectCut(t, c, "too many commands before HELO")

	c, _ = dialFrom(t, h.addr, "127.0.0.1")
	for range 3 {
		require.NoError(t, c.PrintfLine("NOOP"))
		_, _, err := c.ReadResponse(250)
		require.NoError(t, err)
	}
	converseOn(t, c, hello("a@example.org", "b@example.net")) // at the limit, EHLO is still fine
	assert.Equal(t, int64(1), h.srv.Stats().TooManyCommandsBeforeHelo)
}

// TestSlowloris: a command line that is not complete within
// command_timeout of the last reply is never executed, however it is
// trickled; the connection is cut with a 421.
func TestSlowloris(t *testing.T) {
	h := start(t, Config{Limits: Limits{CommandTimeout: ms(400)}})
	for len(mailsRun) > 0 {
		<-mailsRun
	}
	t.Run("line without its end", func(t *testing.T) {
		c, _ := dialFrom(t, h.addr, "127.0.0.1")
		converseOn(t, c, []step{{send: "EHLO client.test", code: 250}})
		_, err := c.W.WriteString("MAIL FROM:<trickle@example.org>")
		require.NoError(t, err)
		require.NoError(t, c.W.Flush())
		expectCut(t, c, "command_timeout")
	})
	t.Run("one byte at a time", func(t *testing.T) {
		c, _ := dialFrom(t, h.addr, "127.0.0.1")
		converseOn(t, c, []step{{send: "EHLO client.test", code: 250}})
		line := "MAIL FROM:<trickle@example.org>\r\n"
		tick := time.NewTicker(50 * time.Millisecond) // the whole line takes 1.7 s
		defer tick.Stop()
		for i := 0; i < len(line); i++ {
			<-tick.C
			if _, err := c.W.WriteString(line[i : i+1]); err != nil || c.W.Flush() != nil {
				break // cut
			}
		}
		expectCut(t, c, "command_timeout")
	})
	select {
	case from := <-mailsRun:
		t.Fatalf("a partial MAIL command reached the plugins: %s", from)
	default:
	}
	// An ordinary pause shorter than the timeout is fine.
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{{send: "EHLO client.test", code: 250}, {send: "MAIL FROM:<trickle@example.org>", code: 250}})
	assert.Equal(t, "trickle@example.org", <-mailsRun)
	assert.GreaterOrEqual(t, h.srv.Stats().Timeouts, int64(2))
}

func TestSessionTimeout(t *testing.T) {
	h := start(t, Config{Limits: Limits{SessionTimeout: ms(800), CommandTimeout: ms(5000)}})
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{{send: "EHLO client.test", code: 250}})
	start := time.Now()
	var code int
	var text string
	for time.Since(start) < 5*time.Second {
		if c.PrintfLine("NOOP") != nil {
			break
		}
		if code, text, _ = c.ReadResponse(0); code != 250 {
			break
		}
		time.Sleep(100 * time.Millisecond) // a client that keeps the session alive
	}
	assert.Equal(t, 421, code)
	assert.Contains(t, text, "session_timeout")
	assert.Less(t, time.Since(start), 3*time.Second)
}

// TestDataRate: a DATA transfer is cut when it stalls for data_timeout or
// falls below min_data_rate; a steady sender above the rate gets through
// however long the transfer takes.
func TestDataRate(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 1 << 20, Limits: Limits{DataTimeout: ms(300), MinDataRate: 50_000}})
	// send writes the header, then size bytes of body lines in chunks of
	// chunk bytes every 50 ms, then the end of data, and returns the reply.
	send := func(t *testing.T, size, chunk int) *textproto.Conn {
		c, _ := dialFrom(t, h.addr, "127.0.0.1")
		converseOn(t, c, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354}))
		line := strings.Repeat("x", 98) + "\r\n"
		body := "Subject: slow\r\n\r\n" + strings.Repeat(line, size/len(line)) + ".\r\n"
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for len(body) > 0 {
			<-tick.C
			n := min(chunk, len(body))
			if _, err := c.W.WriteString(body[:n]); err != nil || c.W.Flush() != nil {
				break
			}
			body = body[n:]
		}
		return c
	}
	t.Run("steady above the rate", func(t *testing.T) {
		before := len(h.spool.List())
		c := send(t, 150_000, 5_000) // 100 KB/s for 1.5 s: five times data_timeout
		code, text, err := c.ReadResponse(250)
		require.NoError(t, err, "%d %s", code, text)
		assert.Len(t, h.spool.List(), before+1)
	})
	t.Run("trickle below the rate", func(t *testing.T) {
		before := len(h.spool.List())
		c := send(t, 150_000, 500) // 10 KB/s
		expectCut(t, c, "min_data_rate")
		assert.Len(t, h.spool.List(), before)
	})
	t.Run("stall", func(t *testing.T) {
		c, _ := dialFrom(t, h.addr, "127.0.0.1")
		converseOn(t, c, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354}))
		// 5 KB at once earn 100 ms of credit at min_data_rate, so the idle
		// deadline (data_timeout after the last read) comes first.
		require.NoError(t, c.PrintfLine("Subject: stalls\r\n\r\n%s", strings.Repeat(strings.Repeat("s", 98)+"\r\n", 50)))
		expectCut(t, c, "data_timeout")
	})
}

func TestErrorLimit(t *testing.T) {
	h := start(t, Config{Limits: Limits{MaxErrors: 5, SoftErrorLimit: 3, ErrorDelay: ms(1)}})
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{{send: "EHLO client.test", code: 250}})
	// go-smtp closes by itself after four unknown commands; refusals by a
	// plugin are what max_errors counts besides.
	blocked := step{send: "MAIL FROM:<blocked@example.org>", code: 550}
	converseOn(t, c, []step{blocked, blocked, blocked, blocked, {send: "NOOP", code: 250}}) // four errors: still served
	require.NoError(t, c.PrintfLine("MAIL FROM:<blocked@example.org>"))
	expectCut(t, c, "too many errors")
	assert.Equal(t, int64(1), h.srv.Stats().TooManyErrors)
}

// TestErrorLimitUnderTLS: with the replies encrypted, the refusals the
// session returns are counted, and the one too many is a 421.
func TestErrorLimitUnderTLS(t *testing.T) {
	h := start(t, Config{TLS: selfSigned(t), LocalDomains: []string{"example.net"}, Limits: Limits{MaxErrors: 3, SoftErrorLimit: 3}})
	c, err := smtp.Dial(h.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.StartTLS(&tls.Config{InsecureSkipVerify: true}))
	require.NoError(t, c.Mail("a@example.org"))
	for i := range 2 {
		err := c.Rcpt(fmt.Sprintf("r%d@elsewhere.test", i))
		require.ErrorContains(t, err, "Relaying denied")
	}
	require.NoError(t, c.Rcpt("b@example.net"), "two errors: still served")
	err = c.Rcpt("r3@elsewhere.test")
	require.ErrorContains(t, err, "421")
	assert.ErrorContains(t, err, "too many errors")
	assert.Error(t, c.Noop(), "closed after the 421")
}

// TestConnectPhaseBeforeGreeting: the connect phase runs before the 220; a
// refusal replaces the greeting and closes the connection, and the plugins
// are told the session ended.
func TestConnectPhaseBeforeGreeting(t *testing.T) {
	h := start(t, Config{})
	for len(sessionsEnded) > 0 {
		<-sessionsEnded
	}
	c, code := dialFrom(t, h.addr, "127.0.0.3") // the test plugin refuses it at connect
	assert.Equal(t, 554, code)
	_, err := c.ReadLine()
	assert.ErrorIs(t, err, io.EOF)
	select {
	case ip := <-sessionsEnded:
		assert.Equal(t, "127.0.0.3", ip)
	case <-time.After(5 * time.Second):
		t.Fatal("EndSession not called for a connection refused at connect")
	}
	// A client that connects and leaves without a word ends its session too.
	nc, err := net.Dial("tcp", h.addr)
	require.NoError(t, err)
	_, err = bufio.NewReader(nc).ReadString('\n')
	require.NoError(t, err)
	nc.Close()
	select {
	case ip := <-sessionsEnded:
		assert.Equal(t, "127.0.0.1", ip)
	case <-time.After(5 * time.Second):
		t.Fatal("EndSession not called for a client that never said EHLO")
	}
}

func authPlain(user, pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
}

func TestAuthLimits(t *testing.T) {
	cfg := Config{Credentials: creds(t), AllowPlaintextAuth: true,
		Limits: Limits{MaxAuthFailures: 3, AuthFailuresPerClient: 5, AuthFailuresPerUser: 7, AuthFailureDelay: ms(1), AuthFailureDelayMax: ms(4)}}
	h := start(t, cfg)
	ehlo := step{send: "EHLO client.test", code: 250}
	bad := func(user string) step { return step{send: authPlain(user, "wrong"), code: 535} }

	// Per connection: two failures, then the right password still works.
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{ehlo, bad("alice"), bad("alice"), {send: authPlain("alice", "s3cret"), code: 235}})
	// The third failure closes the connection (failures 3, 4, 5 of 127.0.0.1).
	c, _ = dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{ehlo, bad("mallory"), bad("mallory")})
	require.NoError(t, c.PrintfLine("%s", authPlain("mallory", "wrong")))
	expectCut(t, c, "Too many authentication failures")

	// Per client, across connections: 127.0.0.1 used its five; even the
	// right password gets a 454 now, without a check.
	c, _ = dialFrom(t, h.addr, "127.0.0.1")
	converseOn(t, c, []step{ehlo, {send: authPlain("alice", "s3cret"), code: 454, text: "4.7.0 Too many authentication failures"}})
	// Another client is not blocked...
	c, _ = dialFrom(t, h.addr, "127.0.0.2")
	converseOn(t, c, []step{ehlo, {send: authPlain("alice", "s3cret"), code: 235}})
	// ...until the user has used up its failures (alice: 2 so far, 7 allowed).
	for i := range 2 {
		c, _ = dialFrom(t, h.addr, fmt.Sprintf("127.0.0.%d", 10+i))
		converseOn(t, c, []step{ehlo, bad("alice"), bad("alice")})
	}
	c, _ = dialFrom(t, h.addr, "127.0.0.20")
	converseOn(t, c, []step{ehlo, bad("alice"), {send: authPlain("alice", "s3cret"), code: 454}})
	st := h.srv.Stats()
	assert.Equal(t, int64(10), st.AuthFailures)
	assert.Equal(t, int64(2), st.AuthThrottled)
}

func TestAuthThrottleDelay(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := DefaultLimits()
	l.AuthFailureDelay, l.AuthFailureDelayMax, l.AuthFailuresPerClient = registry.Duration(time.Second), registry.Duration(5*time.Second), 100
	a := newAuthThrottle(l, func() time.Time { return now })
	client := keyOf(netip.MustParseAddr("192.0.2.1"))
	var got []time.Duration
	for range 5 {
		got = append(got, a.fail(client, "u"))
	}
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}, got)
	now = now.Add(l.AuthFailureWindow.D())
	assert.Equal(t, time.Second, a.fail(client, "u"), "the window expired")
	assert.False(t, a.blocked(client, "u"))
}

// TestDecoyCost: an unknown user costs a bcrypt comparison of the file's
// cost, not bcrypt's minimum, so the time taken does not tell users apart.
func TestDecoyCost(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), 8)
	require.NoError(t, err)
	c, err := ParseCredentials("test", strings.NewReader("a:"+string(hash)+"\n"))
	require.NoError(t, err)
	cost, err := bcrypt.Cost(c.decoy)
	require.NoError(t, err)
	assert.Equal(t, 8, cost)
	assert.False(t, c.Check("nobody", "pw"))
}

// emfileListener fails its first Accept with EMFILE, as a listener does
// when the process is out of file descriptors.
type emfileListener struct {
	net.Listener
	failed bool
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestOutOfFileDescriptors: at EMFILE the spare descriptor makes room to
// answer one waiting client 421 instead of leaving it in the listen queue;
// the next client is served.
func TestOutOfFileDescriptors(t *testing.T) {
	h := startOn(t, Config{}, func(l net.Listener) net.Listener { return &emfileListener{Listener: l} })
	c, code := dialFrom(t, h.addr, "127.0.0.1")
	assert.Equal(t, 421, code)
	_, err := c.ReadLine()
	assert.ErrorIs(t, err, io.EOF)
	c, code = dialFrom(t, h.addr, "127.0.0.1")
	require.Equal(t, 220, code)
	converseOn(t, c, hello("a@example.org", "b@example.net"))
	assert.Equal(t, int64(1), h.srv.Stats().RefusedConnections)
}

func TestScrubReply(t *testing.T) {
	tests := []struct{ in, want string }{
		{"250 2.0.0 OK\r\n", "250 2.0.0 OK\r\n"},
		{"250-a\r\n250 b\r\n", "250-a\r\n250 b\r\n"},
		{"500 5.5.2 Syntax errors, 00\r0 command unrecognized\r\n", "500 5.5.2 Syntax errors, 00?0 command unrecognized\r\n"},
		{"500 x\x1b[31m\ty\x7f\r\n", "500 x?[31m?y?\r\n"},
		{"500 a\nb\r\n", "500 a?b\r\n"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, string(scrubReply([]byte(tt.in))), "%q", tt.in)
	}
}

// TestRepliesCarryNoControlCharacters: an unknown command echoed by
// go-smtp comes back without the client's bare CR.
func TestRepliesCarryNoControlCharacters(t *testing.T) {
	h := start(t, Config{})
	c, _ := dialFrom(t, h.addr, "127.0.0.1")
	_, err := c.W.WriteString("EHLO client.test\r\nA\rb\x1b\r\n")
	require.NoError(t, err)
	require.NoError(t, c.W.Flush())
	_, _, err = c.ReadResponse(250)
	require.NoError(t, err)
	line, err := c.R.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "500 5.5.2 Syntax errors, A?B? command unrecognized\r\n", line)
}

// TestLimitsDefaults: a Config naming some limits gets the defaults for the
// others; a zero delay stays zero (no delay), so `error_delay = 0` in the
// [server] table means what it says.
func TestLimitsDefaults(t *testing.T) {
	l := Limits{MaxConnections: 7}.withDefaults()
	d := DefaultLimits()
	assert.Equal(t, 7, l.MaxConnections)
	assert.Equal(t, d.CommandTimeout, l.CommandTimeout)
	assert.Equal(t, d.AuthFailureDelayMax, l.AuthFailureDelayMax)
	assert.Zero(t, l.ErrorDelay)
	assert.Zero(t, l.AuthFailureDelay)
	assert.Equal(t, d, d.withDefaults(), "the defaults are a fixed point")
	require.NoError(t, d.Validate())
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Limits)
		want string
	}{
		{"zero connections", func(l *Limits) { l.MaxConnections = 0 }, "max_connections must be positive"},
		{"per client over total", func(l *Limits) { l.MaxConnectionsPerClient = 2000 }, "max_connections_per_client (2000) is more than max_connections (1000)"},
		{"negative rate", func(l *Limits) { l.MinDataRate = -1 }, "min_data_rate must be positive"},
		{"soft over hard", func(l *Limits) { l.SoftErrorLimit = 30 }, "soft_error_limit (30) is more than max_errors (20)"},
		{"delay over max", func(l *Limits) { l.AuthFailureDelay = registry.Duration(time.Minute) }, "auth_failure_delay (1m0s) must be between 0"},
		{"negative error delay", func(l *Limits) { l.ErrorDelay = -1 }, "error_delay must not be negative"},
		{"zero timeout", func(l *Limits) { l.CommandTimeout = 0 }, "command_timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultLimits()
			tt.edit(&l)
			assert.ErrorContains(t, l.Validate(), tt.want)
		})
	}
}
