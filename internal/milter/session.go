package milter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/d--j/go-milter"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// session is one MTA milter connection, which Postfix and Sendmail open
// for one SMTP session (Postfix may reuse it for the next one:
// NewConnection is called again). go-milter calls its methods one at a
// time, from the connection's goroutine.
type session struct {
	srv *Server
	log *slog.Logger

	// The SMTP session.
	id                string
	ip                netip.Addr
	helo              string
	tls               bool
	sessionQuarantine string
	sessionAdds       []registry.Field
	sessionRemoves    []registry.Removal
	lastEnv           registry.Envelope // for EndSession
	began             bool              // a stage ran: plugins may hold session state

	// The transaction.
	pc         *registry.ProcessingContext
	from       string
	authUser   string
	rcpts      []string
	adds       []registry.Field
	removes    []registry.Removal
	quarantine string
	msg        bytes.Buffer
	headerLen  int64
	tooBig     bool
}

var _ milter.Milter = (*session)(nil)

func (s *session) NewConnection(milter.Modifier) error {
	s.endSession()
	*s = session{srv: s.srv, log: s.srv.log}
	s.id = s.srv.nextID()
	s.log = s.srv.log.With("milter", s.id)
	return nil
}

// Connect runs pre-reception at PhaseConnect. addr is the client's IP for
// an inet client; {client_addr} is used when the MTA sent none.
func (s *session) Connect(host, family string, port uint16, addr string, m milter.Modifier) (resp *milter.Response, err error) {
	defer s.guard("connect", &resp)
	s.ip = clientIP(addr, m)
	return s.preReception(m, registry.PhaseConnect, nil), nil
}

