package contentfilter

import (
	"testing"

	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract kit.
func TestContract(t *testing.T) {
	registrytest.Run(t, "contentfilter", New, registrytest.Options{})
}
