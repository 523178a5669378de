// The DATA and BDAT transfer: checks, the Received field, the spool write.

package smtpd

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/emersion/go-smtp"
)

// Reply errors of DATA.
var (
	errBareLF  = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Bare LF or CR in message: lines must end with CRLF"}
	errNUL     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "NUL byte in message"}
	errLong    = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Line too long"}
	errSpool   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not queue the message, try again later"}
	errAborted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message transfer aborted"}
	errEmpty   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Empty message"}
)

// txInfo is what MAIL FROM said about the transaction's message.
type txInfo struct {
	utf8 bool          // SMTPUTF8
	body smtp.BodyType // BODY=, "" when not given
}

// data reads the message and queues it. It works on a copy of the
// transaction taken before it reads and never writes the session: go-smtp
// resets the transaction itself (Reset) once Data returns, and for BDAT it
// runs Data in its own goroutine, which an aborted transfer leaves running
// while the connection goes on with the next commands.
//
// Memory: the transfer streams to an unlinked file (receive); the message
// is then read back into one buffer of its size, under the bytes-in-flight
// budget, parsed in place, and written to the spool from its pieces.
// When Data returns early, go-smtp consumes what the client still sends
// (DATA) or refuses the rest of the chunks (BDAT).
func (s *session) data(r io.Reader) error {
	s.mu.Lock()
	pc, env, quarantine := s.pc, s.envelope(), s.quarantine // quarantine: from pre-reception, if any
	tx := txInfo{utf8: s.utf8, body: s.body}
	adds := append([]registry.Field(nil), s.adds...)
	removes := append([]registry.Removal(nil), s.removes...)
	var lease *pluginhost.Lease
	if pc != nil {
		lease = s.tx.Retain() // the transfer may outlive the transaction (an aborted BDAT)
	}
	s.mu.Unlock()
	defer lease.Release()
	if pc == nil || len(env.RcptTo) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	id := spool.NewID(time.Now())
	in := s.be.spool.NewIncoming()
	defer in.Close()

	// The transfer: every byte the client sends for this message is read here.
	received := s.received(id, env, tx.utf8 && !asciiEnvelope(env))
	chk, err := s.receive(r, in, received)
	if err != nil {
		return err
	}
	if in.Size() == int64(len(received)) { // BDAT 0 LAST, or DATA with only "."
		s.be.rejected.Add(1)
		return errEmpty
	}

	release, err := s.be.budget.acquire(in.Size()-int64(len(received)), chk.hlines)
	if err != nil {
		if err == errNeverFits {
			s.be.rejected.Add(1)
		} else {
			s.be.tempFailed.Add(1)
		}
		s.log.Info("message refused by the bytes-in-flight budget", "size", in.Size(), "err", err)
		return err
	}
	defer release()
	raw, err := in.Bytes()
	if err != nil {
		s.log.Error("spool read-back failed", "err", err)
		s.be.tempFailed.Add(1)
		return errSpool
	}
	in.Close() // the disk space: raw holds the message now (not raw's memory)
	msg, err := registry.ParseMessage(raw, env)
	if err != nil {
		s.be.rejected.Add(1)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
	}
	if err := headerError(msg.HeaderBytes(), tx.utf8, s.be.cfg.StrictUTF8Headers); err != nil {
		s.be.rejected.Add(1)
		return err
	}
	if add := s.submissionFields(msg, env, id); add != nil {
		// Inserted after our Received, parsed again: the plugins, DKIM's
		// signer among them, see the message as it is spooled. One more
		// copy of an authenticated client's message, only when it lacks
		// the fields.
		fixed := make([]byte, 0, len(raw)+len(add))
		fixed = append(append(append(fixed, raw[:len(received)]...), add...), raw[len(received):]...)
		if msg, err = registry.ParseMessage(fixed, env); err != nil {
			s.be.rejected.Add(1)
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
		}
		raw = fixed
	}
	if conv := s.downgrade(raw, env); conv != nil {
		if msg, err = registry.ParseMessage(conv, env); err != nil {
			s.be.rejected.Add(1)
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
		}
		raw, tx.body = conv, smtp.Body7Bit
	}
	pc.Message = msg
	pc.Phase = registry.PhaseMessage
	for _, stage := range []registry.Stage{registry.PostReception, registry.PreQueue} {
		sr, err := s.run(lease.Manager(), stage, pc)
		if err != nil {
			return err
		}
		if err := s.verdictError(sr, true); err != nil {
			return err
		}
		if sr.Verdict.Action == registry.Quarantine && quarantine == "" {
			_, _, text := sr.Verdict.Reply()
			quarantine = fmt.Sprintf("%s: %s", sr.DecidedBy, text)
		}
		adds = append(adds, sr.AddHeaders...)
		removes = append(removes, sr.RemoveHeaders...)
	}
	e := &spool.Entry{
		ID: id,
		Envelope: spool.Envelope{ClientIP: ipString(env.ClientIP), HELO: env.HELO, MailFrom: env.MailFrom,
			RcptTo: env.RcptTo, AuthUser: env.AuthUser, TLS: env.TLS, SMTPUTF8: tx.utf8, Body: string(tx.body)},
		Results: records(pc.Results()),
		Reason:  quarantine,
	}
	if quarantine == "" && s.be.cfg.Local != nil && s.be.cfg.Local.DeliversNow(env.RcptTo) {
		return s.deliverNow(e, msg.Rewriter(adds, removes))
	}
	_, size, err := s.be.spool.PutMessage(e, quarantine != "", msg.Rewriter(adds, removes))
	if err != nil {
		s.log.Error("spool write failed", "err", err)
		s.be.tempFailed.Add(1)
		return errSpool
	}
	if quarantine != "" {
		s.be.quarantined.Add(1)
	} else {
		s.be.accepted.Add(1)
	}
	s.log.Info("queued", "id", id, "from", env.MailFrom, "rcpts", len(env.RcptTo), "size", size, "quarantine", quarantine)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

// receive writes received and then the client's message from r to w,
// checking it on the way (checker), and returns the checker's counts. Its
// error is the reply to the transfer.
func (s *session) receive(r io.Reader, w io.Writer, received []byte) (*checker, error) {
	if _, err := w.Write(received); err != nil {
		s.log.Error("spool write failed", "err", err)
		s.be.tempFailed.Add(1)
		return nil, errSpool
	}
	chk := newChecker(s.be.cfg.lineLimit(), s.be.cfg.headerLimit())
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := chk.write(buf[:n]); err != nil {
				s.be.rejected.Add(1)
				return nil, err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				s.log.Error("spool write failed", "err", err)
				s.be.tempFailed.Add(1)
				return nil, errSpool
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, s.transferError(rerr)
		}
	}
	if err := chk.close(); err != nil {
		s.be.rejected.Add(1)
		return nil, err
	}
	return chk, nil
}

