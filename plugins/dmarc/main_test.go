package dmarc

import (
	"testing"

	"github.com/elemta/elemta/registry/registrytest"
)

// TestMain lets this test binary serve as an isolated plugin's worker.
func TestMain(m *testing.M) { registrytest.Main(m) }
