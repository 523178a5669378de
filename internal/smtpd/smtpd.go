// Package smtpd is Elemta's SMTP receiver on emersion/go-smtp. It runs the
// plugin stages at the SMTP steps they belong to and writes accepted mail
// to the spool before it answers 250:
//
//	SMTP step          stage            phase          refusal
//	first HELO/EHLO    pre-reception    PhaseConnect   reply to HELO (go-smtp opens sessions there)
//	HELO/EHLO          pre-reception    PhaseHelo      reply to HELO
//	MAIL FROM          pre-reception    PhaseMail      reply to MAIL
//	each RCPT TO       pre-reception    PhaseRcpt      that recipient only
//	end of DATA        post-reception   PhaseMessage   reply to DATA
//	end of DATA        pre-queue        PhaseMessage   reply to DATA
//	                   spool (fsync)                   451 on failure, else 250 with the queue id
//
// A reject verdict becomes a 5xx with the plugin's code, enhanced code and
// text, tempfail a 4xx, quarantine is accepted into the spool's quarantine,
// accept continues. Header changes of every stage of the transaction are
// applied with Message.Rewrite when the message is spooled.
package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/elemta/elemta/internal/domains"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

// Config is what the receiver needs to know.
type Config struct {
	// Hostname is announced in the greeting and written into Received.
	Hostname string
	// MaxMessageBytes bounds DATA (0: no limit); MaxRecipients bounds RCPT
	// per transaction (0: no limit).
	MaxMessageBytes int64
	MaxRecipients   int
	// MaxLineLength bounds command and message lines (default 2000, twice
	// RFC 5321's 1000).
	MaxLineLength int
	// TLS enables STARTTLS when set.
	TLS *tls.Config
	// Credentials enables AUTH PLAIN when non-nil.
	Credentials Credentials
	// AllowPlaintextAuth permits AUTH on a connection without TLS.
	AllowPlaintextAuth bool
	// ReadTimeout and WriteTimeout bound each client read and write.
	ReadTimeout, WriteTimeout time.Duration
	// StageTimeout bounds one stage's run (default 2 minutes).
	StageTimeout time.Duration
	// Recipient domains. A recipient whose domain is in LocalDomains
	// (lowercase, compared case-insensitively), or any recipient when
	// AllDomainsLocal, is accepted from every client. Any other recipient
	// is relaying: accepted only from an authenticated session when
	// RelayAuthenticated (a smarthost carries it on), otherwise refused
	// with 550 5.7.1 before the pre-reception stage runs. The zero value
	// accepts no recipient at all.
	LocalDomains       []string
	AllDomainsLocal    bool
	RelayAuthenticated bool
}

// Server is an SMTP receiver.
type Server struct {
	smtp  *smtp.Server
	be    *backend
	conns tracker
}

// Stats counts the receiver's outcomes.
type Stats struct {
	Accepted, Quarantined, Rejected, TempFailed int64
	// Aborted counts DATA transfers the client broke off.
	Aborted int64
}

// New returns a receiver that runs mgr's stages and queues into sp.
func New(cfg Config, mgr *registry.Manager, sp *spool.Spool, logger *slog.Logger) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.StageTimeout <= 0 {
		cfg.StageTimeout = 2 * time.Minute
	}
	be := &backend{cfg: cfg, mgr: mgr, spool: sp, log: logger, local: domains.NewSet(cfg.LocalDomains)}
	s := smtp.NewServer(be)
	s.Domain = cfg.Hostname
	s.MaxMessageBytes = cfg.MaxMessageBytes
	s.MaxRecipients = cfg.MaxRecipients
	if cfg.MaxLineLength > 0 {
		s.MaxLineLength = cfg.MaxLineLength
	}
	s.TLSConfig = cfg.TLS
	s.AllowInsecureAuth = cfg.AllowPlaintextAuth
	s.ReadTimeout = cfg.ReadTimeout
	s.WriteTimeout = cfg.WriteTimeout
	s.ErrorLog = slogAdapter{logger}
	return &Server{smtp: s, be: be}
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.conns.mu.Lock()
	if s.conns.down {
		s.conns.mu.Unlock()
		l.Close()
		return nil
	}
	s.conns.listeners = append(s.conns.listeners, l)
	s.conns.mu.Unlock()
	err := s.smtp.Serve(&trackedListener{Listener: l, t: &s.conns})
	s.conns.mu.Lock()
	down := s.conns.down
	s.conns.mu.Unlock()
	if down || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for sessions in flight until ctx ends;
