package spf

import (
	"testing"

	"github.com/elemta/elemta/pkg/testenv/dnstest"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract kit, with
// the shared resolver pointed at the loopback test DNS.
func TestContract(t *testing.T) {
	registrytest.Run(t, "spf", New, registrytest.Options{Host: registry.Host{Resolver: dnstest.Resolver(t)}})
}
