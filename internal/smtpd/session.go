// One SMTP session: the envelope commands and the pre-reception stage.

package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/emersion/go-smtp"
)

type session struct {
	be   *backend
	conn *smtp.Conn // nil in the connect phase, before go-smtp has a session
	cc   *clientConn
	id   string
	ip   netip.Addr
	log  *slog.Logger

	heloName string
	authUser string
	// quarantine is the reason of a quarantine verdict so far (session
	// phases count for every transaction of the session).
	quarantine        string
	sessionQuarantine string
	// sessionAdds are header fields added at connect/HELO.
	sessionAdds    []registry.Field
	sessionRemoves []registry.Removal

	// mu orders the transaction state between the connection's goroutine
	// and Data, which go-smtp runs in a goroutine of its own for BDAT: an
	// aborted BDAT transfer (RSET, EHLO, disconnect) may still be starting
	// while the next commands run.
	mu sync.Mutex
	// The transaction.
	pc      *registry.ProcessingContext
	from    string
	rcpts   []string
	adds    []registry.Field
	removes []registry.Removal
	// utf8 is MAIL FROM's SMTPUTF8 parameter (RFC 6531); body its BODY
	// (7BIT, 8BITMIME; BINARYMIME is not offered).
	utf8 bool
	body smtp.BodyType
}

func (s *session) envelope() registry.Envelope {
	isTLS := false
	if s.conn != nil {
		_, isTLS = s.conn.TLSConnectionState()
	}
	return registry.Envelope{ClientIP: s.ip, HELO: s.heloName, MailFrom: s.from,
		RcptTo: append([]string(nil), s.rcpts...), AuthUser: s.authUser, TLS: isTLS}
}

func (s *session) helo(name string) error {
	s.heloName = name
	return s.preReception(registry.PhaseHelo, nil)
}

// preReception runs the pre-reception stage at phase. pc is the
// transaction's context, or nil for the session phases.
func (s *session) preReception(phase registry.Phase, pc *registry.ProcessingContext) error {
	msg := &registry.Message{Envelope: s.envelope()}
	session := pc == nil
	if session {
		pc = registry.NewProcessingContext(msg, &registry.Session{ID: s.id, Hostname: s.be.cfg.Hostname})
	}
	pc.Message = msg
	pc.Phase = phase
	sr, err := s.run(registry.PreReception, pc)
	if err != nil {
		return err
	}
	if err := s.verdictError(sr, false); err != nil {
		return err
	}
	if sr.Verdict.Action == registry.Quarantine && s.quarantine == "" {
		_, _, text := sr.Verdict.Reply()
		s.quarantine = fmt.Sprintf("%s: %s", sr.DecidedBy, text)
	}
	if session {
		s.sessionQuarantine = s.quarantine
		s.sessionAdds = append(s.sessionAdds, sr.AddHeaders...)
		s.sessionRemoves = append(s.sessionRemoves, sr.RemoveHeaders...)
	} else {
		s.adds = append(s.adds, sr.AddHeaders...)
		s.removes = append(s.removes, sr.RemoveHeaders...)
	}
	return nil
}

func (s *session) run(stage registry.Stage, pc *registry.ProcessingContext) (*pluginhost.StageResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.be.cfg.StageTimeout)
	defer cancel()
	sr, err := s.be.mgr.ExecuteStage(ctx, stage, pc)
	if err != nil {
		s.log.Error("stage failed", "stage", stage, "err", err)
		s.be.tempFailed.Add(1)
		return nil, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}
	}
	return sr, nil
}

// verdictError turns a stage's verdict into the SMTP error that refuses
// the command, or nil to continue. quarantine is accepted: the caller
// checks the verdict itself where it matters (DATA).
func (s *session) verdictError(sr *pluginhost.StageResult, atData bool) error {
	v := sr.Verdict
	switch v.Action {
	case registry.Reject:
		s.be.rejected.Add(1)
	case registry.TempFail:
		s.be.tempFailed.Add(1)
	default:
		return nil
	}
	s.log.Info("refused by plugin", "stage", sr.Stage, "plugin", sr.DecidedBy, "verdict", v.String(), "data", atData)
	return VerdictError(v)
}

// VerdictError returns the SMTP error for a reject or tempfail verdict:
// the plugin's codes when they fit the action's class (5xx, 4xx), the
// action's defaults otherwise.
func VerdictError(v registry.Verdict) *smtp.SMTPError {
	code, enh, text := v.Reply()
	class := 5
	if v.Action == registry.TempFail {
		class = 4
	}
	def := registry.Verdict{Action: v.Action}
	dcode, denh, _ := def.Reply()
	if code/100 != class {
		code = dcode
	}
	ec, ok := parseEnhanced(enh)
	if !ok || ec[0] != class {
		ec, _ = parseEnhanced(denh)
	}
	text = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, text)
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	return ec, ec[0] >= 2 && ec[0] <= 5
}

// refuse passes a reply to go-smtp. Under TLS the guard cannot read the
// replies, so a refusal (4xx, 5xx) is counted here towards max_errors, and
// the one too many becomes the 421 that closes the connection.
func (s *session) refuse(err error) error {
	var se *smtp.SMTPError
	if err == nil || (errors.As(err, &se) && se.Code < 400) {
		return err
	}
	if reply := s.cc.noteError(); reply != nil {
		return reply
	}
	return err
}

