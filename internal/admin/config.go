package admin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/registry"
)

// Config is the [admin] table.
type Config struct {
	// Enabled false turns the admin listener off (metrics, health, API).
	Enabled bool `toml:"enabled"`
	// Listen is host:port, or "unix:/path" for a unix socket.
	Listen string `toml:"listen"`
	// TokenFile holds the bearer token every request but /healthz must
	// carry. Required when Listen is not a loopback address or a socket.
	TokenFile string `toml:"token_file"`
	// ReadyInterval is how long /readyz serves its last result before it
	// runs the health checks again; ReadyTimeout bounds one run.
	ReadyInterval registry.Duration `toml:"ready_interval"`
	ReadyTimeout  registry.Duration `toml:"ready_timeout"`
	// MaxPluginSeries bounds the label value sets of each metric a plugin
	// makes (the rest count under "other").
	MaxPluginSeries int `toml:"max_plugin_series"`
	// MaxQueueList bounds the entries one queue listing reads.
	MaxQueueList int `toml:"max_queue_list"`
}

// Defaults.
const (
	DefaultListen       = "127.0.0.1:8025"
	DefaultMaxQueueList = 1000
)

// DefaultConfig is the [admin] table of a config that has none.
func DefaultConfig() Config {
	return Config{Enabled: true, Listen: DefaultListen, ReadyInterval: registry.Duration(10 * time.Second),
		ReadyTimeout: registry.Duration(5 * time.Second), MaxPluginSeries: metrics.DefaultMaxSeries, MaxQueueList: DefaultMaxQueueList}
}

// Validate reports every mistake at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("admin: "+format, args...)) }
	if c.ReadyInterval <= 0 {
		bad("ready_interval must be positive (got %s)", c.ReadyInterval)
	}
	if c.ReadyTimeout <= 0 {
		bad("ready_timeout must be positive (got %s)", c.ReadyTimeout)
	}
	if c.MaxPluginSeries < 1 {
		bad("max_plugin_series must be at least 1 (got %d)", c.MaxPluginSeries)
	}
	if c.MaxQueueList < 1 {
		bad("max_queue_list must be at least 1 (got %d)", c.MaxQueueList)
	}
	if !c.Enabled {
		return errors.Join(errs...)
	}
	network, addr := c.Address()
	switch {
	case network == "unix" && addr == "":
		bad("listen %q: no socket path", c.Listen)
	case network == "tcp":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("listen %q: %v", c.Listen, err)
		} else if !c.Local() && c.TokenFile == "" {
			bad("listen %q is not a loopback address: token_file is required (a bearer token every request must carry)", c.Listen)
		}
	}
	return errors.Join(errs...)
}

// Address returns the network ("tcp", "unix") and address of Listen.
func (c Config) Address() (network, addr string) {
	if p, ok := strings.CutPrefix(c.Listen, "unix:"); ok {
		return "unix", p
	}
	return "tcp", c.Listen
}

// Local reports whether only this machine can reach Listen: a unix
// socket, a loopback address or "localhost".
func (c Config) Local() bool {
	network, addr := c.Address()
	if network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// token reads TokenFile: its first line, trimmed.
func (c Config) token() (string, error) {
	if c.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("admin: token_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if len(tok) < 16 {
		return "", fmt.Errorf("admin: token_file %s: the token must be at least 16 characters", c.TokenFile)
	}
	return tok, nil
}
