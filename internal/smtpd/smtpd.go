// Package smtpd is Elemta's SMTP receiver on emersion/go-smtp. It runs the
// plugin stages at the SMTP steps they belong to and writes accepted mail
// to the spool before it answers 250:
//
//	SMTP step          stage            phase          refusal
//	connect, before 220 pre-reception   PhaseConnect   the connection: 554 or 421 instead of the greeting
//	HELO/EHLO          pre-reception    PhaseHelo      reply to HELO
//	MAIL FROM          pre-reception    PhaseMail      reply to MAIL
//	each RCPT TO       pre-reception    PhaseRcpt      that recipient only
//	end of DATA        post-reception   PhaseMessage   reply to DATA
//	end of DATA        pre-queue        PhaseMessage   reply to DATA
//	                   spool (fsync)                   451 on failure, else 250 with the queue id
//
// With Config.Local set, a message Local accepts (every recipient local,
// no delivery-stage plugin) and not quarantined is delivered into its
// mailboxes before the 250 instead of spooled (Local.DeliverNow spools it
// when a copy fails).
//
// A reject verdict becomes a 5xx with the plugin's code, enhanced code and
// text, tempfail a 4xx, quarantine is accepted into the spool's quarantine,
// accept continues. Header changes of every stage of the transaction are
// applied with Message.Rewrite when the message is spooled.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/elemta/elemta/internal/domains"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
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
	// MaxHeaderBytes bounds a message's header section (default
	// DefaultMaxHeaderBytes); MaxBytesInFlight bounds the message bytes
	// held in memory by all transfers at once (0: no limit).
	MaxHeaderBytes   int64
	MaxBytesInFlight int64
	// TLS enables STARTTLS when set.
	TLS *tls.Config
	// Credentials enables AUTH PLAIN and LOGIN when non-nil.
	Credentials *Credentials
	// AllowPlaintextAuth permits AUTH on a connection without TLS.
	AllowPlaintextAuth bool
	// WriteTimeout bounds each reply's write. Reads are bounded by Limits.
	WriteTimeout time.Duration
	// Limits bound each client and all of them; zero fields get
	// DefaultLimits' values, but for the two delays (zero: none).
	Limits Limits
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
	// AddDateMessageID adds Date and Message-ID to an authenticated
	// client's message that lacks them (RFC 6409 §8), before the
	// post-reception stage, so DKIM signing covers them.
	AddDateMessageID bool
	// Downgrade8Bit converts a message with 8-bit content for the
	// smarthost (a recipient outside LocalDomains, with
	// RelayAuthenticated) to 7-bit before the post-reception stage, so
	// what DKIM signs is what any smarthost gets (downgrade.go).
	Downgrade8Bit bool
	// StrictUTF8Headers refuses a header section with bytes over 127 in a
	// transaction without SMTPUTF8 (554 5.6.7, RFC 6532 §3.1). Off (the
	// zero value), such a message is accepted as Postfix
	// (strict_8bitmime = no) and Exim accept it: raw 8-bit Subject and
	// From fields from old clients are common in legitimate mail. In an
	// SMTPUTF8 transaction the header section must be valid UTF-8 either way.
	StrictUTF8Headers bool
	// Local, when set, delivers a message that is not quarantined and
	// whose recipients it accepts (Local.DeliversNow) into their mailboxes
	// before the 250, instead of spooling it: one file per copy, no spool
	// entry (serve's deliver_at_reception).
	Local LocalDelivery
}

// Server is an SMTP receiver.
type Server struct {
	cfg      Config
	limits   Limits
	maxConns int // limits.MaxConnections, lowered to what RLIMIT_NOFILE allows
	log      *slog.Logger
	now      func() time.Time
	smtp     *smtp.Server
	be       *backend
	conns    tracker
	auth     *authThrottle
	counters counters
}

// counters are the guard's outcomes (the backend counts the transactions').
type counters struct {
	refused, timeouts, beforeHelo, errors, authFailures, authThrottled atomic.Int64
	// connections admitted, STARTTLS handshakes begun, AUTH successes;
	// replies by class (1xx..5xx) the guard saw (plaintext only).
	connections, startTLS, authSuccesses atomic.Int64
	replies                              [6]atomic.Int64
}

