package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/internal/buildinfo"
	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/internal/obslog"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pluginhost"
)

// serve runs `elemta serve` until ctx is cancelled (SIGTERM, SIGINT).
func (a *app) serve(ctx context.Context, args []string) int {
	fs := a.flagSet("serve", "serve [--config F]")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	if _, err := parse(fs, args); err != nil {
		return usageError(err)
	}
	cfg, err := a.loadConfig(*cfgPath)
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	logs, err := obslog.New(cfg.Log, a.stderr, a.level)
	if err != nil {
		return a.errorf("serve: %s: [log]: %v", cfg.File, err)
	}
	defer logs.Close()
	a.log = logs.Logger()
	if err := logs.Open(cfg.Plugins.Plugins); err != nil {
		return a.errorf("serve: %s: [log]: %v", cfg.File, err)
	}
	stopReopen := reopenOnSIGUSR1(logs, a)
	defer stopReopen()

	host, err := a.host(cfg)
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	defer a.closeHost(host)
	host.Logger = a.log
	host.Hostname = cfg.Server.Hostname
	m := metrics.New(buildInfo(), metrics.WithMaxSeries(cfg.Admin.MaxPluginSeries))
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host), pluginhost.WithObserver(m),
		pluginhost.WithPluginMetrics(m.ForPlugin), pluginhost.WithPluginLogger(logs.Plugin))
	if err := mgr.LoadPlugins(ctx); err != nil {
		return a.errorf("serve: load plugins from %s: %v", cfg.File, err)
	}
	defer func() {
		if err := mgr.Close(); err != nil {
			a.log.Error("close plugins", "err", err)
		}
	}()
	pluginInfo(m, mgr.Loaded())

	srv, err := serve.Start(ctx, cfg.Server, mgr, a.log)
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	src := metrics.Sources{SMTP: srv.SMTPStats, Spool: srv.Spool(), Delivery: srv.DeliveryStats}
	if r, ok := host.Resolver.(*resolver.Resolver); ok {
		src.Resolver = r.Stats
	}
	m.Server(src)
	adminAddr := "off"
	var adm *admin.Server
	if cfg.Admin.Enabled {
		adm, err = admin.New(cfg.Admin, admin.Deps{Manager: mgr, Metrics: m, Spool: srv.Spool(), Log: a.log, Config: cfg.Redacted})
		if err == nil {
			err = adm.Start()
		}
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
			defer cancel()
			return a.errorf("serve: %s: [admin]: %v", cfg.File, errors.Join(err, srv.Shutdown(sctx)))
		}
		adminAddr = adm.Addr().String()
		if n, _ := cfg.Admin.Address(); n == "unix" {
			adminAddr = "unix:" + adminAddr
		}
	}
	a.log.Info("elemta serve started", "config", cfg.File, "smtp", srv.Addr().String(), "admin", adminAddr,
		"plugins", strings.Join(mgr.Loaded(), ","), "plugin_log_dir", cfg.Log.PluginDir)

	err = srv.Wait(ctx)
	if adm != nil {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, adm.Shutdown(actx))
	}
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	return ExitAccept
}

// reopenOnSIGUSR1 reopens the plugin log files at each SIGUSR1 (after
// logrotate moved them) until the returned stop is called.
func reopenOnSIGUSR1(logs *obslog.Logs, a *app) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-ch:
				if err := logs.Reopen(); err != nil {
					a.log.Error("SIGUSR1: reopen plugin log files", "err", err)
				} else {
					a.log.Info("SIGUSR1: plugin log files reopened")
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-finished
	}
}

// buildInfo labels elemta_build_info: the core module's version and the
// VCS revision the binary was built from.
func buildInfo() metrics.BuildInfo {
	var b metrics.BuildInfo
	if info, ok := buildinfo.Read(); ok {
		if m, found := info.Core(); found {
			b.Version = m.EffectiveVersion()
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
	}
	return b
}

// pluginInfo sets elemta_plugin_info for each loaded instance.
func pluginInfo(m *metrics.Metrics, loaded []string) {
	info, haveInfo := buildinfo.Read()
	mods := map[string]pluginhost.ModuleInfo{}
	for _, mod := range pluginhost.Modules() {
		mods[mod.Name] = mod
	}
	for _, inst := range loaded {
		typ, _, _ := strings.Cut(inst, "/")
		mod := mods[typ]
		var path, version string
		if haveInfo {
			if gm, ok := info.ModuleOf(mod.Package); ok {
				path, version = gm.Path, gm.EffectiveVersion()
			}
		}
		m.PluginInfo(inst, typ, mod.Version, path, version)
	}
}