// then it closes the connections left (go-smtp's Close does nothing after
// Shutdown, so the receiver tracks them itself).
func (s *Server) Shutdown(ctx context.Context) error {
	// go-smtp registers a listener only once its Serve goroutine runs:
	// close them here too, or a Shutdown right after Serve leaves Accept
	// blocked.
	s.conns.mu.Lock()
	s.conns.down = true
	for _, l := range s.conns.listeners {
		l.Close()
	}
	s.conns.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		s.conns.closeAll()
		// Wait for the cut sessions' handlers: each ends with Logout,
		// which calls the plugins (Manager.EndSession), and the caller
		// closes the plugins next. Bounded by the stage timeouts.
		s.conns.handlers.Wait()
	}
	return err
}

// tracker remembers the open connections.
type tracker struct {
	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	listeners []net.Listener
	down      bool
	// handlers counts the accepted connections whose session has not
	// ended yet: go-smtp closes a connection after the session's Logout.
	handlers sync.WaitGroup
}

func (t *tracker) closeAll() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close() // the handler's own Close marks it done
	}
}

type trackedListener struct {
	net.Listener
	t *tracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.t.mu.Lock()
	if l.t.conns == nil {
		l.t.conns = map[*trackedConn]struct{}{}
	}
	tc := &trackedConn{Conn: c, t: l.t}
	l.t.conns[tc] = struct{}{}
	l.t.handlers.Add(1)
	l.t.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	t    *tracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
		c.t.handlers.Done()
	})
	return c.Conn.Close()
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	b := s.be
	return Stats{Accepted: b.accepted.Load(), Quarantined: b.quarantined.Load(), Rejected: b.rejected.Load(), TempFailed: b.tempFailed.Load(), Aborted: b.aborted.Load()}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn("smtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }

type backend struct {
	cfg   Config
	mgr   *registry.Manager
	spool *spool.Spool
	log   *slog.Logger
	// local is the set of Config.LocalDomains.
	local domains.Set

	accepted, quarantined, rejected, tempFailed, aborted atomic.Int64
}

// NewSession is called by go-smtp at the first HELO/EHLO: it runs the
// connect and HELO phases.
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{be: b, conn: c, id: spool.NewID(time.Now())}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		s.ip = ap.Addr().Unmap()
	}
	s.log = b.log.With("session", s.id, "client", s.ip.String())
	// go-smtp drops a session it could not open without Logout: end it
	// here, or plugins keep what they took at connect (a session slot).
	if err := s.preReception(registry.PhaseConnect, nil); err != nil {
		s.Logout()
		return nil, err
	}
	if err := s.helo(c.Hostname()); err != nil {
		s.Logout()
		return nil, err
	}
	return s, nil
}

type session struct {
	be   *backend
	conn *smtp.Conn
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
}

