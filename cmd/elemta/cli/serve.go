package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/internal/buildinfo"
	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/internal/delivery"
	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/internal/obslog"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// observed is what `elemta serve` keeps for the whole process while
// reloads replace the plugins and a failed upgrade the server: the logs,
// the metrics and the server serving now.
type observed struct {
	logs    *obslog.Logs
	metrics *metrics.Metrics
	current atomic.Pointer[serve.Server]
	res     atomic.Pointer[resolver.Resolver]
	once    sync.Once
	// pools are the [store] pools of the managers alive: a reload with the
	// same [store] shares the pool serving, and a pool is closed with the
	// last manager using it (a replaced manager may still be finishing its
	// transactions on it).
	pools store.Pools
}

// serve runs `elemta serve` until ctx is cancelled (SIGTERM, SIGINT):
// SIGHUP (or POST /api/v1/reload on the admin listener) reloads the
// config, SIGUSR2 upgrades to the binary now at the executable's path
// (serve.Daemon). [log] and [admin] are read once, at start.
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
	o := &observed{logs: logs, metrics: metrics.New(buildInfo(), metrics.WithMaxSeries(cfg.Admin.MaxPluginSeries))}
	a.obs = o
	defer func() {
		if err := o.pools.Close(); err != nil { // those of managers not closed
			a.log.Error("close the [store] redis pools", "err", err)
		}
	}()

	var adm adminRunner
	defer adm.stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	err = serve.Daemon(ctx, serve.DaemonOptions{
		ConfigPath: *cfgPath,
		Parse: func(path string) (serve.Config, error) {
			cfg, err := a.loadConfig(path)
			if err != nil {
				return serve.Config{}, err
			}
			return cfg.Server, nil
		},
		Load:     a.loadServer,
		Signals:  sigs,
		Describe: describeServer,
		Log:      a.log,
		Ready: func(srv *serve.Server) {
			o.current.Store(srv)
			o.once.Do(func() { o.metrics.Server(o.sources()) })
			pluginInfo(o.metrics, srv.Plugins().Loaded())
			addr := "off"
			if cfg.Admin.Enabled {
				addr = adm.start(ctx, cfg, admin.Deps{
					Plugins: func() *pluginhost.Manager { return o.current.Load().Plugins() },
					Reload: func(ctx context.Context) (any, error) {
						return o.current.Load().Reload(ctx, "")
					},
					Metrics: o.metrics, Spool: func() *spool.Spool { return o.current.Load().Spool() }, Log: a.log, Config: cfg.Redacted,
				}, a)
			}
			a.log.Info("elemta serve started", "config", cfg.File, "smtp", srv.Addr().String(), "admin", addr,
				"plugins", strings.Join(srv.Plugins().Loaded(), ","), "plugin_log_dir", cfg.Log.PluginDir)
		},
	})
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	return ExitAccept
}

// sources are the metrics read at each scrape, from the server serving
// then.
func (o *observed) sources() metrics.Sources {
	src := metrics.Sources{
		SMTP:     func() smtpd.Stats { return o.current.Load().SMTPStats() },
		Spool:    func() *spool.Spool { return o.current.Load().Spool() },
		Delivery: func() delivery.Stats { return o.current.Load().DeliveryStats() },
	}
	if o.res.Load() != nil {
		src.Resolver = func() resolver.Stats { return o.res.Load().Stats() }
	}
	return src
}

// adminRunner runs the admin listener of the server serving now. After an
// upgrade the old process holds the address until it exits, so a start
// that finds it taken retries in the background.
type adminRunner struct {
	mu     sync.Mutex
	srv    *admin.Server
	cancel context.CancelFunc
}

func (r *adminRunner) start(ctx context.Context, cfg *config.Config, deps admin.Deps, a *app) string {
	r.stop()
	adm, err := admin.New(cfg.Admin, deps)
	if err != nil {
		a.log.Error("admin listener", "file", cfg.File, "err", err)
		return "off (" + err.Error() + ")"
	}
	if err := adm.Start(); err == nil {
		r.mu.Lock()
		r.srv = adm
		r.mu.Unlock()
		return adm.Addr().String()
	}
	rctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			adm, err := admin.New(cfg.Admin, deps)
			if err == nil {
				err = adm.Start()
			}
			if err == nil {
				r.mu.Lock()
				r.srv = adm
				r.mu.Unlock()
				a.log.Info("admin listener started", "addr", adm.Addr().String())
				return
			}
		}
	}()
	return cfg.Admin.Listen + " (taken: retrying)"
}

func (r *adminRunner) stop() {
	r.mu.Lock()
	srv, cancel := r.srv, r.cancel
	r.srv, r.cancel = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if srv != nil {
		ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(ctx)
	}
}

// loadServer is the server's config loader (serve.Loader): the file's
// [server] table and its plugins, built, validated and started.
func (a *app) loadServer(ctx context.Context, path string) (serve.Config, *pluginhost.Manager, error) {
	cfg, err := a.loadConfig(path)
	if err != nil {
		return serve.Config{}, nil, err
	}
	return a.startPlugins(ctx, cfg)
}

func (a *app) startPlugins(ctx context.Context, cfg *config.Config) (serve.Config, *pluginhost.Manager, error) {
	o := a.obs
	var host registry.Host
	var err error
	if o == nil {
		host, err = a.host(cfg)
	} else {
		host, err = a.hostWithoutStore(cfg)
	}
	if err != nil {
		return serve.Config{}, nil, err
	}
	host.Logger = a.log
	host.Hostname = cfg.Server.Hostname
	release := func() error { a.closeHost(host); return nil }
	if o != nil && cfg.Store.Enabled() {
		// The pool serving now when [store] is unchanged; released when
		// this manager is closed (after its last transaction).
		if host.Redis, release, err = o.pools.Acquire(cfg.Store); err != nil {
			return serve.Config{}, nil, fmt.Errorf("%s: [store]: %w", cfg.File, err)
		}
		a.log.Debug("shared redis pool", "store", cfg.Store.String(), "pools_open", o.pools.Len())
	}
	opts := []pluginhost.Option{pluginhost.WithHost(host), pluginhost.WithOnClose(release)}
	if o != nil {
		opts = append(opts, pluginhost.WithObserver(o.metrics), pluginhost.WithPluginMetrics(o.metrics.ForPlugin),
			pluginhost.WithPluginLogger(o.logs.Plugin))
		if r, ok := host.Resolver.(*resolver.Resolver); ok {
			o.res.Store(r)
		}
	}
	mgr := pluginhost.NewManager(cfg.Plugins, opts...)
	if err := mgr.LoadPlugins(ctx); err != nil {
		return serve.Config{}, nil, errors.Join(fmt.Errorf("load plugins from %s: %w", cfg.File, err), mgr.Close())
	}
	return cfg.Server, mgr, nil
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
