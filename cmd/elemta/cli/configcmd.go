package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/elemta/elemta/internal/config"
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
	return ExitAccept
}