// Mail, Rcpt and Data run nothing once the connection was cut (a timeout
// mid-line hands go-smtp the partial line as if it were whole).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.cc.alive(); err != nil {
		return err
	}
	return s.refuse(s.mail(from, opts))
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := s.cc.alive(); err != nil {
		return err
	}
	return s.refuse(s.rcpt(to, opts))
}

func (s *session) Data(r io.Reader) error {
	if err := s.cc.alive(); err != nil {
		return err
	}
	s.cc.beginData()
	defer s.cc.endData()
	return s.refuse(s.data(r))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetTx()
	if hasControl(from) {
		return errBadSender
	}
	if err := addressError(from, opts.UTF8, errUTF8Sender, errBadSender); err != nil {
		return err
	}
	if err := s.be.budget.checkSize(opts); err != nil {
		return err
	}
	if h := s.conn.Hostname(); h != s.heloName { // a later EHLO
		if err := s.helo(h); err != nil {
			return err
		}
	}
	s.from, s.utf8, s.body = from, opts.UTF8, opts.Body
	s.pc = registry.NewProcessingContext(&registry.Message{}, &registry.Session{ID: s.id, Hostname: s.be.cfg.Hostname})
	s.adds = append([]registry.Field(nil), s.sessionAdds...)
	s.removes = append([]registry.Removal(nil), s.sessionRemoves...)
	if err := s.preReception(registry.PhaseMail, s.pc); err != nil {
		s.resetTx()
		return err
	}
	return nil
}

func (s *session) rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	if to == "" || strings.ContainsAny(to, "/\\\x00") || !strings.Contains(to, "@") || hasControl(to) {
		return errBadRecipient
	}
	if err := addressError(to, s.utf8, errUTF8Recipient, errBadRecipient); err != nil {
		return err
	}
	if !s.mayReceive(to) {
		s.be.rejected.Add(1)
		s.log.Info("relaying denied", "rcpt", to, "authenticated", s.authUser != "")
		return errRelay
	}
	if s.toMaildir(to) {
		// Refused now rather than accepted and bounced (backscatter):
		// the delivery could never name its Maildir.
		if _, _, err := mailbox.Key(to); err != nil {
			s.log.Info("recipient names no Maildir", "rcpt", to, "err", err)
			return errBadRecipient
		}
	}
	if slices.ContainsFunc(s.rcpts, func(r string) bool { return s.sameRecipient(r, to) }) {
		return nil // accepted already: one copy, one RCPT to a smarthost
	}
	s.rcpts = append(s.rcpts, to)
	if err := s.preReception(registry.PhaseRcpt, s.pc); err != nil {
		s.rcpts = s.rcpts[:len(s.rcpts)-1] // refuse this one, keep the others
		return err
	}
	return nil
}

// errBadRecipient refuses a recipient address that is malformed or names
// no Maildir (internal/mailbox).
var errBadRecipient = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}

// toMaildir reports whether rcpt is delivered to a local Maildir: a local
// domain, or any domain when there is no smarthost (the delivery worker's
// rule: without a relay every recipient is local).
func (s *session) toMaildir(rcpt string) bool {
	return s.be.local.HasAddress(rcpt) || !s.be.cfg.RelayAuthenticated
}

// sameRecipient reports whether a and b are one recipient: the same
// Maildir (internal/mailbox's normalization) for local ones, the same
// string for the smarthost's, whose local parts only it may compare.
func (s *session) sameRecipient(a, b string) bool {
	if a == b {
		return true
	}
	if !s.toMaildir(a) || !s.toMaildir(b) {
		return false
	}
	na, errA := mailbox.Normalize(a)
	nb, errB := mailbox.Normalize(b)
	return errA == nil && errB == nil && na == nb
}

// errBadSender refuses a sender address with a control character.
var errBadSender = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}

// hasControl reports whether addr holds a control character (CR, TAB,
// ESC, DEL...), which RFC 5321 allows nowhere in a mailbox, not even
// quoted. go-smtp accepts them inside a quoted local part and drops the
// quotes, so they would reach the DSN's header fields and the smarthost.
func hasControl(addr string) bool {
	return strings.ContainsFunc(addr, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// errRelay refuses a recipient outside the local domains.
var errRelay = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}

// mayReceive reports whether this session may send to rcpt: a local
// domain, or any domain for an authenticated session when relaying is on.
func (s *session) mayReceive(rcpt string) bool {
	if s.be.cfg.AllDomainsLocal {
		return true
	}
	if s.be.local.HasAddress(rcpt) {
		return true
	}
	return s.be.cfg.RelayAuthenticated && s.authUser != ""
}

func (s *session) resetTx() {
	s.pc, s.from, s.rcpts, s.adds, s.removes, s.utf8, s.body = nil, "", nil, nil, nil, false, ""
	s.quarantine = s.sessionQuarantine
}

func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetTx()
}

// Logout ends a go-smtp session (at QUIT, at the connection's end, at
// STARTTLS). The plugins are told when the connection ends
// (backend.endSession), with this envelope if it is the last.
func (s *session) Logout() error {
	s.mu.Lock()
	env := s.envelope()
	s.mu.Unlock()
	s.cc.mu.Lock()
	s.cc.lastEnv = env
	s.cc.mu.Unlock()
	return nil
}