// readBuffers are receive's buffers, shared by the transfers.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// transferError is the reply to a transfer that r broke off with err.
func (s *session) transferError(err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se): // go-smtp's own: message too big
		s.be.rejected.Add(1)
		return se
	case errors.Is(err, smtp.ErrTooLongLine):
		s.be.rejected.Add(1)
		return errLong
	}
	s.be.aborted.Add(1)
	s.log.Info("DATA aborted", "err", err)
	return errAborted
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// lineLimit is the longest line accepted, its CRLF included (go-smtp's
// default when MaxLineLength is unset).
func (c Config) lineLimit() int {
	if c.MaxLineLength > 0 {
		return c.MaxLineLength
	}
	return 2000
}

// headerLimit is the largest header section accepted, in bytes.
func (c Config) headerLimit() int64 {
	if c.MaxHeaderBytes > 0 {
		return c.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

// DefaultMaxHeaderBytes is the header section limit when
// Config.MaxHeaderBytes is unset: 256 KiB, room for long Received and
// ARC chains (Postfix's header_size_limit is 100 KiB).
const DefaultMaxHeaderBytes = 256 << 10

// received returns the Received trace field (RFC 5321 section 4.4): the
// client's address as an address literal ([192.0.2.1], [IPv6:2001:db8::1]),
// the protocol of RFC 3848 and RFC 6531 §4.3 (ESMTP, ESMTPS, ESMTPA,
// ESMTPSA; UTF8SMTP... for an SMTPUTF8 transaction with a UTF-8
// address), folded (pkg/headerfold).
func (s *session) received(id string, env registry.Envelope, utf8Tx bool) []byte {
	with := "ESMTP"
	if utf8Tx {
		with = "UTF8SMTP"
	}
	if env.TLS {
		with += "S"
	}
	if env.AuthUser != "" {
		with += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from %s (%s) by %s (Elemta) with %s id %s", sanitize(env.HELO), addressLiteral(env.ClientIP), s.be.cfg.Hostname, with, id)
	if len(env.RcptTo) == 1 { // naming one of several recipients would leak the others' copy
		fmt.Fprintf(&b, " for <%s>", sanitizeAddr(env.RcptTo[0]))
	}
	fmt.Fprintf(&b, "; %s", s.be.srv.now().Format(time.RFC1123Z))
	return []byte(headerfold.Field("Received", b.String(), headerfold.CRLF) + "\r\n")
}

// asciiEnvelope reports whether env's addresses are all ASCII: the
// transaction did not need its SMTPUTF8 (net/smtp asks for it whenever it
// is offered).
func asciiEnvelope(env registry.Envelope) bool {
	if !isASCII(env.MailFrom) {
		return false
	}
	for _, r := range env.RcptTo {
		if !isASCII(r) {
			return false
		}
	}
	return true
}

// addressLiteral returns a as RFC 5321 §4.1.3 writes it: [192.0.2.1],
// [IPv6:2001:db8::1] (an IPv4-mapped IPv6 address as IPv4), or
// [unknown] without one.
func addressLiteral(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "[unknown]"
	case a.Is4() || a.Is4In6():
		return "[" + a.Unmap().String() + "]"
	}
	return "[IPv6:" + a.WithZone("").String() + "]"
}

// sanitizeAddr is sanitize for an address, whose UTF-8 (an SMTPUTF8
// transaction's) is kept.
func sanitizeAddr(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '<' || r == '>' || r == utf8.RuneError {
			return '_'
		}
		return r
	}, s)
}

// sanitize makes a HELO name safe for Received: ASCII (RFC 6531 §3.7.1
// keeps EHLO ASCII) without white space, comment or field delimiters.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r >= 0x7f || r == '(' || r == ')' || r == ';' || r == '<' || r == '>' {
			return '_'
		}
		return r
	}, s)
}

func records(rs []*registry.Result) []spool.StageResult {
	out := make([]spool.StageResult, 0, len(rs))
	for _, r := range rs {
		sr := spool.StageResult{Stage: r.Stage.String(), Plugin: r.Plugin, Action: r.Verdict.Action.String(), Score: r.Score, Details: r.Details}
		if r.Err != nil {
			sr.Error = r.Err.Error()
		}
		out = append(out, sr)
	}
	return out
}
