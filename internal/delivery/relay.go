package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/elemta/elemta/internal/mime7bit"
	"github.com/elemta/elemta/internal/spool"
)

// Relay is a smarthost that takes every message instead of the local
// Maildirs.
type Relay struct {
	// Addr is host:port.
	Addr string
	// StartTLS requires STARTTLS, with TLS (nil: verify the certificate
	// against Addr's host).
	StartTLS bool
	TLS      *tls.Config
	// Timeouts bound each phase of the SMTP conversation.
	Timeouts Timeouts
}

// Timeouts are the client timeouts of RFC 5321 §4.5.3.2, plus the TCP
// connect. Each bounds one wait for the smarthost; a timeout defers the
// relayed recipients (451 4.4.2; 4.4.1 for the connect), retried with
// backoff. Zero fields get
// DefaultTimeouts' value.
type Timeouts struct {
	// Connect bounds the TCP connect (default 30 s).
	Connect time.Duration
	// Greeting bounds the 220 greeting, and EHLO and STARTTLS (default
	// 5 min).
	Greeting time.Duration
	// Mail bounds the reply to MAIL, and to QUIT (default 5 min).
	Mail time.Duration
	// Rcpt bounds the reply to each RCPT (default 5 min).
	Rcpt time.Duration
	// DataInit bounds the 354 reply to DATA (default 2 min).
	DataInit time.Duration
	// DataBlock bounds each write of the message, 64 KiB at most (default
	// 3 min).
	DataBlock time.Duration
	// DataTerm bounds the reply to the final "." (default 10 min).
	DataTerm time.Duration
}

// DefaultTimeouts are RFC 5321 §4.5.3.2's values, with a 30 s connect.
func DefaultTimeouts() Timeouts {
	return Timeouts{Connect: 30 * time.Second, Greeting: 5 * time.Minute, Mail: 5 * time.Minute, Rcpt: 5 * time.Minute,
		DataInit: 2 * time.Minute, DataBlock: 3 * time.Minute, DataTerm: 10 * time.Minute}
}

// withDefaults fills t's zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, p := range []struct{ v, def *time.Duration }{
		{&t.Connect, &d.Connect}, {&t.Greeting, &d.Greeting}, {&t.Mail, &d.Mail}, {&t.Rcpt, &d.Rcpt},
		{&t.DataInit, &d.DataInit}, {&t.DataBlock, &d.DataBlock}, {&t.DataTerm, &d.DataTerm},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	return t
}

// dataChunk is how much of the message one DataBlock timeout covers.
const dataChunk = 64 << 10

// errAborted marks an attempt cut short because its context ended (the
// shutdown deadline): it did not happen, nothing about it is recorded.
var errAborted = errors.New("delivery cancelled")

// phaseError is a failure while waiting for the smarthost in one phase.
type phaseError struct {
	addr, phase string
	timeout     time.Duration
	err         error
}

func (e *phaseError) Error() string {
	var ne net.Error
	if errors.Is(e.err, os.ErrDeadlineExceeded) || errors.As(e.err, &ne) && ne.Timeout() {
		return fmt.Sprintf("relay %s: %s: timed out after %s", e.addr, e.phase, e.timeout)
	}
	return fmt.Sprintf("relay %s: %s: %v", e.addr, e.phase, e.err)
}

func (e *phaseError) Unwrap() error { return e.err }

// relay sends data for rcpts in one transaction and sorts the recipients
// by outcome into out. Unlike a Maildir copy, a relayed copy cannot be
// made idempotent: a crash after the smarthost's 250 and before the spool
// is updated sends it again (at least once, as every MTA). When ctx ends
// before the outcome is known, relay closes the connection and returns
// errAborted, leaving out untouched.
func (w *Worker) relay(ctx context.Context, e *spool.Entry, rcpts []string, data []byte, out *Outcome) error {
	var res Outcome
	if err := w.converse(ctx, e, rcpts, data, &res); err != nil {
		return err
	}
	*out = mergeOutcome(*out, res)
	return nil
}

