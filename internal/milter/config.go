package milter

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/elemta/elemta/registry"
)

// Config is the [milter] table: `elemta milter`.
type Config struct {
	// Listen is where the MTA connects: "inet:HOST:PORT" (Postfix's and
	// Sendmail's notation; "inet6:[::1]:PORT" and plain "HOST:PORT" too)
	// or "unix:/path/to/socket".
	Listen string `toml:"listen"`
	// SocketMode is the permission of a unix socket (octal string, "0660").
	SocketMode string `toml:"socket_mode"`
	// Hostname is the session's name (registry.Session.Hostname, the
	// authserv-id of Authentication-Results).
	Hostname string `toml:"hostname"`
	// DefaultAction is the reply when the milter itself fails (a stage
	// that cannot run, a message it cannot parse or hold): "tempfail" or
	// "accept". Plugin failures follow their own on_error instead.
	DefaultAction string `toml:"default_action"`
	// ReadTimeout bounds the wait for the MTA's next milter command;
	// WriteTimeout each reply written to it.
	ReadTimeout  registry.Duration `toml:"read_timeout"`
	WriteTimeout registry.Duration `toml:"write_timeout"`
	// StageTimeout bounds one stage (all its plugins) on one message.
	StageTimeout registry.Duration `toml:"stage_timeout"`
	// ProgressInterval is how often a running stage tells the MTA it is
	// still working (SMFIR_PROGRESS, protocol 6), so the MTA's own milter
	// timeout does not cut a long scan.
	ProgressInterval registry.Duration `toml:"progress_interval"`
	// MaxMessageSize and MaxHeaderSize bound what is held in memory for one
	// message (552 5.3.4 past them).
	MaxMessageSize int64 `toml:"max_message_size"`
	MaxHeaderSize  int64 `toml:"max_header_size"`
	// MaxRecipients bounds the recipients of one transaction (452 4.5.3 to
	// the extra ones).
	MaxRecipients int `toml:"max_recipients"`
	// MaxConnections bounds the MTA connections served at once; more wait
	// in the listen queue.
	MaxConnections int `toml:"max_connections"`
	// ShutdownTimeout is how long connections in flight may finish after
	// SIGTERM.
	ShutdownTimeout registry.Duration `toml:"shutdown_timeout"`
}

// Defaults of the [milter] table.
const (
	DefaultListen         = "inet:127.0.0.1:8891"
	DefaultMaxMessageSize = 50 << 20
	DefaultMaxHeaderSize  = 256 << 10
)

// DefaultConfig returns the [milter] table's defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           DefaultListen,
		SocketMode:       "0660",
		Hostname:         "localhost",
		DefaultAction:    "tempfail",
		ReadTimeout:      registry.Duration(10 * time.Minute),
		WriteTimeout:     registry.Duration(30 * time.Second),
		StageTimeout:     registry.Duration(2 * time.Minute),
		ProgressInterval: registry.Duration(10 * time.Second),
		MaxMessageSize:   DefaultMaxMessageSize,
		MaxHeaderSize:    DefaultMaxHeaderSize,
		MaxRecipients:    1000,
		MaxConnections:   1000,
		ShutdownTimeout:  registry.Duration(30 * time.Second),
	}
}

// Validate reports every value out of range, all at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := ParseListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if _, err := c.socketMode(); err != nil {
		errs = append(errs, fmt.Errorf("socket_mode: %w", err))
	}
	if strings.TrimSpace(c.Hostname) == "" || strings.ContainsAny(c.Hostname, " \t\r\n;") {
		errs = append(errs, fmt.Errorf("hostname %q: want a host name", c.Hostname))
	}
	if c.DefaultAction != "tempfail" && c.DefaultAction != "accept" {
		errs = append(errs, fmt.Errorf("default_action %q: want \"tempfail\" or \"accept\" (Postfix's milter_default_action)", c.DefaultAction))
	}
	for _, d := range []struct {
		key string
		v   registry.Duration
	}{{"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"stage_timeout", c.StageTimeout},
		{"progress_interval", c.ProgressInterval}, {"shutdown_timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.key, d.v))
		}
	}
	if c.ProgressInterval > 0 && c.StageTimeout > 0 && c.ProgressInterval > c.StageTimeout {
		errs = append(errs, fmt.Errorf("progress_interval %v: at most stage_timeout (%v)", c.ProgressInterval, c.StageTimeout))
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"max_message_size", c.MaxMessageSize}, {"max_header_size", c.MaxHeaderSize},
		{"max_recipients", int64(c.MaxRecipients)}, {"max_connections", int64(c.MaxConnections)}} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive", n.key, n.v))
		}
	}
	if c.MaxHeaderSize > 0 && c.MaxMessageSize > 0 && c.MaxHeaderSize > c.MaxMessageSize {
		errs = append(errs, fmt.Errorf("max_header_size %d: at most max_message_size (%d)", c.MaxHeaderSize, c.MaxMessageSize))
	}
	return errors.Join(errs...)
}

// ParseListen splits a milter socket spec into a network and an address
// for net.Listen: "inet:127.0.0.1:8891" and "127.0.0.1:8891" → tcp,
// "inet6:[::1]:8891" → tcp6, "unix:/run/elemta.sock" (or "local:") → unix.
func ParseListen(spec string) (network, address string, err error) {
	kind, rest, found := strings.Cut(spec, ":")
	switch {
	case spec == "":
		return "", "", errors.New("empty: want inet:HOST:PORT or unix:/PATH")
	case found && (kind == "unix" || kind == "local"):
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: the socket path must be absolute", spec)
		}
		return "unix", rest, nil
	case found && (kind == "inet" || kind == "inet6"):
		network, address = "tcp", rest
		if kind == "inet6" {
			network = "tcp6"
		}
	default:
		network, address = "tcp", spec
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w (want inet:HOST:PORT or unix:/PATH)", spec, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("%q: no host: name the address to listen on (inet:127.0.0.1:%s)", spec, port)
	}
	return network, address, nil
}

func (c *Config) socketMode() (uint32, error) {
	mode, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return 0, fmt.Errorf("%q: want an octal permission such as \"0660\"", c.SocketMode)
	}
	return uint32(mode), nil
}
