// The serving process: signals, the pid file, and binary upgrades with
// the listening socket handed from the old process to the new.

package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/elemta/elemta/pluginhost"
)

// DaemonOptions configure Daemon.
type DaemonOptions struct {
	// ConfigPath is the config file, re-read by every reload and by the
	// new process of an upgrade ("" : the loader's default).
	ConfigPath string
	// Parse reads and validates the config without building plugins: the
	// first thing a new process of an upgrade does, before the old one
	// lets go of the spool.
	Parse func(path string) (Config, error)
	// Load builds the [server] table and started plugins (Options.Load).
	Load Loader
	// Signals delivers SIGHUP (reload) and SIGUSR2 (upgrade).
	Signals <-chan os.Signal
	// Ready, when set, is told the server is serving (tests, systemd).
	Ready func(*Server)
	// Describe, when set, says what the server serves (the binary's
	// plugins, the instances running): written to the "serving" status
	// file when it is ready and after each successful reload, for
	// `elemta plugins list --server`.
	Describe func(*Server) any
	Log      *slog.Logger
}

// handoverFile names the socket between the old and the new process of an
// upgrade, passed with the listening sockets.
const handoverFile = "elemta-handover"

// The handover protocol, one line each way: the new process says
// "prepared" once its config is valid and it holds the listening socket;
// the old one stops accepting (the socket stays open: connections wait in
// its backlog, none is refused), drains its sessions and deliveries
// within shutdown_timeout, closes its plugins and the spool (their locks
// released) and answers "released"; the new one then opens the spool and
// starts its plugins, passes its readiness check (a greeting on its own
// listener) and tells tableflip it is ready, and the old process exits.
// If the new process fails or is not ready within upgrade_timeout the old
// one takes the spool and plugins back and serves on.
const (
	msgPrepared = "prepared"
	msgReleased = "released"
)

// Daemon runs the server until ctx ends: it starts it (taking over from
// the old process when it was started by an upgrade), reloads on SIGHUP,
// upgrades on SIGUSR2, writes each outcome next to the pid file
// (StatusPath) and shuts down within shutdown_timeout.
func Daemon(ctx context.Context, o DaemonOptions) error {
	cfg, err := o.Parse(o.ConfigPath)
	if err != nil {
		return err
	}
	// The new process has upgrade_timeout to be prepared, the old one
	// shutdown_timeout to drain, and the new one then the rest.
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: cfg.handoverTimeout(), PIDFile: cfg.PIDPath()})
	var ln net.Listener
	if err != nil {
		// One upgrader per process: a second Daemon in one process (tests)
		// serves without binary upgrades.
		o.Log.Warn("binary upgrades unavailable", "err", err)
		upg = nil
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("server: listen: %w", err)
		}
	} else {
		defer upg.Stop()
		if ln, err = upg.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("server: listen: %w", err)
		}
	}
	if upg != nil && upg.HasParent() {
		if err := takeOver(upg, cfg, o.Log); err != nil {
			return fmt.Errorf("server: upgrade: %w", err)
		}
	}
	srv, err := o.start(ctx, ln)
	if err != nil {
		return err
	}
	if err := ready(srv); err != nil {
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("server: readiness check: %w", err)
	}
	o.describe(cfg.PIDPath(), srv) // before the pid file names this process
	if upg == nil {
		if err := writeAtomic(cfg.PIDPath(), fmt.Appendf(nil, "%d\n", os.Getpid())); err != nil {
			o.Log.Error("write pid file", "err", err)
		}
	} else if err := upg.Ready(); err != nil {
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("server: %w", err)
	}
	if upg != nil && upg.HasParent() {
		o.Log.Info("upgrade complete: serving", "pid", os.Getpid())
		writeStatus(cfg.PIDPath(), "upgrade", upgradeReport(srv, nil), o.Log)
	}
	if o.Ready != nil {
		o.Ready(srv)
	}
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ShutdownTimeout.D())
			defer cancel()
			err := srv.Shutdown(sctx)
			removePID(cfg.PIDPath())
			return err
		case err := <-srv.Err():
			_ = srv.Shutdown(context.Background())
			return err
		case sig := <-o.Signals:
			switch sig {
			case syscall.SIGHUP:
				rep, err := srv.Reload(ctx, "")
				if err == nil {
					o.describe(cfg.PIDPath(), srv)
				}
				writeStatus(cfg.PIDPath(), "reload", rep, o.Log)
			case syscall.SIGUSR2:
				if upg == nil {
					writeStatus(cfg.PIDPath(), "upgrade", upgradeReport(srv, errors.New("binary upgrades unavailable in this process")), o.Log)
					continue
				}
				next, done, err := o.upgrade(ctx, upg, srv)
				if done {
					return err // the new process serves
				}
				if next != nil {
					srv = next
					o.describe(cfg.PIDPath(), srv)
					if o.Ready != nil {
						o.Ready(srv) // serving again after a failed upgrade
					}
				}
				writeStatus(cfg.PIDPath(), "upgrade", upgradeReport(srv, err), o.Log)
			}
		}
	}
}

