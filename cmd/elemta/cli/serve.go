package cli

import (
	"context"

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
	host, err := a.host(cfg)
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	defer a.closeHost(host)
	host.Hostname = cfg.Server.Hostname
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	if err := mgr.LoadPlugins(ctx); err != nil {
		return a.errorf("serve: load plugins from %s: %v", cfg.File, err)
	}
	defer func() {
		if err := mgr.Close(); err != nil {
			a.log.Error("close plugins", "err", err)
		}
	}()
	if err := serve.Run(ctx, cfg.Server, mgr, a.log); err != nil {
		return a.errorf("serve: %v", err)
	}
	return ExitAccept
}