// Stats counts the receiver's outcomes.
type Stats struct {
	Accepted, Quarantined, Rejected, TempFailed int64
	// Aborted counts DATA transfers the client broke off.
	Aborted int64
	// Connections refused over max_connections, max_connections_per_client
	// or for want of file descriptors; sessions cut at a timeout, for
	// commands before HELO, for too many errors.
	RefusedConnections, Timeouts, TooManyCommandsBeforeHelo, TooManyErrors int64
	// AuthFailures counts failed AUTH attempts, AuthThrottled those refused
	// with 454 without a password check.
	AuthFailures, AuthThrottled int64
	// OpenConnections is the number of client connections now.
	OpenConnections int
	// Connections counts connections admitted; StartTLS the STARTTLS
	// commands accepted; AuthSuccesses the successful AUTH commands.
	Connections, StartTLS, AuthSuccesses int64
	// Replies counts replies by class (index 2 for 2xx ... 5 for 5xx) the
	// connection guard saw: those of plaintext connections (after STARTTLS
	// the bytes are opaque to it).
	Replies [6]int64
}

// New returns a receiver that runs mgr's stages and queues into sp.
func New(cfg Config, mgr *pluginhost.Manager, sp *spool.Spool, logger *slog.Logger) *Server {
	return NewLive(cfg, pluginhost.Pin(mgr), sp, logger)
}

// NewLive returns a receiver that runs the stages of the manager plugins
// holds, which may be swapped while it runs (a config reload): each
// connection runs its connect and HELO phases and its end of session on
// the manager current when it connected, each transaction its MAIL, RCPT
// and DATA stages on the one current at its MAIL.
func NewLive(cfg Config, plugins *pluginhost.Live, sp *spool.Spool, logger *slog.Logger) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.StageTimeout <= 0 {
		cfg.StageTimeout = 2 * time.Minute
	}
	srv := &Server{cfg: cfg, limits: cfg.Limits.withDefaults(), log: logger, now: time.Now}
	srv.maxConns = connectionLimit(srv.limits, fileLimit())
	if srv.maxConns < srv.limits.MaxConnections {
		logger.Warn("max_connections lowered to what the file descriptor limit leaves", "max_connections", srv.limits.MaxConnections,
			"now", srv.maxConns, "rlimit_nofile", fileLimit(), "reserved_files", srv.limits.ReservedFiles)
	}
	srv.auth = newAuthThrottle(srv.limits, srv.now)
	be := &backend{srv: srv, cfg: cfg, plugins: plugins, spool: sp, log: logger, local: domains.NewSet(cfg.LocalDomains),
		budget: newBudget(cfg.MaxBytesInFlight)}
	srv.be = be
	s := smtp.NewServer(be)
	s.Domain = cfg.Hostname
	s.MaxMessageBytes = cfg.MaxMessageBytes
	s.MaxRecipients = cfg.MaxRecipients
	if cfg.MaxLineLength > 0 {
		s.MaxLineLength = cfg.MaxLineLength
	}
	s.TLSConfig = cfg.TLS
	// SMTPUTF8 (RFC 6531): UTF-8 addresses and header fields, only in a
	// transaction that asks for it (utf8.go). BINARYMIME is not offered:
	// the receiver refuses bare CR, LF and NUL, which binary bodies hold.
	s.EnableSMTPUTF8 = true
	s.AllowInsecureAuth = cfg.AllowPlaintextAuth
	s.ReadTimeout = 0 // the connection guard owns read deadlines (conn.go)
	s.WriteTimeout = cfg.WriteTimeout
	s.ErrorLog = slogAdapter{logger}
	srv.smtp = s
	return srv
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.conns.mu.Lock()
	if s.conns.down {
		s.conns.mu.Unlock()
		l.Close()
		return nil
	}
	ln := newListener(l, s)
	s.conns.listeners = append(s.conns.listeners, ln)
	s.conns.mu.Unlock()
	err := s.smtp.Serve(ln)
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

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	b, c := s.be, &s.counters
	return Stats{Accepted: b.accepted.Load(), Quarantined: b.quarantined.Load(), Rejected: b.rejected.Load(),
		TempFailed: b.tempFailed.Load(), Aborted: b.aborted.Load(),
		RefusedConnections: c.refused.Load(), Timeouts: c.timeouts.Load(), TooManyCommandsBeforeHelo: c.beforeHelo.Load(),
		TooManyErrors: c.errors.Load(), AuthFailures: c.authFailures.Load(), AuthThrottled: c.authThrottled.Load(),
		OpenConnections: s.conns.open(), Connections: c.connections.Load(), StartTLS: c.startTLS.Load(),
		AuthSuccesses: c.authSuccesses.Load(), Replies: c.replyCounts()}
}

