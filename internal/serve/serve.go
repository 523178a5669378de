// Package serve is `elemta serve`: the SMTP receiver (internal/smtpd), the
// durable spool (internal/spool) and the delivery worker
// (internal/delivery) wired together under one [server] config table.
//
// Start order: open the spool (discarding files half-written at a crash
// and picking up what was queued), start the delivery worker, listen.
// Shutdown order: stop accepting, let sessions in flight finish until the
// shutdown deadline and then cut them, let deliveries in flight finish
// until the same deadline and then cancel them (left queued as they were),
// close the spool. An acknowledged message is on disk before its 250, so
// whatever is still queued is delivered after the next start.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/elemta/elemta/internal/delivery"
	"github.com/elemta/elemta/internal/domains"
	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// Config is the [server] table.
type Config struct {
	// Listen is the SMTP address, host:port.
	Listen string `toml:"listen"`
	// Hostname is announced in the greeting, Received and DSNs.
	Hostname string `toml:"hostname"`
	// MaxMessageSize bounds DATA in bytes; MaxRecipients bounds RCPT per
	// transaction.
	MaxMessageSize int64 `toml:"max_message_size"`
	MaxRecipients  int   `toml:"max_recipients"`
	// MaxHeaderSize bounds a message's header section in bytes (552 5.3.4
	// past it). MaxBytesInFlight bounds the bytes of the messages held in
	// memory at once, all connections together (451 4.3.1 past it; 0: no
	// limit).
	MaxHeaderSize    int64 `toml:"max_header_size"`
	MaxBytesInFlight int64 `toml:"max_bytes_in_flight"`
	// SpoolDir holds the queue; MaildirRoot the mailboxes
	// (<root>/<domain>/<local-part>/).
	SpoolDir    string `toml:"spool_dir"`
	MaildirRoot string `toml:"maildir_root"`
	// TLSCert and TLSKey (PEM files) enable STARTTLS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AuthFile (lines of user:bcrypt-hash) enables AUTH PLAIN, refused
	// without TLS unless AllowPlaintextAuth.
	AuthFile           string `toml:"auth_file"`
	AllowPlaintextAuth bool   `toml:"allow_plaintext_auth"`
	// ShutdownTimeout is how long sessions, then deliveries, in flight
	// may take to finish after SIGTERM (one deadline for both).
	ShutdownTimeout registry.Duration `toml:"shutdown_timeout"`
	// ReadTimeout is the old single read timeout: when set it is used for
	// command_timeout and data_timeout left at their defaults, with a
	// warning (ApplyDeprecated).
	ReadTimeout registry.Duration `toml:"read_timeout"`
	// Limits are the connection, timeout, error and AUTH limits
	// (max_connections, command_timeout, ...): keys of this table.
	smtpd.Limits
	// DeliveryWorkers is how many messages are delivered at once;
	// RetryBase doubles per attempt up to RetryMax; temporary failures
	// bounce after MaxQueueAge.
	DeliveryWorkers int               `toml:"delivery_workers"`
	RetryBase       registry.Duration `toml:"retry_base"`
	RetryMax        registry.Duration `toml:"retry_max"`
	MaxQueueAge     registry.Duration `toml:"max_queue_age"`
	// Relay (host:port), when set, sends every message to that smarthost
	// instead of the Maildirs; RelayStartTLS requires STARTTLS there (the
	// certificate is verified against the host).
	Relay         string `toml:"relay"`
	RelayStartTLS bool   `toml:"relay_starttls"`
	// RelayWorkers is how many smarthost transactions run at once, apart
	// from DeliveryWorkers (a stalled smarthost never holds the Maildir
	// deliveries); RelayQueue is how many relayed messages may wait for
	// one (0: 4 × RelayWorkers). The timeouts bound each wait for the
	// smarthost, RFC 5321 §4.5.3.2 (see the delivery package).
	RelayWorkers          int               `toml:"relay_workers"`
	RelayQueue            int               `toml:"relay_queue"`
	RelayConnectTimeout   registry.Duration `toml:"relay_connect_timeout"`
	RelayGreetingTimeout  registry.Duration `toml:"relay_greeting_timeout"`
	RelayMailTimeout      registry.Duration `toml:"relay_mail_timeout"`
	RelayRcptTimeout      registry.Duration `toml:"relay_rcpt_timeout"`
	RelayDataInitTimeout  registry.Duration `toml:"relay_data_init_timeout"`
	RelayDataBlockTimeout registry.Duration `toml:"relay_data_block_timeout"`
	RelayDataTermTimeout  registry.Duration `toml:"relay_data_term_timeout"`
	// PIDFile is where the serving process writes its pid once it is
	// ready (elemta reload and elemta upgrade find it there; default
	// <spool_dir>/elemta.pid).
	PIDFile string `toml:"pid_file"`
	// UpgradeTimeout bounds a binary upgrade: the new process must be
	// serving within it (the old one's drain included), or it is stopped
	// and the old one serves on.
	UpgradeTimeout registry.Duration `toml:"upgrade_timeout"`
	// LocalDomains are the recipient domains this server accepts mail for
	// from anyone. A recipient in another domain is relaying: refused at
	// RCPT with 550 5.7.1 unless the session authenticated and Relay is
	// set. Empty: every domain is local when Listen is a loopback address
	// (a development box); otherwise no domain is, which Validate refuses
	// without a Relay (the server could accept nothing).
	LocalDomains []string `toml:"local_domains"`
	// AddDateMessageID adds Date and Message-ID to an authenticated
	// client's message that lacks them (RFC 6409 §8), before the plugins
	// run, so a DKIM signature covers them (default on).
	AddDateMessageID bool `toml:"add_date_message_id"`
	// RelayDowngrade8Bit converts 8-bit messages for the smarthost to
	// 7-bit at reception, before the plugins sign them (default on).
	RelayDowngrade8Bit bool `toml:"relay_downgrade_8bit"`
	// StrictUTF8Headers refuses 8-bit header fields in mail sent without
	// SMTPUTF8 (default off: accepted, as Postfix and Exim do).
	StrictUTF8Headers bool `toml:"strict_utf8_headers"`
	// DeliverAtReception writes a message whose recipients are all local
	// straight into their Maildirs before the 250, with no spool entry,
	// while no plugin runs at pre-delivery or post-delivery (default on).
	DeliverAtReception bool `toml:"deliver_at_reception"`
}

