package registry

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Resolver is the DNS interface the host hands to plugins. It matches the
// lookup methods of *net.Resolver and blitiri.com.ar/go/spf's DNSResolver, so
// either can be used directly. Every call takes a context: a slow DNS server
// must never outlive the deadline of the plugin that asked.
//
// The error contract, which every Resolver (the host's, *net.Resolver, a
// test's) keeps: a failed lookup returns a bare *net.DNSError, never
// wrapped (libraries such as blitiri.com.ar/go/spf test it with a type
// assertion), and a plugin tells the cases apart by its flags:
//
//   - the name or the record type does not exist (NXDOMAIN, NODATA):
//     IsNotFound, Err "no such host". This is an answer, not a failure:
//     SPF "none", DMARC "no policy", a DKIM key that is gone;
//   - the lookup failed and may work later (SERVFAIL, REFUSED, an
//     unreachable or silent server): IsTemporary, and IsTimeout as well
//     when it timed out. Map it to temperror or a tempfail, never to a
//     pass or "none": an attacker who can break DNS must not turn a fail
//     into an accept;
//   - the plugin's context ended: IsTimeout and IsTemporary for its
//     deadline, Err "operation was canceled" for a cancel; errors.Is(err,
//     context.DeadlineExceeded) (or context.Canceled) also holds, through
//     UnwrapErr.
//
// Any other error is a temporary failure too. A lookup that succeeds with
// no records returns an empty answer and a nil error only where
// *net.Resolver does; treat an empty answer like IsNotFound.
//
// registrytest.Resolver answers from a zone text with these errors and
// injects the failures (registrytest.EachDNSFailure).
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
	// Instance is the ID of the plugin instance being built, as config
	// names it ("spf", "spf/strict") and as its results carry it
	// (Result.Plugin). A plugin that reads a result of its own from an
	// earlier phase or stage uses FindFrom(pc, host.Instance): Find would
	// return the first instance's. The Manager sets it for every instance
	// (in an isolated instance's workers too); registrytest sets the
	// plugin's name.
	Instance string
	// Logger is already scoped to the plugin (attribute "plugin").
	Logger *slog.Logger
	// Resolver answers DNS queries through the process-wide cache. Unset,
	// the Manager uses net.DefaultResolver (the system's DNS);
	// registrytest's Run and Load use an empty registrytest.Resolver.
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
	// Redis is the process's one Redis pool (the host config's [store]
	// table: one server, Sentinel or Cluster, with TLS), shared by every
	// plugin that keeps state or caches results in Redis (pkg/store,
	// pkg/resultcache). Nil when [store] names no server. Plugins never
	// close it. A reload that leaves [store] alone hands the new instances
	// the same pool; one that changes it, a new one (the old instances
	// keep theirs until they are closed).
	Redis redis.UniversalClient
	// Metrics makes the plugin's own metrics, scoped to its instance
	// (see Metrics). Unset, the Manager uses NopMetrics.
	Metrics Metrics
}
