package authres

import (
	"testing"

	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract kit.
func TestContract(t *testing.T) {
	registrytest.Run(t, "authres", New, registrytest.Options{})
}