// DefaultConfig is the [server] table of a config that has none.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:2525",
		Hostname:        "localhost",
		MaxMessageSize:  50 << 20,
		MaxRecipients:   100,
		SpoolDir:        "var/spool",
		MaildirRoot:     "var/mail",
		ShutdownTimeout: registry.Duration(30 * time.Second),
		UpgradeTimeout:  registry.Duration(2 * time.Minute),
		Limits:          smtpd.DefaultLimits(),
		DeliveryWorkers: 4,
		RetryBase:       registry.Duration(time.Minute),
		RetryMax:        registry.Duration(time.Hour),
		MaxQueueAge:     registry.Duration(5 * 24 * time.Hour),
		// Postfix's header_size_limit is 100 KiB; long ARC and Received
		// chains fit in 256 KiB. Ten messages of the largest size in flight.
		MaxHeaderSize:    smtpd.DefaultMaxHeaderBytes,
		MaxBytesInFlight: 512 << 20,

		RelayWorkers:          4,
		RelayQueue:            16,
		RelayConnectTimeout:   registry.Duration(30 * time.Second),
		RelayGreetingTimeout:  registry.Duration(5 * time.Minute),
		RelayMailTimeout:      registry.Duration(5 * time.Minute),
		RelayRcptTimeout:      registry.Duration(5 * time.Minute),
		RelayDataInitTimeout:  registry.Duration(2 * time.Minute),
		RelayDataBlockTimeout: registry.Duration(3 * time.Minute),
		RelayDataTermTimeout:  registry.Duration(10 * time.Minute),
		AddDateMessageID:      true,
		RelayDowngrade8Bit:    true,
		DeliverAtReception:    true,
	}
}

