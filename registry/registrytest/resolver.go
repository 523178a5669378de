package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/registry"
)

// Resolver is a registry.Resolver that answers from a zone text and never
// touches the network or the system's DNS: the resolver for a DNS plugin's
// unit tests, and what Run and Load hand a plugin when Host.Resolver is
// unset.
//
// It is Elemta's own resolver (the one `elemta serve` runs), offline, with
// the zone as its static file: the four lookups, CNAME chains, TXT strings,
// NXDOMAIN and NODATA, and the caller's deadline and cancel behave and fail
// exactly as in production. Names the zone does not own are NXDOMAIN. On
// top of that, Fail makes a name fail the way a broken DNS does (SERVFAIL,
// a timeout of the resolver, a lookup that hangs), with the errors the
// production resolver returns for those: see DNSFailure and the error
// contract on registry.Resolver.
//
// The zone is an RFC 1035 master file (miekg/dns syntax: $ORIGIN, $TTL,
// relative names relative to the root unless $ORIGIN says otherwise; no
// $INCLUDE). Under the owner of a SOA record the zone is authoritative;
// without one, every name it does not list is NXDOMAIN too (the resolver
// is offline):
//
//	r := registrytest.NewResolver(t, `
//	$ORIGIN example.test.
//	@               IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
//	@               IN MX  10 mail
//	mail            IN A   192.0.2.25
//	mail            IN AAAA 2001:db8::25
//	25.2.0.192.in-addr.arpa. IN PTR mail.example.test.
//	_dmarc          IN TXT "v=DMARC1; p=reject"
//	`)
//	r.Fail("broken.test", registrytest.ServFail)
//
// Safe for concurrent use.
type Resolver struct {
	res *resolver.Resolver

	mu    sync.Mutex
	fails map[string]DNSFailure // canonical query name -> failure
}

var _ registry.Resolver = (*Resolver)(nil)

// NewResolver returns a resolver answering from zone ("" for none: every
// name is NXDOMAIN). A zone that does not parse fails the test with the
// parser's error, which names the line.
func NewResolver(t testing.TB, zone string) *Resolver {
	t.Helper()
	cfg := resolver.Config{Offline: true}
	if zone != "" {
		cfg.Static = filepath.Join(t.TempDir(), "zone")
		if err := os.WriteFile(cfg.Static, []byte(zone), 0o600); err != nil {
			t.Fatalf("registrytest: write zone: %v", err)
		}
	}
	res, err := resolver.New(cfg, resolver.Options{})
	if err != nil {
		t.Fatalf("registrytest: zone:\n%s\n%v", zone, err)
	}
	return &Resolver{res: res, fails: map[string]DNSFailure{}}
}

// Fail makes every lookup of name fail with f, whatever the zone says; an
// IP address names its reverse (PTR) lookup. Fail(name, 0) removes the
// failure. It returns r, so calls chain.
func (r *Resolver) Fail(name string, f DNSFailure) *Resolver {
	key := queryName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == 0 {
		delete(r.fails, key)
	} else {
		r.fails[key] = f
	}
	return r
}

// LookupTXT returns the TXT records of name, each record's strings joined.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := r.failure(ctx, name, name, dns.TypeTXT); err != nil {
		return nil, err
	}
	return r.res.LookupTXT(ctx, name)
}

// LookupMX returns the MX records of name sorted by preference.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if err := r.failure(ctx, name, name, dns.TypeMX); err != nil {
		return nil, err
	}
	return r.res.LookupMX(ctx, name)
}

// LookupIPAddr returns the A and AAAA addresses of host (A first).
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if net.ParseIP(host) == nil {
		if err := r.failure(ctx, host, host, dns.TypeA); err != nil {
			return nil, err
		}
	}
	return r.res.LookupIPAddr(ctx, host)
}

// LookupAddr returns the names addr maps back to (PTR records).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if arpa, err := dns.ReverseAddr(addr); err == nil {
		if err := r.failure(ctx, addr, arpa, dns.TypePTR); err != nil {
			return nil, err
		}
	}
	return r.res.LookupAddr(ctx, addr)
}

// failure returns the error of an injected failure for qname, reported
// under name as the production resolver does, or nil to answer from the
// zone. A caller whose context has ended gets the resolver's own context
// error, also for a failing name.
func (r *Resolver) failure(ctx context.Context, name, qname string, qtype uint16) error {
	r.mu.Lock()
	f := r.fails[dns.CanonicalName(qname)]
	r.mu.Unlock()
	if f == 0 || ctx.Err() != nil {
		return nil
	}
	if f == Hang {
		<-ctx.Done()
		return nil // the lookup that follows returns the context's error
	}
	return f.err(name, dns.CanonicalName(qname), qtype)
}

// queryName is the canonical name Fail keys on: the reverse name of an
// address, else the name itself.
func queryName(name string) string {
	if net.ParseIP(name) != nil {
		if arpa, err := dns.ReverseAddr(name); err == nil {
			return dns.CanonicalName(arpa)
		}
	}
	return dns.CanonicalName(name)
}

// FailingServer is the address the errors of injected failures name as the
// server that failed (a documentation address, RFC 5737).
const FailingServer = "192.0.2.53:53"

// DNSFailure is a way a DNS lookup fails.
type DNSFailure int