func (s *session) envelope() registry.Envelope {
	_, isTLS := s.conn.TLSConnectionState()
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

func (s *session) run(stage registry.Stage, pc *registry.ProcessingContext) (*registry.StageResult, error) {
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
func (s *session) verdictError(sr *registry.StageResult, atData bool) error {
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

func (s *session) AuthMechanisms() []string {
	if s.be.cfg.Credentials == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.be.cfg.Credentials == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return s.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) login(username, password string) error {
	if !s.be.cfg.Credentials.Check(username, password) {
		s.log.Info("auth failed", "user", username)
		return smtp.ErrAuthFailed
	}
	s.mu.Lock()
	s.authUser = username
	s.mu.Unlock()
	s.log.Info("authenticated", "user", username)
	return nil
}

// loginServer is the server side of the (obsolete but common) LOGIN
// mechanism, which go-sasl implements only as a client: "Username:",
// "Password:" challenges; an initial response is the user name.
type loginServer struct {
	auth func(user, pass string) error
	step int
	user string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if len(response) == 0 {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(response))
	}
	return nil, false, smtp.ErrAuthFailed
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetTx()
	if hasControl(from) {
		return errBadSender
	}
	if h := s.conn.Hostname(); h != s.heloName { // a later EHLO
		if err := s.helo(h); err != nil {
			return err
		}
	}
	s.from = from
	s.pc = registry.NewProcessingContext(&registry.Message{}, &registry.Session{ID: s.id, Hostname: s.be.cfg.Hostname})
	s.adds = append([]registry.Field(nil), s.sessionAdds...)
	s.removes = append([]registry.Removal(nil), s.sessionRemoves...)
	if err := s.preReception(registry.PhaseMail, s.pc); err != nil {
		s.resetTx()
		return err
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	if to == "" || strings.ContainsAny(to, "/\\\x00") || !strings.Contains(to, "@") || hasControl(to) {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	}
	if !s.mayReceive(to) {
		s.be.rejected.Add(1)
		s.log.Info("relaying denied", "rcpt", to, "authenticated", s.authUser != "")
		return errRelay
	}
	if slices.Contains(s.rcpts, to) {
		return nil // accepted already: one copy, one RCPT to a smarthost
	}
	s.rcpts = append(s.rcpts, to)
	if err := s.preReception(registry.PhaseRcpt, s.pc); err != nil {
		s.rcpts = s.rcpts[:len(s.rcpts)-1] // refuse this one, keep the others
		return err
	}
	return nil
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

// Reply errors of DATA.
var (
	errBareLF  = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Bare LF or CR in message: lines must end with CRLF"}
	errNUL     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "NUL byte in message"}
	errLong    = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Line too long"}
	errSpool   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not queue the message, try again later"}
	errAborted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message transfer aborted"}
)

// Data reads the message and queues it. It works on a copy of the
// transaction taken before it reads and never writes the session: go-smtp
// resets the transaction itself (Reset) once Data returns, and for BDAT it
// runs Data in its own goroutine, which an aborted transfer leaves running
// while the connection goes on with the next commands.
func (s *session) Data(r io.Reader) error {
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

func (s *session) resetTx() {
	s.pc, s.from, s.rcpts, s.adds, s.removes = nil, "", nil, nil, nil
	s.quarantine = s.sessionQuarantine
}

func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetTx()
}

// Logout ends the session: plugins that keep per-session state (a rate
// limiter's connection slot) are told through Manager.EndSession.
func (s *session) Logout() error {
	s.mu.Lock()
	env := s.envelope()
	s.mu.Unlock()
	pc := registry.NewProcessingContext(&registry.Message{Envelope: env}, &registry.Session{ID: s.id, Hostname: s.be.cfg.Hostname})
	if err := s.be.mgr.EndSession(context.Background(), pc); err != nil { // each plugin under its own timeout
		s.log.Warn("end of session", "err", err)
	}
	return nil
}

// Credentials maps user names to bcrypt password hashes.
type Credentials map[string][]byte

// Check reports whether password is user's. Unknown users cost a bcrypt
// comparison too, so timing does not tell them apart.
func (c Credentials) Check(user, password string) bool {
	hash, ok := c[user]
	if !ok {
		hash = dummyHash
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && ok
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.MinCost)

// LoadCredentials reads a credentials file: one "user:bcrypt-hash" per
// line (htpasswd -B format); blank lines and lines starting with # are
// ignored.
func LoadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	return ParseCredentials(path, f)
}

// ParseCredentials parses the credentials file format from r; name is used
// in errors.
func ParseCredentials(name string, r io.Reader) (Credentials, error) {
	c := Credentials{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("credentials: %s:%d: want user:bcrypt-hash", name, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("credentials: %s:%d: user %s: not a bcrypt hash: %w", name, n, user, err)
		}
		if _, dup := c[user]; dup {
			return nil, fmt.Errorf("credentials: %s:%d: user %s listed twice", name, n, user)
		}
		c[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials: %s: %w", name, err)
	}
	return c, nil
}