// Validate reports every config mistake at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("server: "+format, args...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.SpoolDir == "" {
		bad("spool_dir is required")
	}
	if c.MaildirRoot == "" {
		bad("maildir_root is required")
	}
	if c.MaxMessageSize < 0 {
		bad("max_message_size must not be negative")
	}
	if c.MaxHeaderSize <= 0 {
		bad("max_header_size must be positive")
	}
	if c.MaxBytesInFlight < 0 {
		bad("max_bytes_in_flight must not be negative (0: no limit)")
	}
	if c.MaxBytesInFlight > 0 && (c.MaxMessageSize == 0 || c.MaxMessageSize > c.MaxBytesInFlight) {
		bad("max_bytes_in_flight (%d) must be at least max_message_size (%d, 0: no limit): a message of the largest size could never be accepted", c.MaxBytesInFlight, c.MaxMessageSize)
	}
	if c.MaxRecipients < 0 {
		bad("max_recipients must not be negative")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert and tls_key go together")
	}
	if c.Relay != "" {
		if _, _, err := net.SplitHostPort(c.Relay); err != nil {
			bad("relay %q: %v", c.Relay, err)
		}
	}
	if c.DeliveryWorkers < 0 {
		bad("delivery_workers must not be negative")
	}
	if c.UpgradeTimeout <= 0 {
		bad("upgrade_timeout must be positive (got %s)", c.UpgradeTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout must be positive (got %s)", c.ShutdownTimeout)
	}
	errs = append(errs, c.validateRelay()...)
	for _, d := range c.LocalDomains {
		if d == "" || strings.ContainsAny(d, "@ \t\r\n/\\") || strings.HasPrefix(d, ".") {
			bad("local_domains: %q is not a domain", d)
		} else if err := domains.Valid(d); err != nil {
			bad("local_domains: %q is not a valid internationalized domain name: %v", d, err)
		}
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.LocalDomains) == 0 && c.Relay == "" && !loopback(c.Listen) {
		bad("local_domains is required when listen (%q) is not a loopback address: list the domains this server receives mail for", c.Listen)
	}
	return errors.Join(errs...)
}

// validateRelay checks the relay_* worker and timeout keys.
func (c Config) validateRelay() []error {
	var errs []error
	if c.RelayWorkers < 0 {
		errs = append(errs, errors.New("server: relay_workers must not be negative"))
	}
	if c.RelayQueue < 0 {
		errs = append(errs, errors.New("server: relay_queue must not be negative"))
	}
	for _, t := range []struct {
		key string
		d   registry.Duration
	}{
		{"relay_connect_timeout", c.RelayConnectTimeout}, {"relay_greeting_timeout", c.RelayGreetingTimeout},
		{"relay_mail_timeout", c.RelayMailTimeout}, {"relay_rcpt_timeout", c.RelayRcptTimeout},
		{"relay_data_init_timeout", c.RelayDataInitTimeout}, {"relay_data_block_timeout", c.RelayDataBlockTimeout},
		{"relay_data_term_timeout", c.RelayDataTermTimeout},
	} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("server: %s must be positive (got %s)", t.key, t.d))
		}
	}
	return errs
}

// relayConfig is the delivery worker's view of the relay_* keys.
func (c Config) relayConfig() delivery.Relay {
	return delivery.Relay{Addr: c.Relay, StartTLS: c.RelayStartTLS, Timeouts: delivery.Timeouts{
		Connect: c.RelayConnectTimeout.D(), Greeting: c.RelayGreetingTimeout.D(), Mail: c.RelayMailTimeout.D(),
		Rcpt: c.RelayRcptTimeout.D(), DataInit: c.RelayDataInitTimeout.D(), DataBlock: c.RelayDataBlockTimeout.D(),
		DataTerm: c.RelayDataTermTimeout.D()}}
}

