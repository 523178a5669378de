// Package milter is `elemta milter`: the plugin stages inside Postfix or
// Sendmail through the milter protocol (version 6, github.com/d--j/go-milter).
// See README.md for the stage-to-milter table and the MTA's settings.
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/d--j/go-milter"
	"golang.org/x/net/netutil"

	"github.com/elemta/elemta/pluginhost"
)

// Server serves the milter protocol on one listener.
type Server struct {
	cfg   Config
	mgr   *pluginhost.Manager
	log   *slog.Logger
	ctx   context.Context // cancelled by Shutdown's deadline: stages in flight end
	stop  context.CancelFunc
	ln    net.Listener
	ms    *milter.Server
	done  chan error
	ids   atomic.Uint64
	stats Stats
}

// Stats counts what the milter answered.
type Stats struct {
	accepted, rejected, tempFailed, quarantined atomic.Int64
	localErrors, panics, progress               atomic.Int64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	Accepted, Rejected, TempFailed, Quarantined, LocalErrors, Panics, Progress int64
}

// Stats returns the counters so far.
func (s *Server) Stats() StatsSnapshot {
	st := &s.stats
	return StatsSnapshot{Accepted: st.accepted.Load(), Rejected: st.rejected.Load(), TempFailed: st.tempFailed.Load(),
		Quarantined: st.quarantined.Load(), LocalErrors: st.localErrors.Load(), Panics: st.panics.Load(), Progress: st.progress.Load()}
}

// wantActions are the modifications the milter makes: header changes and
// the quarantine (Postfix: hold queue).
const wantActions = milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine

// wantProtocol are the steps the milter does without (no reply to header,
// end-of-header, body, DATA, unknown commands: one round trip less each)
// and the header values as written (OptHeaderLeadingSpace, which DKIM and
// ARC need). Each is used only when the MTA offers it.
const wantProtocol = milter.OptNoUnknown | milter.OptNoHeaderReply | milter.OptNoEOHReply | milter.OptNoBodyReply |
	milter.OptNoDataReply | milter.OptNoUnknownReply | milter.OptHeaderLeadingSpace

// macros are requested from the MTA at each stage (SMFIF_SETSYMLIST:
// Postfix and Sendmail honour it; the milter_*_macros settings in README.md
// are for an MTA that does not).
var macros = map[milter.MacroStage][]milter.MacroName{
	milter.StageConnect: {milter.MacroMTAFQDN, milter.MacroClientAddr, milter.MacroClientName, milter.MacroDaemonName},
	milter.StageHelo:    {milter.MacroTlsVersion, milter.MacroCipher},
	milter.StageMail:    {milter.MacroQueueId, milter.MacroAuthType, milter.MacroAuthAuthen, milter.MacroTlsVersion},
	milter.StageRcpt:    {milter.MacroQueueId},
	milter.StageData:    {milter.MacroQueueId},
	milter.StageEOM:     {milter.MacroQueueId},
}

// Start listens on cfg.Listen and serves in the background until
// Shutdown. The manager's plugins must be loaded; the caller closes it
// after Shutdown.
func Start(ctx context.Context, cfg Config, mgr *pluginhost.Manager, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("[milter]: %w", err)
	}
	network, address, err := ParseListen(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("[milter] listen: %w", err)
	}
	if network == "unix" {
		if err := removeStaleSocket(address); err != nil {
			return nil, err
		}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("milter: listen on %s: %w", cfg.Listen, err)
	}
	if network == "unix" {
		mode, _ := cfg.socketMode()
		if err := os.Chmod(address, os.FileMode(mode)); err != nil {
			ln.Close()
			return nil, fmt.Errorf("milter: socket %s: %w", address, err)
		}
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cfg: cfg, mgr: mgr, log: log, ctx: sctx, stop: stop, ln: netutil.LimitListener(ln, cfg.MaxConnections), done: make(chan error, 1)}
	opts := []milter.Option{
		milter.WithMilter(func() milter.Milter { return &session{srv: s, log: log} }),
		milter.WithActions(wantActions),
		milter.WithProtocols(wantProtocol),
		milter.WithNegotiationCallback(negotiate),
		milter.WithReadTimeout(cfg.ReadTimeout.D()),
		milter.WithWriteTimeout(cfg.WriteTimeout.D()),
	}
	for stage, names := range macros {
		opts = append(opts, milter.WithMacroRequest(stage, names))
	}
	s.ms = milter.NewServer(opts...)
	go func() { s.done <- s.ms.Serve(s.ln) }()
	log.Info("milter listening", "listen", cfg.Listen, "plugins", mgr.Loaded())
	return s, nil
}

// removeStaleSocket removes a unix socket left by an earlier run; any
// other file at the path is an error, never removed.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("milter: socket %s: %w", path, err)
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("milter: socket %s: a file that is not a socket is in the way", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("milter: socket %s: another process is listening on it", path)
	}
	return os.Remove(path)
}

// negotiate accepts the MTA's protocol version (2 to 6), requires the
// actions the milter needs and takes the protocol options the MTA offers
// among those it wants.
func negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions milter.OptAction, mtaProtocol, milterProtocol milter.OptProtocol,
	offered milter.DataSize) (uint32, milter.OptAction, milter.OptProtocol, milter.DataSize, error) {
	version := min(mtaVersion, milterVersion)
	if version < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: protocol version %d: want 2 to 6", mtaVersion)
	}
	if mtaActions&milterActions != milterActions {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: the MTA does not offer %v (it offers %v)", milterActions&^mtaActions, mtaActions)
	}
	return version, milterActions, milterProtocol & mtaProtocol, offered, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting, lets connections in flight finish until ctx
// ends, then cuts them and cancels their stages.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.ms.Shutdown(ctx)
	s.stop()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = errors.Join(fmt.Errorf("milter: connections cut at the shutdown deadline: %w", err), s.ms.Close())
	}
	if serr := <-s.done; serr != nil && !errors.Is(serr, milter.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("milter: serve: %w", serr))
	}
	return err
}

// localError logs a failure of the milter's own and returns the reply of
// default_action: a 451 for "tempfail", an accept for "accept".
func (s *Server) localError(log *slog.Logger, what string) *milter.Response {
	s.stats.localErrors.Add(1)
	log.Error("milter error: applying default_action", "err", what, "default_action", s.cfg.DefaultAction)
	if s.cfg.DefaultAction == "accept" {
		return milter.RespAccept
	}
	s.stats.tempFailed.Add(1)
	return replyLocalError
}

func (s *Server) nextID() string { return "m" + strconv.FormatUint(s.ids.Add(1), 10) }
