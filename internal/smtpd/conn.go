// The connection guard: every client connection is a *clientConn between
// go-smtp and the socket. It enforces the Limits that go-smtp cannot:
//
//   - deadlines it owns (go-smtp's ReadTimeout stays 0): time to HELO, the
//     wait for each whole command line after a reply, DATA's idle timeout
//     and minimum rate, the whole session;
//   - once a deadline passes the connection is cut for good: a 421, the
//     socket closed, every later read fails. go-smtp reads commands with
//     bufio's ReadLine, which returns a partial line without its error, so
//     a trickled line would otherwise be executed and a new deadline
//     started; the session's handlers refuse to run on a cut connection,
//     so a partial line never reaches a plugin;
//   - the connect phase of pre-reception, run before the 220 greeting;
//   - commands before HELO and error replies, counted from the replies it
//     sees (while the connection is plaintext; under TLS the session
//     counts the refusals it returns itself).

package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// errCut is what reads and writes of a cut connection return. It wraps
// net.ErrClosed so go-smtp ends the session quietly.
var errCut = fmt.Errorf("smtpd: connection cut: %w", net.ErrClosed)

type connPhase int

const (
	phaseCommand connPhase = iota
	phaseData
)

// clientConn is one client connection.
type clientConn struct {
	net.Conn
	srv   *Server
	key   clientKey
	start time.Time
	id    string
	ip    netip.Addr
	log   *slog.Logger
	once  sync.Once
	done  chan struct{} // closed when the connection is cut or closed

	// Set by the connect phase (before the greeting, on the connection's
	// goroutine), read by every session of the connection.
	connected      bool              // the connect phase ran: the plugins are owed an EndSession
	plugins        *pluginhost.Lease // the manager of the session phases, from connect to EndSession
	connQuarantine string
	connAdds       []registry.Field
	connRemoves    []registry.Removal
	authFailures   int               // on the connection's goroutine only
	lastEnv        registry.Envelope // of the last session, for EndSession

	mu         sync.Mutex
	phase      connPhase
	lastReply  time.Time // command phase: when the server last answered
	dataStart  time.Time
	lastRead   time.Time
	dataBytes  int64
	helo       bool // a HELO/EHLO opened a session
	greeted    bool
	tls        bool     // STARTTLS accepted: the bytes are opaque from here on
	beforeHelo int      // commands answered before HELO
	errs       int      // 4xx/5xx replies
	closeAfter *closing // set: cut the connection after the next reply
	cut        string   // why the connection was cut; "" while it is alive
}

// closing is a cut the guard makes after the reply being written.
type closing struct {
	why   string
	reply *smtp.SMTPError // nil: the reply itself said so
}

// deadline returns when the current read must have returned, and the
// limit that sets it.
func (c *clientConn) deadline() (time.Time, string) {
	l := &c.srv.limits
	at, why := c.start.Add(l.SessionTimeout.D()), "session_timeout"
	earlier := func(t time.Time, name string) {
		if t.Before(at) {
			at, why = t, name
		}
	}
	if !c.helo {
		earlier(c.start.Add(l.HeloTimeout.D()), "helo_timeout")
	}
	switch c.phase {
	case phaseCommand:
		earlier(c.lastReply.Add(l.CommandTimeout.D()), "command_timeout")
	case phaseData:
		earlier(c.lastRead.Add(l.DataTimeout.D()), "data_timeout")
		credit := time.Duration(float64(c.dataBytes) / float64(l.MinDataRate) * float64(time.Second))
		earlier(c.dataStart.Add(l.DataTimeout.D()+credit), "min_data_rate")
	}
	return at, why
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.cut != "" {
		c.mu.Unlock()
		return 0, errCut
	}
	at, why := c.deadline()
	c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(at); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	now := c.srv.now()
	c.mu.Lock()
	c.lastRead = now
	if c.phase == phaseData {
		c.dataBytes += int64(n)
	}
	c.mu.Unlock()
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.srv.counters.timeouts.Add(1)
		c.cutWith(why, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: c.srv.cfg.Hostname + " Error: timeout exceeded (" + why + ")"})
		return n, errCut
	}
	return n, err
}

// SetReadDeadline and SetDeadline ignore read deadlines from above (go-smtp,
// crypto/tls): the guard owns them.
func (c *clientConn) SetReadDeadline(time.Time) error { return nil }
func (c *clientConn) SetDeadline(t time.Time) error   { return c.Conn.SetWriteDeadline(t) }