// ApplyDeprecated maps keys kept for old configs onto their successors and
// returns a warning for each one set.
func (c *Config) ApplyDeprecated() []string {
	var warnings []string
	if c.ReadTimeout != 0 {
		d := smtpd.DefaultLimits()
		if c.CommandTimeout == d.CommandTimeout {
			c.CommandTimeout = c.ReadTimeout
		}
		if c.DataTimeout == d.DataTimeout {
			c.DataTimeout = c.ReadTimeout
		}
		warnings = append(warnings, fmt.Sprintf("server: read_timeout is deprecated: command_timeout is %s and data_timeout %s; set those instead", c.CommandTimeout, c.DataTimeout))
	}
	return warnings
}

// loopback reports whether listen's host is a loopback address or
// "localhost": only local clients can connect.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// PIDPath is where the pid file is: pid_file, else <spool_dir>/elemta.pid.
func (c Config) PIDPath() string {
	if c.PIDFile != "" {
		return c.PIDFile
	}
	return filepath.Join(c.SpoolDir, "elemta.pid")
}

var _ smtpd.LocalDelivery = (*delivery.Worker)(nil)

// Server is a running `elemta serve`.
type Server struct {
	cfg     Config
	opts    Options
	plugins *pluginhost.Live
	reload  reloadState
	log     *slog.Logger
	spool   *spool.Spool
	smtp    *smtpd.Server
	ln      net.Listener
	worker  *delivery.Worker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errc    chan error

	once sync.Once
	err  error
}

// Options are what a long-running server (the binary) adds to Start.
type Options struct {
	// Load builds a config file's [server] table and a started plugin
	// manager for Reload. With Load set the Server owns the manager it
	// is started with (and every manager Load returns): it closes each
	// one once it is replaced and its last user is done, and the current
	// one at Shutdown. Without it Reload fails and the caller keeps mgr.
	Load Loader
	// ConfigPath is the file Reload reads when given none.
	ConfigPath string
	// Listener, when set, is served instead of listening on cfg.Listen (a
	// socket inherited from the process being upgraded).
	Listener net.Listener
}

// Start opens the spool, starts delivery and listens. The caller must
// call Shutdown.
func Start(ctx context.Context, cfg Config, mgr *pluginhost.Manager, logger *slog.Logger) (*Server, error) {
	return StartWith(ctx, cfg, mgr, logger, Options{})
}

