package cli

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"

	"github.com/elemta/elemta/internal/buildinfo"
	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/pluginhost"
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

func (a *app) version() int {
	core, goVersion := "(unknown)", runtime.Version()
	info, ok := buildinfo.Read()
	if ok {
		if m, found := info.Core(); found {
			core = m.EffectiveVersion()
		}
		goVersion = info.GoVersion
	}
	fmt.Fprintf(a.stdout, "elemta %s (%s)\n", core, goVersion)
	for _, m := range pluginhost.Modules() {
		line := fmt.Sprintf("  plugin %s %s", m.Name, orDash(m.Version))
		if ok {
			if mod, found := info.ModuleOf(m.Package); found && mod.Path != buildinfo.CorePath {
				line += fmt.Sprintf(" (%s)", mod)
			}
		}
		fmt.Fprintln(a.stdout, line)
	}
	return ExitAccept
}
