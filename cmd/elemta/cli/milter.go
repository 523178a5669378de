package cli

import (
	"context"
	"time"

	"github.com/elemta/elemta/internal/milter"
	"github.com/elemta/elemta/pluginhost"
)

// milter runs `elemta milter` until ctx is cancelled (SIGTERM, SIGINT):
// the plugin stages for Postfix or Sendmail over the milter protocol
// ([milter] table, internal/milter).
func (a *app) milter(ctx context.Context, args []string) int {
	fs := a.flagSet("milter", "milter [--config F]")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	if _, err := parse(fs, args); err != nil {
		return usageError(err)
	}
	cfg, err := a.loadConfig(*cfgPath)
	if err != nil {
		return a.errorf("milter: %v", err)
	}
	if !cfg.HasMilter { // with a [milter] table they are among the warnings loadConfig logged
		for _, w := range milter.StageWarnings(cfg.Plugins) {
			a.log.Warn(w)
		}
	}
	host, err := a.host(cfg)
	if err != nil {
		return a.errorf("milter: %v", err)
	}
	defer a.closeHost(host)
	host.Hostname = cfg.Milter.Hostname
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	if err := mgr.LoadPlugins(ctx); err != nil {
		return a.errorf("milter: load plugins from %s: %v", cfg.File, err)
	}
	defer func() {
		if err := mgr.Close(); err != nil {
			a.log.Error("close plugins", "err", err)
		}
	}()
	srv, err := milter.Start(ctx, cfg.Milter, mgr, a.log)
	if err != nil {
		return a.errorf("milter: %s: %v", cfg.File, err)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Milter.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return a.errorf("milter: shutdown: %v", err)
	}
	return ExitAccept
}