func (c *clientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.cut != "" {
		c.mu.Unlock()
		return 0, errCut
	}
	if !c.greeted { // go-smtp's first write is the 220 greeting
		c.greeted = true
		c.mu.Unlock()
		if refusal := c.srv.be.connect(c); refusal != nil {
			c.cutWith("refused at connect", refusal)
			return 0, errCut
		}
		c.mu.Lock()
		c.lastReply = c.srv.now()
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	opaque := c.tls
	c.lastReply = c.srv.now()
	c.mu.Unlock()

	var after *smtp.SMTPError
	var why string
	out := p
	if !opaque {
		out = sequenceReply(scrubReply(p))
		after, why = c.inspectReply(out)
	}
	n, err := c.Conn.Write(out)
	if err == nil {
		n = len(p)
	}
	c.mu.Lock()
	if after == nil && c.closeAfter != nil {
		after, why = c.closeAfter.reply, c.closeAfter.why
	}
	c.mu.Unlock()
	if why != "" {
		c.cutWith(why, after)
	}
	return n, err
}

// inspectReply counts a plaintext reply: a command before HELO, an error,
// the 220 that starts TLS. It delays error replies past SoftErrorLimit and
// returns the 421 to send after it when a limit is reached.
func (c *clientConn) inspectReply(p []byte) (*smtp.SMTPError, string) {
	code := replyCode(p)
	l := &c.srv.limits
	if class := code / 100; class > 0 && class < len(c.srv.counters.replies) {
		c.srv.counters.replies[class].Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if code == 220 { // only STARTTLS answers 220 after the greeting
		c.srv.counters.startTLS.Add(1)
		c.tls = true
		return nil, ""
	}
	if !c.helo {
		c.beforeHelo++
		if c.beforeHelo > l.MaxCommandsBeforeHelo {
			c.srv.counters.beforeHelo.Add(1)
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
				Message: c.srv.cfg.Hostname + " Error: too many commands before HELO/EHLO"}, "max_commands_before_helo"
		}
	}
	if (code/100 == 4 || code/100 == 5) && !bytes.Contains(p, tooManyRecipients) {
		return c.noteErrorLocked()
	}
	return nil, ""
}

// tooManyRecipients starts go-smtp's reply to a RCPT over max_recipients.
// It is no error of the client's: RFC 5321 section 4.5.3.1.8 has a client
// send the rest in a later transaction.
var tooManyRecipients = []byte("452 4.5.3 ")

// noteError counts an error reply the guard cannot see (under TLS) and
// returns the 421 to answer instead when it was one too many; the
// connection is then closed after that reply.
func (c *clientConn) noteError() *smtp.SMTPError {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tls {
		return nil
	}
	reply, why := c.noteErrorLocked()
	if reply != nil {
		c.closeAfter = &closing{why: why}
	}
	return reply
}

func (c *clientConn) noteErrorLocked() (*smtp.SMTPError, string) {
	l := &c.srv.limits
	c.errs++
	if c.errs >= l.MaxErrors {
		c.srv.counters.errors.Add(1)
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: c.srv.cfg.Hostname + " Error: too many errors"}, "max_errors"
	}
	if c.errs > l.SoftErrorLimit && l.ErrorDelay > 0 {
		c.mu.Unlock()
		c.pause(l.ErrorDelay.D())
		c.mu.Lock()
	}
	return nil, ""
}

// pause waits d or until the connection is cut or closed.
func (c *clientConn) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.done:
	}
}

// closeAfterReply makes the connection close after the next reply the
// server writes.
func (c *clientConn) closeAfterReply(why string) {
	c.mu.Lock()
	c.closeAfter = &closing{why: why}
	c.mu.Unlock()
}

// scrubReply returns p with every control character that is not part of a
// CRLF line end replaced by '?'. go-smtp echoes an unknown command into its
// 500 reply, so a client could otherwise put a bare CR (or ESC) into the
// replies and the logs of whoever reads them. p itself when it is clean.
func scrubReply(p []byte) []byte {
	bad := func(i int) bool {
		b := p[i]
		switch {
		case b == '\r':
			return i+1 >= len(p) || p[i+1] != '\n'
		case b == '\n':
			return i == 0 || p[i-1] != '\r'
		}
		return b < 0x20 || b == 0x7f
	}
	for i := range p {
		if bad(i) {
			out := bytes.Clone(p)
			for j := i; j < len(out); j++ {
				if bad(j) {
					out[j] = '?'
				}
			}
			return out
		}
	}
	return p
}

// replyCode returns the code of the last line of a reply, or 0.
func replyCode(p []byte) int {
	p = bytes.TrimRight(p, "\r\n")
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		p = p[i+1:]
	}
	if len(p) < 3 {
		return 0
	}
	code := 0
	for _, b := range p[:3] {
		if b < '0' || b > '9' {
			return 0
		}
		code = code*10 + int(b-'0')
	}
	return code
}

// cutWith ends the connection for good: reply (plaintext only: under TLS
// it cannot be written) and close. Later reads and writes fail with errCut.
func (c *clientConn) cutWith(why string, reply *smtp.SMTPError) {
	c.mu.Lock()
	if c.cut != "" {
		c.mu.Unlock()
		return
	}
	c.cut = why
	opaque := c.tls
	c.mu.Unlock()
	close(c.done)
	if reply != nil && !opaque {
		_ = c.Conn.SetWriteDeadline(c.srv.now().Add(time.Second))
		fmt.Fprintf(c.Conn, "%d %d.%d.%d %s\r\n", reply.Code, reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2], reply.Message)
	}
	c.log.Info("connection cut", "reason", why)
	c.Conn.Close()
}

// alive returns nil while the connection may run commands, and the error
// a session handler returns once it was cut.
func (c *clientConn) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut != "" {
		return errCutReply
	}
	return nil
}

var errCutReply = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection closed"}

// heloDone records that a HELO/EHLO opened a session.
func (c *clientConn) heloDone() {
	c.mu.Lock()
	c.helo = true
	c.mu.Unlock()
}

// beginData and endData bracket a DATA or BDAT transfer.
func (c *clientConn) beginData() {
	c.mu.Lock()
	now := c.srv.now()
	c.phase, c.dataStart, c.lastRead, c.dataBytes = phaseData, now, now, 0
	c.mu.Unlock()
}

func (c *clientConn) endData() {
	c.mu.Lock()
	c.phase, c.lastReply = phaseCommand, c.srv.now()
	c.mu.Unlock()
}

// Close is go-smtp's (or crypto/tls's) close of the connection: the end
// of the session for the plugins and for the limits.
func (c *clientConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		if c.cut == "" {
			c.cut = "closed"
			close(c.done)
		}
		c.mu.Unlock()
		c.srv.be.endSession(c)
		c.srv.conns.release(c)
	})
	return c.Conn.Close()
}

// connOf finds the guard under a go-smtp connection (crypto/tls wraps it
// after STARTTLS).
func connOf(nc net.Conn) *clientConn {
	for {
		switch c := nc.(type) {
		case *clientConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}
