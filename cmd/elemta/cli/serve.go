package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pluginhost"
)

// serve runs `elemta serve` until ctx is cancelled (SIGTERM, SIGINT):
// SIGHUP reloads the config, SIGUSR2 upgrades to the binary now at the
// executable's path (serve.Daemon).
func (a *app) serve(ctx context.Context, args []string) int {
	fs := a.flagSet("serve", "serve [--config F]")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	if _, err := parse(fs, args); err != nil {
		return usageError(err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	err := serve.Daemon(ctx, serve.DaemonOptions{
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
	})
	if err != nil {
		return a.errorf("serve: %v", err)
	}
	return ExitAccept
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
	host, err := a.host(cfg)
	if err != nil {
		return serve.Config{}, nil, err
	}
	host.Hostname = cfg.Server.Hostname
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	if err := mgr.LoadPlugins(ctx); err != nil {
		return serve.Config{}, nil, fmt.Errorf("load plugins from %s: %w", cfg.File, err)
	}
	return cfg.Server, mgr, nil
}
