// Package dnstest gives tests the DNS resolver Elemta runs with
// (internal/resolver) pointed at the loopback test DNS of tools/testenv,
// which serves the zone example.test with its DKIM, SPF and DMARC records.
//
// It is a package of its own, not part of testenv, because the resolver's
// own tests use testenv.
package dnstest

import (
	"testing"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/testenv"
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
