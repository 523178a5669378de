package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/serve"
)

// control runs `elemta reload` and `elemta upgrade`: find the server by
// its pid file, signal it (SIGHUP, SIGUSR2) and print the outcome it
// writes to its status file (serve.StatusPath).
func (a *app) control(ctx context.Context, action string, args []string) int {
	fs := a.flagSet(action, action+" [--config F] [--pid-file P] [--timeout D]")
	cfgPath := fs.String("config", "", "the server's config file, for its [server] pid_file (default ./elemta.toml, else the embedded default)")
	pidFile := fs.String("pid-file", "", "the server's pid file (default: from the config)")
	timeout := fs.Duration("timeout", 0, "how long to wait for the outcome (default: 1m for reload; 2 x upgrade_timeout + shutdown_timeout for upgrade)")
	if _, err := parse(fs, args); err != nil {
		return usageError(err)
	}
	path := *pidFile
	wait := *timeout
	if path == "" || wait == 0 {
		cfg, err := a.loadConfig(*cfgPath)
		if err != nil {
			return a.errorf("%s: %v", action, err)
		}
		if path == "" {
			path = cfg.Server.PIDPath()
		}
		if wait == 0 {
			wait = time.Minute
			if action == "upgrade" {
				wait = 2*cfg.Server.UpgradeTimeout.D() + cfg.Server.ShutdownTimeout.D() + 10*time.Second
			}
		}
	}
	pid, err := serve.ReadPID(path)
	if err != nil {
		return a.errorf("%s: is the server running? %v", action, err)
	}
	before, err := serve.ReadStatus(path, action)
	if err != nil {
		return a.errorf("%s: %v", action, err)
	}
	sig := syscall.SIGHUP
	if action == "upgrade" {
		sig = syscall.SIGUSR2
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return a.errorf("%s: signal pid %d (from %s): %v", action, pid, path, err)
	}
	st, err := awaitStatus(ctx, path, action, before.Seq, wait)
	if err != nil {
		return a.errorf("%s: %v", action, err)
	}
	return a.printOutcome(action, st)
}

// awaitStatus polls the status file until it holds an outcome newer than
// seq, or wait passes.
func awaitStatus(ctx context.Context, pidPath, action string, seq int64, wait time.Duration) (serve.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := serve.ReadStatus(pidPath, action)
		if err == nil && st.Seq > seq {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return serve.Status{}, fmt.Errorf("no outcome in %s within %s (last read: %v)", serve.StatusPath(pidPath, action), wait, err)
		case <-tick.C:
		}
	}
}

func (a *app) printOutcome(action string, st serve.Status) int {
	if action == "reload" {
		var rep serve.Report
		if err := json.Unmarshal(st.Report, &rep); err != nil {
			return a.errorf("reload: status: %v", err)
		}
		if !rep.OK {
			return a.errorf("reload of %s failed; the running config serves on:\n%s", rep.File, rep.Error)
		}
		fmt.Fprintf(a.stdout, "reloaded %s (pid %d): plugins %s\n", rep.File, st.PID, strings.Join(rep.Plugins, ", "))
		if len(rep.NeedsUpgrade) > 0 {
			fmt.Fprintf(a.stdout, "not applied until `elemta upgrade` or a restart: [server] %s\n", strings.Join(rep.NeedsUpgrade, ", "))
		}
		return ExitAccept
	}
	var rep serve.UpgradeReport
	if err := json.Unmarshal(st.Report, &rep); err != nil {
		return a.errorf("upgrade: status: %v", err)
	}
	if !rep.OK {
		return a.errorf("upgrade failed; pid %d serves on: %s", rep.PID, rep.Error)
	}
	fmt.Fprintf(a.stdout, "upgraded: pid %d serves\ncompiled in: %s\nenabled: %s\n", rep.PID, strings.Join(rep.Compiled, ", "), strings.Join(rep.Enabled, ", "))
	return ExitAccept
}
