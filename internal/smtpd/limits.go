package smtpd

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/elemta/elemta/registry"
)

// Limits bound what one client, and all of them together, may cost the
// server. Each is a key of the [server] table (serve.Config embeds Limits);
// the defaults follow Postfix's where it has one. Over a limit the client
// gets a 421 (a 454 for AUTH throttling) and, for the session limits, the
// connection is closed.
type Limits struct {
	// MaxConnections bounds the connections open at once; it is lowered
	// at start to what RLIMIT_NOFILE leaves after ReservedFiles.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerClient bounds the connections of one IPv4 address
	// or one IPv6 /64 (Postfix smtpd_client_connection_count_limit).
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
	// ReservedFiles are file descriptors kept free of client connections,
	// for the spool, delivery, plugins and the listener itself.
	ReservedFiles int `toml:"reserved_files"`

	// HeloTimeout is how long a client may take from connect to its
	// HELO/EHLO; MaxCommandsBeforeHelo how many other commands it may
	// send first.
	HeloTimeout           registry.Duration `toml:"helo_timeout"`
	MaxCommandsBeforeHelo int               `toml:"max_commands_before_helo"`
	// CommandTimeout is how long the server waits, after a reply, for the
	// next whole command line (RFC 5321 section 4.5.3.2.7: 5 minutes). A
	// line trickled in slower than that is never executed.
	CommandTimeout registry.Duration `toml:"command_timeout"`
	// SessionTimeout bounds a whole connection, DATA included.
	SessionTimeout registry.Duration `toml:"session_timeout"`
	// DataTimeout is the longest wait for the next bytes of a DATA or BDAT
	// transfer; MinDataRate (bytes per second) is the slowest transfer
	// kept: every byte received extends the transfer's deadline by
	// 1/MinDataRate seconds, from DataTimeout after its start (Postfix
	// smtpd_min_data_rate).
	DataTimeout registry.Duration `toml:"data_timeout"`
	MinDataRate int64             `toml:"min_data_rate"`

	// MaxErrors is how many 4xx/5xx replies a session may get before it is
	// closed (Postfix smtpd_hard_error_limit); past SoftErrorLimit each
	// error reply waits ErrorDelay (smtpd_soft_error_limit,
	// smtpd_error_sleep_time).
	MaxErrors      int               `toml:"max_errors"`
	SoftErrorLimit int               `toml:"soft_error_limit"`
	ErrorDelay     registry.Duration `toml:"error_delay"`

	// MaxAuthFailures closes a connection after that many failed AUTH
	// attempts. AuthFailuresPerClient and AuthFailuresPerUser bound the
	// failures of one client address (IPv6: /64) and of one user name
	// across connections within AuthFailureWindow: past them AUTH is
	// refused with 454 without checking the password. Each failure is
	// answered after AuthFailureDelay, doubled per earlier failure of that
	// client or user in the window, at most AuthFailureDelayMax.
	MaxAuthFailures       int               `toml:"max_auth_failures"`
	AuthFailuresPerClient int               `toml:"auth_failures_per_client"`
	AuthFailuresPerUser   int               `toml:"auth_failures_per_user"`
	AuthFailureWindow     registry.Duration `toml:"auth_failure_window"`
	AuthFailureDelay      registry.Duration `toml:"auth_failure_delay"`
	AuthFailureDelayMax   registry.Duration `toml:"auth_failure_delay_max"`
}

// DefaultLimits are the limits of a [server] table that sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:          1000,
		MaxConnectionsPerClient: 50,
		ReservedFiles:           128,
		HeloTimeout:             registry.Duration(time.Minute),
		MaxCommandsBeforeHelo:   5,
		CommandTimeout:          registry.Duration(5 * time.Minute),
		SessionTimeout:          registry.Duration(time.Hour),
		DataTimeout:             registry.Duration(5 * time.Minute),
		MinDataRate:             1024,
		MaxErrors:               20,
		SoftErrorLimit:          10,
		ErrorDelay:              registry.Duration(time.Second),
		MaxAuthFailures:         3,
		AuthFailuresPerClient:   10,
		AuthFailuresPerUser:     10,
		AuthFailureWindow:       registry.Duration(15 * time.Minute),
		AuthFailureDelay:        registry.Duration(time.Second),
		AuthFailureDelayMax:     registry.Duration(30 * time.Second),
	}
}

// withDefaults returns l with every zero field set to its default, so a
// Config that names only some limits gets the others. The delays are the
// exception: zero is a valid setting there (no delay), so it stays.
func (l Limits) withDefaults() Limits {
	v, def := reflect.ValueOf(&l).Elem(), reflect.ValueOf(DefaultLimits())
	for i := range v.NumField() {
		switch v.Type().Field(i).Name {
		case "ErrorDelay", "AuthFailureDelay":
			continue
		}
		if v.Field(i).IsZero() {
			v.Field(i).Set(def.Field(i))
		}
	}
	return l
}

// Validate reports every limit that is out of range; the errors name the
// [server] key.
func (l Limits) Validate() error {
	var errs []error
	positive := func(key string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("server: %s must be positive (got %d)", key, v))
		}
	}
	positive("max_connections", int64(l.MaxConnections))
	positive("max_connections_per_client", int64(l.MaxConnectionsPerClient))
	positive("reserved_files", int64(l.ReservedFiles))
	positive("helo_timeout", int64(l.HeloTimeout))
	positive("max_commands_before_helo", int64(l.MaxCommandsBeforeHelo))
	positive("command_timeout", int64(l.CommandTimeout))
	positive("session_timeout", int64(l.SessionTimeout))
	positive("data_timeout", int64(l.DataTimeout))
	positive("min_data_rate", l.MinDataRate)
	positive("max_errors", int64(l.MaxErrors))
	positive("soft_error_limit", int64(l.SoftErrorLimit))
	positive("max_auth_failures", int64(l.MaxAuthFailures))
	positive("auth_failures_per_client", int64(l.AuthFailuresPerClient))
	positive("auth_failures_per_user", int64(l.AuthFailuresPerUser))
	positive("auth_failure_window", int64(l.AuthFailureWindow))
	if l.ErrorDelay < 0 {
		errs = append(errs, errors.New("server: error_delay must not be negative"))
	}
	if l.AuthFailureDelay < 0 || l.AuthFailureDelayMax < l.AuthFailureDelay {
		errs = append(errs, fmt.Errorf("server: auth_failure_delay (%s) must be between 0 and auth_failure_delay_max (%s)", l.AuthFailureDelay, l.AuthFailureDelayMax))
	}
	if l.MaxConnectionsPerClient > l.MaxConnections {
		errs = append(errs, fmt.Errorf("server: max_connections_per_client (%d) is more than max_connections (%d)", l.MaxConnectionsPerClient, l.MaxConnections))
	}
	if l.SoftErrorLimit > l.MaxErrors {
		errs = append(errs, fmt.Errorf("server: soft_error_limit (%d) is more than max_errors (%d)", l.SoftErrorLimit, l.MaxErrors))
	}
	return errors.Join(errs...)
}
