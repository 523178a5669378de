package registry

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// Resolver is the DNS interface the host hands to plugins. It matches the
// lookup methods of *net.Resolver and blitiri.com.ar/go/spf's DNSResolver, so
// either can be used directly. Every call takes a context: a slow DNS server
// must never outlive the deadline of the plugin that asked.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Clock tells the time. Plugins that reason about time (greylisting, rate
// limits, caches) take it from the host so tests can move it by hand.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Host holds what a plugin needs from outside. The host (the elemta binary or
// a test) builds it once and every plugin constructor receives it. Fields are
// never nil once the Manager has filled the defaults in.
type Host struct {
	// Logger is already scoped to the plugin (attribute "plugin").
	Logger *slog.Logger
	// Resolver answers DNS queries through the process-wide cache.
	Resolver Resolver
	// Clock is the wall clock, injectable in tests.
	Clock Clock
	// Hostname is this server's name, used in trace headers.
	Hostname string
	// AuthservID names this server in Authentication-Results and
	// ARC-Authentication-Results (RFC 8601 §2.5): every plugin that writes
	// or trusts those fields uses the same one. Default: Hostname.
	AuthservID string
	// DataDir is where plugins may keep state on disk (one subdirectory per
	// plugin is theirs to create). A named instance ("greylist/eu") gets
	// a directory of its own (<data dir>/instances/eu), so two instances
	// never share files.
	DataDir string
}
