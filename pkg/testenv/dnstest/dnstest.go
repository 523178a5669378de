// Package dnstest gives tests the DNS resolver Elemta runs with pointed at
// a server of the test's choosing: the loopback test DNS of tools/testenv,
// which serves the zone example.test with its DKIM, SPF and DMARC records
// (Resolver), or a server the test runs itself (ResolverFor), for example
// one that never answers.
//
// For unit tests that must not depend on a running server, use the
// static-zone resolver of registry/registrytest (registrytest.NewResolver)
// instead: it answers from a zone text and injects NXDOMAIN, SERVFAIL and
// timeouts with the error shapes of this resolver.
//
// It is a package of its own, not part of testenv, because the resolver's
// own tests use testenv.
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version.
package dnstest

import (
	"testing"
	"time"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
)

// Resolver returns a resolver asking only the test DNS ($ELEMTA_TEST_DNS).
// Without the test DNS the test is skipped, or failed under CI=true
// (testenv.Require).
func Resolver(t testing.TB) registry.Resolver {
	t.Helper()
	dns := testenv.Require(t, testenv.DNS)
	res, err := resolver.New(resolver.Config{Servers: []string{dns}}, resolver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// ResolverFor returns Elemta's resolver asking only servers (host:port on
// loopback), each once, waiting at most timeout per query (0: the
// resolver's default of 5s). Nothing is cached between tests: every call
// builds a new resolver.
func ResolverFor(t testing.TB, servers []string, timeout time.Duration) registry.Resolver {
	t.Helper()
	res, err := resolver.New(resolver.Config{Servers: servers, Timeout: registry.Duration(timeout), Attempts: 1}, resolver.Options{})
	if err != nil {
		t.Fatalf("dnstest: resolver for %v: %v", servers, err)
	}
	return res
}

// StaticResolverFor is ResolverFor with a static zone file whose answers
// win over the servers' ([dns] static in the host's config).
func StaticResolverFor(t testing.TB, servers []string, zoneFile string, timeout time.Duration) registry.Resolver {
	t.Helper()
	res, err := resolver.New(resolver.Config{Servers: servers, Static: zoneFile, Timeout: registry.Duration(timeout), Attempts: 1}, resolver.Options{})
	if err != nil {
		t.Fatalf("dnstest: resolver for %v with %s: %v", servers, zoneFile, err)
	}
	return res
}
