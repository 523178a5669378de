package clamav

import (
	"fmt"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract runs the registry's contract kit against the real clamd,
// with a server that accepts and never answers for the cancellation check.
func TestContract(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.Run(t, "clamav", New, registrytest.Options{
		Config:     fmt.Sprintf("servers = [%q]", tcp),
		SlowConfig: fmt.Sprintf("servers = [%q]\ntimeout = 60", registrytest.Blackhole(t)),
		// The README's cache keys and invalid values.
		Configs: []string{`cache_store = "redis"`, `cache_store = "disk"`, `cache_redis_prefix = "a{b}"`,
			`cache_version_interval = 0`, `cache_version_interval = "25h"`, `cache_ttl = 0`, `cache_size = 0`},
	})
}