// The failures a DNS plugin must handle. Each gives the *net.DNSError,
// never wrapped, that Elemta's resolver gives in that situation:
const (
	// NXDOMAIN: the name does not exist. Err "no such host", IsNotFound.
	// (A name the zone does not list is NXDOMAIN without Fail; NODATA, a
	// name without records of the asked type, reads the same.)
	NXDOMAIN DNSFailure = iota + 1
	// ServFail: the server answered SERVFAIL (or REFUSED, or another
	// error code). Err "query NAME. TYPE: server answered SERVFAIL",
	// IsTemporary, not IsTimeout.
	ServFail
	// Timeout: the server did not answer within the resolver's timeout.
	// Err "read udp SERVER: i/o timeout", IsTemporary and IsTimeout;
	// errors.Is(err, os.ErrDeadlineExceeded).
	Timeout
	// Hang: the lookup lasts until the caller's context ends, then fails
	// with the context's error (a deadline: IsTimeout, IsTemporary,
	// errors.Is(err, context.DeadlineExceeded); a cancel:
	// errors.Is(err, context.Canceled)). A plugin that ignores its context
	// hangs with it.
	Hang
)

// DNSFailures are the failures every DNS plugin's tests should cover, in
// this order: NXDOMAIN, ServFail, Timeout.
func DNSFailures() []DNSFailure { return []DNSFailure{NXDOMAIN, ServFail, Timeout} }

func (f DNSFailure) String() string {
	switch f {
	case NXDOMAIN:
		return "nxdomain"
	case ServFail:
		return "servfail"
	case Timeout:
		return "timeout"
	case Hang:
		return "hang"
	}
	return fmt.Sprintf("DNSFailure(%d)", int(f))
}

// err builds the error the production resolver returns for f on a lookup
// of name (qname/qtype on the wire). TestResolverErrorsMatchProduction
// holds the two side by side.
func (f DNSFailure) err(name, qname string, qtype uint16) error {
	switch f {
	case NXDOMAIN:
		return &net.DNSError{Err: "no such host", Name: name, Server: FailingServer, IsNotFound: true}
	case ServFail:
		cause := fmt.Errorf("query %s %s: server answered %s", qname, dns.TypeToString[qtype], dns.RcodeToString[dns.RcodeServerFailure])
		return &net.DNSError{Err: cause.Error(), Name: name, Server: FailingServer, IsTemporary: true, UnwrapErr: cause}
	case Timeout:
		cause := fmt.Errorf("read udp %s: %w", FailingServer, os.ErrDeadlineExceeded)
		return &net.DNSError{Err: cause.Error(), Name: name, Server: FailingServer, IsTemporary: true, IsTimeout: true, UnwrapErr: cause}
	}
	return nil
}

// RequireDNSError fails t unless err is what a lookup failing with f
// returns: a bare *net.DNSError (never wrapped: blitiri.com.ar/go/spf and
// go-msgauth check with a type assertion) with f's flags. A DNS plugin
// that passes its resolver's errors on, or builds its own, checks them
// with it.
func RequireDNSError(t testing.TB, err error, f DNSFailure) {
	t.Helper()
	de, ok := err.(*net.DNSError)
	if !ok {
		t.Fatalf("%s: error %v (%T), want a bare *net.DNSError", f, err, err)
	}
	var bad []string
	check := func(what string, got, want bool) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s = %v", what, got))
		}
	}
	switch f {
	case NXDOMAIN:
		check("IsNotFound", de.IsNotFound, true)
		check("IsTemporary", de.IsTemporary, false)
		check("IsTimeout", de.IsTimeout, false)
	case ServFail:
		check("IsNotFound", de.IsNotFound, false)
		check("IsTemporary", de.IsTemporary, true)
		check("IsTimeout", de.IsTimeout, false)
	case Timeout:
		check("IsNotFound", de.IsNotFound, false)
		check("IsTemporary", de.IsTemporary, true)
		check("IsTimeout", de.IsTimeout, true)
		check("errors.Is(err, os.ErrDeadlineExceeded)", errors.Is(err, os.ErrDeadlineExceeded), true)
	case Hang:
		check("IsNotFound", de.IsNotFound, false)
		if errors.Is(err, context.DeadlineExceeded) {
			check("IsTemporary", de.IsTemporary, true)
			check("IsTimeout", de.IsTimeout, true)
		} else {
			check("errors.Is(err, context.DeadlineExceeded or context.Canceled)", errors.Is(err, context.Canceled), true)
		}
	default:
		t.Fatalf("RequireDNSError: unknown failure %v", f)
	}
	if len(bad) > 0 {
		t.Fatalf("%s: error %q has %s", f, de, strings.Join(bad, ", "))
	}
}

// EachDNSFailure runs fn as one subtest per DNSFailures() (named
// "nxdomain", "servfail", "timeout"), each with a new Resolver on zone in
// which every lookup of name fails that way. fn builds the plugin on r and
// checks what it makes of the failure: SPF's temperror for servfail and
// timeout and none for nxdomain, DKIM's permfail or tempfail, ...
func EachDNSFailure(t *testing.T, zone, name string, fn func(t *testing.T, f DNSFailure, r *Resolver)) {
	t.Helper()
	for _, f := range DNSFailures() {
		t.Run(f.String(), func(t *testing.T) {
			fn(t, f, NewResolver(t, zone).Fail(name, f))
		})
	}
}