func (c *counters) replyCounts() [6]int64 {
	var out [6]int64
	for i := range out {
		out[i] = c.replies[i].Load()
	}
	return out
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn("smtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }

type backend struct {
	srv *Server
	cfg Config
	// plugins hands out the manager each connection and transaction runs on.
	plugins *pluginhost.Live
	spool   *spool.Spool
	log     *slog.Logger
	// local is the set of Config.LocalDomains.
	local domains.Set
	// budget bounds the message bytes in memory (data.go).
	budget *budget

	accepted, quarantined, rejected, tempFailed, aborted atomic.Int64
}

// NewSession is called by go-smtp at the first HELO/EHLO, and at the
// first after STARTTLS: it runs the HELO phase. The connect phase ran
// before the greeting (backend.connect); its results carry over.
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	cc := connOf(c.Conn())
	if cc == nil {
		return nil, errors.New("smtpd: connection not accepted by this server's listener")
	}
	if err := cc.alive(); err != nil {
		return nil, err
	}
	s := &session{be: b, conn: c, cc: cc, id: cc.id, ip: cc.ip, log: cc.log,
		quarantine: cc.connQuarantine, sessionQuarantine: cc.connQuarantine,
		sessionAdds: slices.Clone(cc.connAdds), sessionRemoves: slices.Clone(cc.connRemoves)}
	if err := s.helo(c.Hostname()); err != nil {
		return nil, s.refuse(err)
	}
	cc.heloDone()
	return s, nil
}

// connect runs the connect phase of pre-reception before the greeting, on
// the connection's goroutine. It returns the reply that replaces the 220
// (and closes the connection) when a plugin refuses: 554 for a reject,
// 421 for a tempfail (RFC 5321 section 3.1).
func (b *backend) connect(cc *clientConn) *smtp.SMTPError {
	s := &session{be: b, cc: cc, id: cc.id, ip: cc.ip, log: cc.log}
	cc.plugins = b.plugins.Acquire() // released by endSession
	cc.connected = true              // plugins may take something (a session slot) even when they refuse
	if err := s.preReception(registry.PhaseConnect, nil); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			se = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
		}
		reply := *se
		reply.Code = 554
		if se.Code/100 == 4 {
			reply.Code = 421
		}
		reply.Message = b.cfg.Hostname + " " + reply.Message
		return &reply
	}
	cc.connQuarantine, cc.connAdds, cc.connRemoves = s.quarantine, s.sessionAdds, s.sessionRemoves
	return nil
}

// endSession tells the plugins that the connection ended (Manager.
// EndSession), once, with the envelope of its last session.
func (b *backend) endSession(cc *clientConn) {
	if !cc.connected {
		return
	}
	cc.mu.Lock()
	env := cc.lastEnv
	cc.mu.Unlock()
	env.ClientIP = cc.ip
	pc := registry.NewProcessingContext(&registry.Message{Envelope: env}, &registry.Session{ID: cc.id, Hostname: b.cfg.Hostname})
	defer cc.plugins.Release()
	if err := cc.plugins.Manager().EndSession(context.Background(), pc); err != nil { // each plugin under its own timeout
		cc.log.Warn("end of session", "err", err)
	}
}