func (o DaemonOptions) describe(pidPath string, srv *Server) {
	if o.Describe != nil {
		writeStatus(pidPath, "serving", o.Describe(srv), o.Log)
	}
}

func (o DaemonOptions) start(ctx context.Context, ln net.Listener) (*Server, error) {
	cfg, mgr, err := o.Load(ctx, o.ConfigPath)
	if err != nil {
		return nil, err
	}
	srv, err := StartWith(ctx, cfg, mgr, o.Log, Options{Load: o.Load, ConfigPath: o.ConfigPath, Listener: ln})
	if err != nil {
		return nil, errors.Join(err, mgr.Close())
	}
	return srv, nil
}

// UpgradeReport is the outcome of an upgrade, as written to the status
// file by the process that serves afterwards.
type UpgradeReport struct {
	OK    bool      `json:"ok"`
	PID   int       `json:"pid"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
	// Compiled lists the plugins compiled into the binary now serving,
	// "name@version"; Enabled the instances its config runs.
	Compiled []string `json:"compiled"`
	Enabled  []string `json:"enabled"`
}

// upgradeReport describes this process serving srv.
func upgradeReport(srv *Server, err error) UpgradeReport {
	rep := UpgradeReport{OK: err == nil, PID: os.Getpid(), At: time.Now(), Enabled: srv.Plugins().Loaded()}
	if err != nil {
		rep.Error = err.Error()
	}
	for _, m := range pluginhost.Modules() {
		rep.Compiled = append(rep.Compiled, m.Name+"@"+m.Version)
	}
	return rep
}

// upgrade starts the executable again as a new process holding the
// listening socket and hands over to it. done reports that the new
// process serves (this one has drained and must exit). Otherwise this
// process serves on: srv, or next when it had to take the spool back.
func (o DaemonOptions) upgrade(ctx context.Context, upg *tableflip.Upgrader, srv *Server) (next *Server, done bool, err error) {
	cfg, ln := srv.cfg, srv.ln
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("upgrade: socketpair: %w", err)
	}
	ourFile, theirs := os.NewFile(uintptr(fds[0]), "handover"), os.NewFile(uintptr(fds[1]), "handover-child")
	ours, err := net.FileConn(ourFile) // pollable: deadlines work
	ourFile.Close()
	if err != nil {
		theirs.Close()
		return nil, false, fmt.Errorf("upgrade: handover socket: %w", err)
	}
	defer ours.Close()
	err = upg.AddFile(handoverFile, theirs)
	theirs.Close() // the upgrader holds its own copy
	if err != nil {
		return nil, false, fmt.Errorf("upgrade: pass the handover socket: %w", err)
	}
	// A copy of the listening socket to serve on again if the new process
	// fails after this one stopped.
	lnFile, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return nil, false, fmt.Errorf("upgrade: keep the listening socket: %w", err)
	}
	defer lnFile.Close()

	o.Log.Info("upgrade: starting the new binary", "timeout", cfg.UpgradeTimeout.String())
	result := make(chan error, 1)
	go func() { result <- upg.Upgrade() }()
	deadline := time.Now().Add(cfg.handoverTimeout())
	_ = ours.SetDeadline(time.Now().Add(cfg.UpgradeTimeout.D()))
	type reply struct {
		line string
		err  error
	}
	prepared := make(chan reply, 1)
	r := bufio.NewReader(ours)
	go func() {
		line, err := r.ReadString('\n')
		prepared <- reply{strings.TrimSpace(line), err}
	}()
	var failed error
	select {
	case uerr := <-result:
		// Upgrade returns before the handover only when the new process
		// exited or was killed at the timeout.
		failed = uerr
		if failed == nil {
			failed = errors.New("the new process reported ready without the handover")
		}
	case rep := <-prepared:
		if rep.line != msgPrepared {
			failed = fmt.Errorf("handover: %q %w", rep.line, errors.Join(rep.err, <-result))
		}
	}
	if failed != nil {
		// The new process took nothing: this one never stopped.
		o.Log.Error("upgrade failed: the new binary did not start; serving on", "err", failed)
		return nil, false, fmt.Errorf("upgrade: the new binary did not start: %w", failed)
	}
	o.Log.Info("upgrade: new binary prepared; draining and handing over the spool")
	sctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout.D())
	serr := srv.Shutdown(sctx)
	cancel()
	if serr != nil {
		o.Log.Warn("upgrade: drain", "err", serr)
	}
	_ = ours.SetDeadline(time.Now().Add(cfg.UpgradeTimeout.D()))
	if _, werr := ours.Write([]byte(msgReleased + "\n")); werr != nil {
		o.Log.Error("upgrade: tell the new binary", "err", werr)
	}
	uerr := <-result
	if uerr == nil {
		o.Log.Info("upgrade: the new binary serves; exiting")
		return nil, true, nil
	}
	// Take everything back: the child is dead (tableflip killed it at the
	// timeout or it exited), so its locks are going.
	o.Log.Error("upgrade failed after the handover: taking the spool back", "err", uerr)
	back, err := net.FileListener(lnFile)
	if err != nil {
		return nil, false, fmt.Errorf("upgrade: %w; and the listening socket could not be reused: %w", uerr, err)
	}
	next, err = o.restart(ctx, back, deadline)
	if err != nil {
		return nil, false, fmt.Errorf("upgrade: %w; and serving again failed: %w", uerr, err)
	}
	return next, false, fmt.Errorf("upgrade: the new binary failed after the handover (this process serves again): %w", uerr)
}

// restart starts the server again after a failed handover, retrying while
// the dead new process's locks (the spool's, bbolt's) are still released
// by the kernel, until deadline.
func (o DaemonOptions) restart(ctx context.Context, ln net.Listener, deadline time.Time) (*Server, error) {
	if time.Until(deadline) < 5*time.Second {
		deadline = time.Now().Add(5 * time.Second)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		srv, err := o.start(ctx, ln)
		if err == nil {
			return srv, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-tick.C:
		}
	}
}

// takeOver is the new process's side of the handover: say "prepared" and
// wait for "released" before anything takes the spool or a plugin's file.
func takeOver(upg *tableflip.Upgrader, cfg Config, log *slog.Logger) error {
	file, err := upg.File(handoverFile)
	if err != nil {
		return fmt.Errorf("handover socket: %w", err)
	}
	if file == nil {
		return errors.New("started by an upgrade without a handover socket (an old binary?)")
	}
	f, err := net.FileConn(file) // pollable: deadlines work
	file.Close()
	if err != nil {
		return fmt.Errorf("handover socket: %w", err)
	}
	defer f.Close()
	_ = f.SetDeadline(time.Now().Add(cfg.handoverTimeout()))
	if _, err := f.Write([]byte(msgPrepared + "\n")); err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	log.Info("upgrade: prepared; waiting for the old process to drain")
	line, err := bufio.NewReader(f).ReadString('\n')
	if strings.TrimSpace(line) != msgReleased {
		return fmt.Errorf("handover: the old process did not release the spool: %q %v", line, err)
	}
	return nil
}

// ready is the readiness check: the server greets on its own listener.
func ready(srv *Server) error {
	addr := srv.Addr().String()
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", port)
			if ip.To4() == nil {
				addr = net.JoinHostPort("::1", port)
			}
		}
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting from %s: %q", addr, strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}
