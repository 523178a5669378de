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
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

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
	// MaxHeaderBytes bounds a message's header section (default
	// DefaultMaxHeaderBytes); MaxBytesInFlight bounds the message bytes
	// held in memory by all transfers at once (0: no limit).
	MaxHeaderBytes   int64
	MaxBytesInFlight int64
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
	be := &backend{cfg: cfg, mgr: mgr, spool: sp, log: logger, local: domains.NewSet(cfg.LocalDomains), budget: newBudget(cfg.MaxBytesInFlight)}
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
	// budget bounds the message bytes in memory (data.go).
	budget *budget

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
