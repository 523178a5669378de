package spf

import (
	"testing"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract kit, with
// the shared resolver pointed at the loopback test DNS.
func TestContract(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	res, err := resolver.New(resolver.Config{Servers: []string{dns}}, resolver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	registrytest.Run(t, "spf", New, registrytest.Options{Host: registry.Host{Resolver: res}})
}