// StartWith is Start with the options of a long-running server.
func StartWith(ctx context.Context, cfg Config, mgr *pluginhost.Manager, logger *slog.Logger, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scfg := smtpd.Config{Hostname: cfg.Hostname, MaxMessageBytes: cfg.MaxMessageSize, MaxRecipients: cfg.MaxRecipients,
		MaxHeaderBytes: cfg.MaxHeaderSize, MaxBytesInFlight: cfg.MaxBytesInFlight,
		AllowPlaintextAuth: cfg.AllowPlaintextAuth, WriteTimeout: time.Minute, Limits: cfg.Limits,
		LocalDomains: cfg.LocalDomains, AllDomainsLocal: len(cfg.LocalDomains) == 0 && loopback(cfg.Listen),
		RelayAuthenticated: cfg.Relay != "", AddDateMessageID: cfg.AddDateMessageID,
		Downgrade8Bit: cfg.RelayDowngrade8Bit, StrictUTF8Headers: cfg.StrictUTF8Headers}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server: tls: %w", err)
		}
		scfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.AuthFile != "" {
		creds, err := smtpd.LoadCredentials(cfg.AuthFile)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		scfg.Credentials = creds
	}
	sp, discarded, err := spool.Open(cfg.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if discarded > 0 || sp.Corrupt() > 0 {
		logger.Warn("spool recovered", "discarded_half_written", discarded, "corrupt_moved_to_quarantine", sp.Corrupt())
	}
	logger.Info("spool opened", "dir", cfg.SpoolDir, "queued", len(sp.List()))
	ln := opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			sp.Close()
			return nil, fmt.Errorf("server: listen: %w", err)
		}
	}
	s := &Server{cfg: cfg, opts: opts, log: logger, spool: sp, ln: ln, errc: make(chan error, 1)}
	s.plugins = pluginhost.Pin(mgr)
	if opts.Load != nil {
		s.plugins = pluginhost.NewLive(mgr)
	}
	worker := delivery.NewLive(delivery.Config{MaildirRoot: cfg.MaildirRoot, Hostname: cfg.Hostname, Concurrency: cfg.DeliveryWorkers,
		RetryBase: cfg.RetryBase.D(), RetryMax: cfg.RetryMax.D(), MaxAge: cfg.MaxQueueAge.D(),
		Relay: cfg.relayConfig(), RelayConcurrency: cfg.RelayWorkers, RelayQueue: cfg.RelayQueue,
		LocalDomains: cfg.LocalDomains}, s.plugins, sp, logger)
	s.worker = worker
	if cfg.DeliverAtReception {
		scfg.Local = worker
	}
	s.smtp = smtpd.NewLive(scfg, s.plugins, sp, logger)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = worker.Run(wctx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.smtp.Serve(ln); err != nil {
			s.errc <- fmt.Errorf("server: serve: %w", err)
		}
	}()
	logger.Info("listening", "addr", ln.Addr().String(), "hostname", cfg.Hostname, "local_domains", localDomains(scfg))
	return s, nil
}

func localDomains(c smtpd.Config) string {
	if c.AllDomainsLocal {
		return "all (loopback listener, local_domains empty)"
	}
	return strings.Join(c.LocalDomains, ",")
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Spool is the server's spool (the admin API's queue).
func (s *Server) Spool() *spool.Spool { return s.spool }

// SMTPStats returns the receiver's counters.
func (s *Server) SMTPStats() smtpd.Stats { return s.smtp.Stats() }

// DeliveryStats returns the delivery worker's counters.
func (s *Server) DeliveryStats() delivery.Stats { return s.worker.Stats() }

// Err delivers an error if the listener fails.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting, waits for sessions in flight until ctx ends
// (then closes them: their messages were not acknowledged), stops the
// delivery worker, waiting for its deliveries in flight until ctx ends
// (then cancels them: their entries stay queued as they were, no attempt
// counted), and closes the spool. Either cut is reported as an error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		var errs []error
		if err := s.smtp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: sessions cut at the shutdown deadline: %w", err))
		}
		if err := s.worker.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: %w", err))
		}
		s.cancel()
		s.wg.Wait()
		if err := s.plugins.Close(); err != nil { // waits for the sessions' EndSession
			errs = append(errs, fmt.Errorf("server: close plugins: %w", err))
		}
		if err := s.spool.Close(); err != nil {
			errs = append(errs, err)
		}
		st := s.smtp.Stats()
		s.log.Info("stopped", "accepted", st.Accepted, "quarantined", st.Quarantined, "rejected", st.Rejected,
			"tempfailed", st.TempFailed, "aborted", st.Aborted, "queued", len(s.spool.List()))
		s.err = errors.Join(errs...)
	})
	return s.err
}

// Run serves until ctx is cancelled (SIGTERM in the binary), then shuts
// down within cfg.ShutdownTimeout.
func Run(ctx context.Context, cfg Config, mgr *pluginhost.Manager, logger *slog.Logger) error {
	s, err := Start(ctx, cfg, mgr, logger)
	if err != nil {
		return err
	}
	return s.Wait(ctx)
}

// Wait serves until ctx is cancelled or the listener fails, then shuts
// down within the config's shutdown_timeout.
func (s *Server) Wait(ctx context.Context) error {
	cfg, logger := s.cfg, s.log
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-s.Err():
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	return errors.Join(serveErr, s.Shutdown(sctx))
}
