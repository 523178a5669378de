// The DATA and BDAT transfer: checks, the Received field, the spool write.

package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/spool"
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
)

// data reads the message and queues it. It works on a copy of the
// transaction taken before it reads and never writes the session: go-smtp
// resets the transaction itself (Reset) once Data returns, and for BDAT it
// runs Data in its own goroutine, which an aborted transfer leaves running
// while the connection goes on with the next commands.
func (s *session) data(r io.Reader) error {
	s.mu.Lock()
	pc, env, quarantine := s.pc, s.envelope(), s.quarantine // quarantine: from pre-reception, if any
	adds := append([]registry.Field(nil), s.adds...)
	removes := append([]registry.Removal(nil), s.removes...)
	s.mu.Unlock()
	if pc == nil || len(env.RcptTo) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	body, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
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
	if err := checkLineEnds(body); err != nil {
		s.be.rejected.Add(1)
		return err
	}
	// go-smtp enforces the line limit on DATA only, not on BDAT chunks.
	if longLine(body, s.be.cfg.lineLimit()) {
		s.be.rejected.Add(1)
		return errLong
	}
	id := spool.NewID(time.Now())
	raw := append(s.received(id, env), body...)
	msg, err := registry.ParseMessage(raw, env)
	if err != nil {
		s.be.rejected.Add(1)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
	}
	pc.Message = msg
	pc.Phase = registry.PhaseMessage
	for _, stage := range []registry.Stage{registry.PostReception, registry.PreQueue} {
		sr, err := s.run(stage, pc)
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
			RcptTo: env.RcptTo, AuthUser: env.AuthUser, TLS: env.TLS},
		Results: records(pc.Results()),
		Reason:  quarantine,
		Message: msg.Rewrite(adds, removes),
	}
	if _, err := s.be.spool.Put(e, quarantine != ""); err != nil {
		s.log.Error("spool write failed", "err", err)
		s.be.tempFailed.Add(1)
		return errSpool
	}
	if quarantine != "" {
		s.be.quarantined.Add(1)
	} else {
		s.be.accepted.Add(1)
	}
	s.log.Info("queued", "id", id, "from", env.MailFrom, "rcpts", len(env.RcptTo), "size", len(e.Message), "quarantine", quarantine)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// checkLineEnds refuses NUL bytes and CR or LF that are not part of CRLF
// (the ambiguity SMTP smuggling abuses).
func checkLineEnds(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return errNUL
	}
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return errBareLF
			}
			i++
		case '\n':
			return errBareLF
		}
	}
	return nil
}

// lineLimit is the longest line accepted, its CRLF included (go-smtp's
// default when MaxLineLength is unset).
func (c Config) lineLimit() int {
	if c.MaxLineLength > 0 {
		return c.MaxLineLength
	}
	return 2000
}

// longLine reports whether a line of b, its CRLF included, is longer than
// limit.
func longLine(b []byte, limit int) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return len(b) > limit
		}
		if i+1 > limit {
			return true
		}
		b = b[i+1:]
	}
	return false
}

// received returns the Received trace field (RFC 5321 section 4.4).
func (s *session) received(id string, env registry.Envelope) []byte {
	with := "ESMTP"
	if env.TLS {
		with += "S"
	}
	if env.AuthUser != "" {
		with += "A"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (Elemta) with %s id %s", sanitize(env.HELO), ipString(env.ClientIP), s.be.cfg.Hostname, with, id)
	if len(env.RcptTo) == 1 { // naming one of several recipients would leak the others' copy
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitize(env.RcptTo[0]))
	}
	fmt.Fprintf(&b, "; %s\r\n", time.Now().Format(time.RFC1123Z))
	return b.Bytes()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '<' || r == '>' {
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
