package obslog

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// Config is the [log] table.
type Config struct {
	// Format is "text" or "json".
	Format string `toml:"format"`
	// Level is the process's level: debug, info, warn or error. Empty:
	// the -log-level flag.
	Level string `toml:"level"`
	// PluginDir, when set, gives each plugin instance a file of its own,
	// <plugin_dir>/<instance>.log ("contentfilter/strict" writes
	// contentfilter.strict.log), reopened on SIGUSR1.
	PluginDir string `toml:"plugin_dir"`
	// PluginLevels sets the level of some plugin instances ("clamav",
	// "contentfilter/strict"); the others log at Level.
	PluginLevels map[string]string `toml:"plugin_levels"`
}

// DefaultConfig is the [log] table of a config that has none.
func DefaultConfig() Config { return Config{Format: "text"} }

// Validate reports every mistake at once.
func (c Config) Validate() error {
	var errs []error
	if c.Format != "text" && c.Format != "json" {
		errs = append(errs, fmt.Errorf("log: format %q: use \"text\" or \"json\"", c.Format))
	}
	if c.Level != "" {
		if _, err := parseLevel(c.Level); err != nil {
			errs = append(errs, fmt.Errorf("log: level: %w", err))
		}
	}
	names := make([]string, 0, len(c.PluginLevels))
	for n := range c.PluginLevels {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := parseLevel(c.PluginLevels[n]); err != nil {
			errs = append(errs, fmt.Errorf("log: plugin_levels.%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: use debug, info, warn or error", s)
	}
	return l, nil
}

// fileName is the log file of an instance: its ID with "/" as ".".
func fileName(instance string) string { return strings.ReplaceAll(instance, "/", ".") + ".log" }