// converse is relay's SMTP conversation, each wait under its phase's
// timeout; it returns errAborted or nil.
func (w *Worker) converse(ctx context.Context, e *spool.Entry, rcpts []string, data []byte, res *Outcome) error {
	r := w.cfg.Relay
	from := e.Envelope.MailFrom
	to := r.Timeouts.withDefaults()
	deferAll := func(err error) {
		for _, rc := range rcpts {
			res.Deferred = append(res.Deferred, failure(rc, err, true))
		}
	}
	settle := func(rcpts []string, err error) {
		for _, rc := range rcpts {
			if isPerm(err) {
				res.Failed = append(res.Failed, failure(rc, err, false))
			} else {
				res.Deferred = append(res.Deferred, failure(rc, err, false))
			}
		}
	}
	fail := func(phase string, timeout time.Duration, err error) error {
		return &phaseError{addr: r.Addr, phase: phase, timeout: timeout, err: err}
	}
	// aborted reports whether a failure is only the cancellation's echo.
	aborted := func(err error) bool { return err != nil && ctx.Err() != nil }

	d := net.Dialer{Timeout: to.Connect}
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if aborted(err) {
		return errAborted
	}
	if err != nil {
		deferAll(fail("connect", to.Connect, err))
		return nil
	}
	// Cancelling ctx closes the connection: whatever phase is waiting
	// fails at once, whatever deadline go-smtp set for it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	var c *smtp.Client
	if r.StartTLS {
		cfg := r.TLS
		if cfg == nil {
			host, _, _ := net.SplitHostPort(r.Addr)
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		// NewClientStartTLS reads the greeting and sends EHLO and
		// STARTTLS under go-smtp's default 5 minutes: a timer closing the
		// connection holds them to ours.
		timer := time.AfterFunc(to.Greeting, func() { conn.Close() })
		c, err = smtp.NewClientStartTLS(conn, cfg)
		if !timer.Stop() && err != nil {
			err = fmt.Errorf("%w (%w)", os.ErrDeadlineExceeded, err)
		}
		if err != nil {
			if aborted(err) {
				return errAborted
			}
			deferAll(fail("greeting and STARTTLS", to.Greeting, err))
			return nil
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	// go-smtp sets CommandTimeout as the deadline of each command it
	// sends (and of the greeting); it is set per phase below.
	c.CommandTimeout = to.Greeting
	if err := c.Hello(w.cfg.Hostname); err != nil {
		if aborted(err) {
			return errAborted
		}
		deferAll(fail("greeting and EHLO", to.Greeting, err))
		return nil
	}
	data, opts, refusal := w.prepare(c, e, from, rcpts, data)
	if refusal != nil {
		settle(rcpts, refusal)
		c.CommandTimeout = to.Mail
		_ = c.Quit()
		return nil
	}
	c.CommandTimeout = to.Mail
	if err := c.Mail(from, opts); err != nil {
		if aborted(err) {
			return errAborted
		}
		settle(rcpts, fail("MAIL", to.Mail, err))
		return nil
	}
	c.CommandTimeout = to.Rcpt
	var accepted []string
	inStep := true // every command so far got its reply: QUIT may be sent
	for i, rc := range rcpts {
		err := c.Rcpt(rc, nil)
		if err == nil {
			accepted = append(accepted, rc)
			continue
		}
		if aborted(err) {
			return errAborted
		}
		if !isSMTPError(err) {
			// The connection is gone or out of step: this recipient and
			// the rest wait for the next attempt.
			settle(append(accepted, rcpts[i:]...), fail("RCPT", to.Rcpt, err))
			accepted, inStep = nil, false
			break
		}
		settle([]string{rc}, fail("RCPT", to.Rcpt, err))
	}
	if len(accepted) == 0 {
		if inStep {
			c.CommandTimeout = to.Mail
			_ = c.Quit()
		}
		return nil
	}
	c.CommandTimeout = to.DataInit
	wc, err := c.Data()
	if err != nil {
		if aborted(err) {
			return errAborted
		}
		settle(accepted, fail("DATA", to.DataInit, err))
		return nil
	}
	// go-smtp puts no deadline on the message itself: one per chunk.
	c.SubmissionTimeout = to.DataTerm
	for rest := data; len(rest) > 0 && err == nil; {
		n := min(len(rest), dataChunk)
		_ = conn.SetWriteDeadline(time.Now().Add(to.DataBlock))
		_, err = wc.Write(rest[:n])
		rest = rest[n:]
	}
	if err != nil {
		if aborted(err) {
			return errAborted
		}
		settle(accepted, fail("the message data", to.DataBlock, err))
		return nil
	}
	// Close flushes the last bytes and writes "." (under this deadline),
	// then waits for the reply under SubmissionTimeout.
	_ = conn.SetWriteDeadline(time.Now().Add(to.DataBlock))
	if err := wc.Close(); err != nil {
		if aborted(err) {
			return errAborted
		}
		settle(accepted, fail("the end of data", to.DataTerm, err))
		return nil
	}
	res.Delivered = append(res.Delivered, accepted...)
	// The outcome is known; QUIT is a courtesy, bounded like MAIL and cut
	// by ctx.
	c.CommandTimeout = to.Mail
	_ = c.Quit()
	return nil
}

// mergeOutcome appends b's recipients to a's.
func mergeOutcome(a, b Outcome) Outcome {
	a.Delivered = append(a.Delivered, b.Delivered...)
	a.Failed = append(a.Failed, b.Failed...)
	a.Deferred = append(a.Deferred, b.Deferred...)
	return a
}

// isSMTPError reports whether err is a reply from the smarthost (the
// conversation is still in step).
func isSMTPError(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// isPerm reports whether err is the smarthost's 5xx.
func isPerm(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code/100 == 5
}

func failure(rcpt string, err error, local bool) Failure {
	var se *smtp.SMTPError
	if !local && errors.As(err, &se) {
		enh := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
			enh = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		return Failure{Rcpt: rcpt, Status: enh, Reply: fmt.Sprintf("%d %s %s", se.Code, enh, oneLine(se.Message))}
	}
	status := "4.4.1" // no answer from host (a connect timeout too)
	var pe *phaseError
	if errors.Is(err, os.ErrDeadlineExceeded) && !(errors.As(err, &pe) && pe.phase == "connect") {
		status = "4.4.2" // bad connection: it answered, then stalled
	}
	return Failure{Rcpt: rcpt, Status: status, Reply: "451 " + status + " " + strings.TrimSpace(oneLine(err.Error()))}
}

// prepare fits the message to what the smarthost offers (its EHLO reply)
// and returns the data to send and MAIL's options, or the permanent
// refusal of every recipient:
//
//   - SMTPUTF8 (RFC 6531 §3.2): a message that needs it (received with
//     SMTPUTF8 and holding a UTF-8 address or header field) is sent with
//     it, or bounced with 5.6.7 when the smarthost does not offer it (no
//     downgrade: RFC 6530's addresses cannot be made ASCII);
//   - 8BITMIME (RFC 6152 §3): 8-bit content for a smarthost that does not
//     offer it is converted to 7-bit (internal/mime7bit), or bounced with
//     5.6.3 where it cannot be. The receiver converted mail for the
//     smarthost before the plugins signed it ([server]
//     relay_downgrade_8bit), so this is for what it did not convert: it
//     breaks the DKIM signatures over the body, which is logged.
func (w *Worker) prepare(c *smtp.Client, e *spool.Entry, from string, rcpts []string, data []byte) ([]byte, *smtp.MailOptions, error) {
	opts := &smtp.MailOptions{}
	if e.Envelope.SMTPUTF8 && needsSMTPUTF8(from, rcpts, data) {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return nil, nil, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
				Message: "SMTPUTF8 is required, but was not offered by the smarthost " + w.cfg.Relay.Addr}
		}
		opts.UTF8 = true
	}
	if ok, _ := c.Extension("8BITMIME"); !ok && mime7bit.Needs(data) {
		conv, err := mime7bit.Convert(data)
		if err != nil {
			return nil, nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 3},
				Message: "The smarthost " + w.cfg.Relay.Addr + " does not offer 8BITMIME and the message " + err.Error()}
		}
		if bytes.Contains(data, []byte("\nDKIM-Signature:")) || bytes.HasPrefix(data, []byte("DKIM-Signature:")) {
			w.log.Warn("message converted to 7-bit for the smarthost after it was signed: its DKIM signatures no longer verify",
				"id", e.ID, "relay", w.cfg.Relay.Addr)
		}
		data = conv
	}
	return data, opts, nil
}

// needsSMTPUTF8 reports whether a message needs SMTPUTF8: a UTF-8 address
// or header field (RFC 6531 §3.2 lets a relay send an all-ASCII one
// without it).
func needsSMTPUTF8(from string, rcpts []string, data []byte) bool {
	if !isASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r) {
			return true
		}
	}
	hdr := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		hdr = data[:i]
	}
	return !isASCII(string(hdr))
}
