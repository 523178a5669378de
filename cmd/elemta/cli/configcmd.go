package cli

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/registry"
)

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

func (a *app) configCheck(args []string) int {
	fs := a.flagSet("config check", "config check [FILE]")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) > 1 {
		fs.Usage()
		return ExitError
	}
	path := ""
	if len(rest) == 1 {
		path = rest[0]
	}
	cfg, err := config.Find(path)
	if err != nil {
		fmt.Fprintf(a.stderr, "%v\n", err)
		return a.errorf("config check: the config is invalid")
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(a.stdout, "warning: %s\n", w)
	}
	enabled := "none"
	if len(cfg.Plugins.Plugins) > 0 {
		enabled = strings.Join(cfg.Plugins.Plugins, ", ")
	}
	if !cfg.Plugins.Enabled {
		enabled += " (but plugins.enabled = false turns them all off)"
	}
	fmt.Fprintf(a.stdout, "%s: OK; plugins enabled: %s\n", cfg.File, enabled)
	fmt.Fprintf(a.stdout, "server: deliver_at_reception = %v: %s\n", cfg.Server.DeliverAtReception, atReception(cfg))
	return ExitAccept
}

// atReception says which messages deliver_at_reception writes straight
// into the Maildirs under cfg.
func atReception(cfg *config.Config) string {
	if !cfg.Server.DeliverAtReception {
		return "every message is spooled"
	}
	var delivery []string
	if cfg.Plugins.Enabled {
		for _, id := range cfg.Plugins.Plugins {
			if pc, err := cfg.Plugins.Settings(id); err == nil &&
				(slices.Contains(pc.Stages, registry.PreDelivery) || slices.Contains(pc.Stages, registry.PostDelivery)) {
				delivery = append(delivery, id)
			}
		}
	}
	if len(delivery) > 0 {
		return "every message is spooled while " + strings.Join(delivery, ", ") + " run(s) at pre-delivery or post-delivery"
	}
	return "a message for local Maildirs only is delivered before the 250, without a spool entry"
}