func clientIP(addr string, m milter.Modifier) netip.Addr {
	for _, a := range []string{addr, m.Get(milter.MacroClientAddr)} {
		a = strings.Trim(a, "[]")
		a = strings.TrimPrefix(a, "IPv6:") // Sendmail's notation
		if ip, err := netip.ParseAddr(a); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (s *session) Helo(name string, m milter.Modifier) (resp *milter.Response, err error) {
	defer s.guard("helo", &resp)
	s.helo = name
	s.tls = s.tls || m.Get(milter.MacroTlsVersion) != ""
	return s.preReception(m, registry.PhaseHelo, nil), nil
}

// MailFrom starts a transaction; the authenticated user is {auth_authen}
// (Postfix sends it with MAIL FROM), the queue ID i names the session for
// the plugins when the MTA has one.
func (s *session) MailFrom(from, _ string, m milter.Modifier) (resp *milter.Response, err error) {
	defer s.guard("mail", &resp)
	s.resetTx()
	from = milter.RemoveAngle(from)
	if hasControl(from) {
		return mustReply(553, "5.1.7 Bad sender address syntax"), nil
	}
	s.from = from
	s.authUser = m.Get(milter.MacroAuthAuthen)
	s.tls = s.tls || m.Get(milter.MacroTlsVersion) != ""
	s.pc = registry.NewProcessingContext(&registry.Message{}, s.sessionInfo(m))
	s.adds = slices.Clone(s.sessionAdds)
	s.removes = slices.Clone(s.sessionRemoves)
	resp = s.preReception(m, registry.PhaseMail, s.pc)
	if !resp.Continue() {
		s.resetTx()
	}
	return resp, nil
}

// RcptTo runs pre-reception for one recipient; a refusal refuses that
// recipient only (the MTA keeps the others).
func (s *session) RcptTo(rcpt, _ string, m milter.Modifier) (resp *milter.Response, err error) {
	defer s.guard("rcpt", &resp)
	rcpt = milter.RemoveAngle(rcpt)
	if s.pc == nil {
		return milter.RespContinue, nil // an MTA that sent no MAIL: nothing to decide on
	}
	if hasControl(rcpt) || rcpt == "" {
		return mustReply(553, "5.1.3 Bad recipient address syntax"), nil
	}
	if slices.Contains(s.rcpts, rcpt) {
		return milter.RespContinue, nil
	}
	if len(s.rcpts) >= s.srv.cfg.MaxRecipients {
		return replyTooManyRcpts, nil
	}
	s.rcpts = append(s.rcpts, rcpt)
	resp = s.preReception(m, registry.PhaseRcpt, s.pc)
	if !resp.Continue() {
		s.rcpts = s.rcpts[:len(s.rcpts)-1]
	}
	return resp, nil
}

func (s *session) Data(milter.Modifier) (*milter.Response, error) { return milter.RespContinue, nil }

// Header adds one field to the message being assembled, as the MTA has
// it (with OptHeaderLeadingSpace the value comes unchanged; without it
// the space the MTA ate is put back). Folded values come with LF line
// ends and get CRLF.
func (s *session) Header(name, value string, m milter.Modifier) (*milter.Response, error) {
	if s.tooBig {
		return milter.RespContinue, nil
	}
	if m.Protocol()&milter.OptHeaderLeadingSpace == 0 {
		value = " " + value
	}
	n := int64(len(name) + 1 + len(value) + 2 + strings.Count(value, "\n"))
	if s.headerLen+n > s.srv.cfg.MaxHeaderSize || int64(s.msg.Len())+n > s.srv.cfg.MaxMessageSize {
		s.overLimit("max_header_size")
		return milter.RespContinue, nil
	}
	s.headerLen += n
	s.msg.WriteString(name)
	s.msg.WriteByte(':')
	writeCRLF(&s.msg, value)
	s.msg.WriteString("\r\n")
	return milter.RespContinue, nil
}

// writeCRLF writes v with every bare LF made CRLF.
func writeCRLF(b *bytes.Buffer, v string) {
	for {
		i := strings.IndexByte(v, '\n')
		if i < 0 {
			b.WriteString(v)
			return
		}
		b.WriteString(strings.TrimSuffix(v[:i], "\r"))
		b.WriteString("\r\n")
		v = v[i+1:]
	}
}

func (s *session) Headers(milter.Modifier) (*milter.Response, error) {
	if !s.tooBig {
		s.msg.WriteString("\r\n")
	}
	return milter.RespContinue, nil
}

// BodyChunk appends the MTA's body bytes (CRLF line ends) up to
// max_message_size; past it the rest is dropped and the message refused
// at its end.
func (s *session) BodyChunk(chunk []byte, _ milter.Modifier) (*milter.Response, error) {
	if s.tooBig {
		return milter.RespContinue, nil
	}
	if int64(s.msg.Len())+int64(len(chunk)) > s.srv.cfg.MaxMessageSize {
		s.overLimit("max_message_size")
		return milter.RespContinue, nil
	}
	s.msg.Write(chunk)
	return milter.RespContinue, nil
}

func (s *session) overLimit(key string) {
	s.tooBig = true
	s.msg = bytes.Buffer{}
	s.log.Info("message refused: over a limit", "reason", key)
}

// EndOfMessage runs post-reception, then pre-queue, on the whole message
// and gives the MTA the verdict and the header changes.
func (s *session) EndOfMessage(m milter.Modifier) (resp *milter.Response, err error) {
	defer s.guard("end of message", &resp)
	defer s.resetTx()
	if s.tooBig {
		s.srv.stats.rejected.Add(1)
		return replyTooBig, nil
	}
	if s.pc == nil || len(s.rcpts) == 0 {
		return s.srv.localError(s.log, "end of message without MAIL or RCPT"), nil
	}
	env := s.envelope()
	if s.msg.Len() == 0 {
		s.msg.WriteString("\r\n")
	}
	msg, perr := registry.ParseMessage(s.msg.Bytes(), env)
	if perr != nil {
		s.srv.stats.rejected.Add(1)
		return replyMalformed(perr), nil
	}
	pc := s.pc
	if id := m.Get(milter.MacroQueueId); id != "" {
		pc.Session.ID = id
	}
	pc.Message = msg
	pc.Phase = registry.PhaseMessage
	adds, removes, quarantine := s.adds, s.removes, s.quarantine
	for _, stage := range []registry.Stage{registry.PostReception, registry.PreQueue} {
		sr, err := s.run(m, stage, pc)
		if err != nil {
			return s.srv.localError(s.log, fmt.Sprintf("stage %s: %v", stage, err)), nil
		}
		if r := s.refusal(sr); r != nil {
			return r, nil
		}
		if sr.Verdict.Action == registry.Quarantine && quarantine == "" {
			quarantine = quarantineReason(sr)
		}
		adds = append(adds, sr.AddHeaders...)
		removes = append(removes, sr.RemoveHeaders...)
	}
	if err := applyHeaders(m, msg, adds, removes); err != nil {
		return s.srv.localError(s.log, err.Error()), nil
	}
	if quarantine != "" {
		if err := m.Quarantine(quarantine); err != nil {
			// A quarantine the MTA cannot hold must not become a delivery.
			s.log.Error("quarantine action failed", "err", err)
			return replyLocalError, nil
		}
		s.srv.stats.quarantined.Add(1)
		s.log.Info("quarantined", "queue_id", pc.Session.ID, "reason", quarantine)
		return milter.RespAccept, nil
	}
	s.srv.stats.accepted.Add(1)
	s.log.Debug("accepted", "queue_id", pc.Session.ID, "from", env.MailFrom, "rcpts", len(env.RcptTo))
	return milter.RespAccept, nil
}

func (s *session) Abort(milter.Modifier) error {
	s.resetTx()
	return nil
}

func (s *session) Unknown(string, milter.Modifier) (*milter.Response, error) {
	return milter.RespContinue, nil
}

// Cleanup ends the session for the plugins that keep per-session state.
func (s *session) Cleanup(milter.Modifier) { s.endSession() }

func (s *session) endSession() {
	if !s.began {
		return
	}
	s.began = false
	env := s.lastEnv
	pc := registry.NewProcessingContext(&registry.Message{Envelope: env}, &registry.Session{ID: s.id, Hostname: s.srv.cfg.Hostname})
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.StageTimeout.D())
	defer cancel()
	if err := s.srv.mgr.EndSession(ctx, pc); err != nil {
		s.log.Warn("end session", "err", err)
	}
}

func (s *session) sessionInfo(m milter.Modifier) *registry.Session {
	id := s.id
	if qid := m.Get(milter.MacroQueueId); qid != "" {
		id = qid
	}
	return &registry.Session{ID: id, Hostname: s.srv.cfg.Hostname}
}

func (s *session) envelope() registry.Envelope {
	return registry.Envelope{ClientIP: s.ip, HELO: s.helo, MailFrom: s.from, RcptTo: slices.Clone(s.rcpts),
		AuthUser: s.authUser, TLS: s.tls}
}

func (s *session) resetTx() {
	if s.pc != nil {
		s.lastEnv = s.envelope()
	}
	s.pc, s.from, s.authUser, s.rcpts, s.adds, s.removes = nil, "", "", nil, nil, nil
	s.quarantine = s.sessionQuarantine
	s.msg = bytes.Buffer{}
	s.headerLen, s.tooBig = 0, false
}

// preReception runs pre-reception at phase; pc is the transaction's
// context, nil for the session phases (connect, HELO). It returns the
// reply for the MTA.
func (s *session) preReception(m milter.Modifier, phase registry.Phase, pc *registry.ProcessingContext) *milter.Response {
	msg := &registry.Message{Envelope: s.envelope()}
	sessionPhase := pc == nil
	if sessionPhase {
		pc = registry.NewProcessingContext(msg, s.sessionInfo(m))
	}
	pc.Message, pc.Phase = msg, phase
	sr, err := s.run(m, registry.PreReception, pc)
	if err != nil {
		return s.srv.localError(s.log, fmt.Sprintf("stage %s (%s): %v", registry.PreReception, phaseName(phase), err))
	}
	if r := s.refusal(sr); r != nil {
		return r
	}
	if sr.Verdict.Action == registry.Quarantine && s.quarantine == "" {
		s.quarantine = quarantineReason(sr)
	}
	if sessionPhase {
		s.sessionQuarantine = s.quarantine
		s.sessionAdds = append(s.sessionAdds, sr.AddHeaders...)
		s.sessionRemoves = append(s.sessionRemoves, sr.RemoveHeaders...)
	} else {
		s.adds = append(s.adds, sr.AddHeaders...)
		s.removes = append(s.removes, sr.RemoveHeaders...)
	}
	return milter.RespContinue
}

func quarantineReason(sr *pluginhost.StageResult) string {
	_, _, text := sr.Verdict.Reply()
	return fmt.Sprintf("%s: %s", sr.DecidedBy, text)
}

// refusal is the reply for a reject or tempfail verdict, nil otherwise.
func (s *session) refusal(sr *pluginhost.StageResult) *milter.Response {
	switch sr.Verdict.Action {
	case registry.Reject:
		s.srv.stats.rejected.Add(1)
	case registry.TempFail:
		s.srv.stats.tempFailed.Add(1)
	default:
		return nil
	}
	s.log.Info("refused by plugin", "stage", sr.Stage, "plugin", sr.DecidedBy, "verdict", sr.Verdict.String())
	return verdictReply(sr.Verdict)
}

// run runs one stage under stage_timeout, telling the MTA every
// progress_interval that the milter is still at work.
func (s *session) run(m milter.Modifier, stage registry.Stage, pc *registry.ProcessingContext) (*pluginhost.StageResult, error) {
	s.began = true
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.StageTimeout.D())
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.srv.cfg.ProgressInterval.D())
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				// The connection's goroutine waits in ExecuteStage: this is the only writer now.
				if err := m.Progress(); err != nil {
					return // protocol < 6, or the MTA is gone: the stage's own timeout still holds
				}
				s.srv.stats.progress.Add(1)
			}
		}
	}()
	sr, err := s.srv.mgr.ExecuteStage(ctx, stage, pc)
	close(stop)
	wg.Wait()
	return sr, err
}

// guard turns a panic in the milter's own code into default_action: the
// connection goes on, the process too.
func (s *session) guard(what string, resp **milter.Response) {
	if v := recover(); v != nil {
		s.srv.stats.panics.Add(1)
		s.log.Error("panic in milter", "at", what, "panic", v, "stack", string(debug.Stack()))
		*resp = s.srv.localError(s.log, fmt.Sprintf("%s: panic: %v", what, v))
	}
}

// hasControl reports whether addr holds a control character, which RFC
// 5321 allows nowhere in a mailbox.
func hasControl(addr string) bool {
	return strings.ContainsFunc(addr, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func phaseName(p registry.Phase) string {
	switch p {
	case registry.PhaseConnect:
		return "connect"
	case registry.PhaseHelo:
		return "helo"
	case registry.PhaseMail:
		return "mail"
	case registry.PhaseRcpt:
		return "rcpt"
	}
	return "message"
}
