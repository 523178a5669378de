package greylist

import (
	"testing"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract kit, in
// process and with isolation = "process" (one worker: the bbolt file is
// locked by the process that opens it), on a bbolt file in the test's data
// directory and a clock that stands still, so that every run greylists the
// sample messages the same way.
func TestContract(t *testing.T) {
	registrytest.Run(t, "greylist", New, registrytest.Options{
		Host: registry.Host{DataDir: t.TempDir(), Clock: storetest.NewClock(epoch)},
		Configs: []string{
			// The README's examples.
			`delay = "2m"
retry_window = "12h"
ipv6_prefix = 48
exempt_networks = ["127.0.0.0/8", "::1/128", "192.0.2.0/24"]
exempt_recipient_domains = ["partner.example", ".internal.example"]
exempt_spf_pass = true
on_error = "tempfail"`,
			`store = "redis"
redis_addr = "redis.internal.example:6379"
redis_password = "s3cret"
redis_prefix = "elemta:greylist:"
timeout = "2s"`,
			// Values the README says are refused.
			`delay = 0`,
			`delay = "10m"
retry_window = "5m"`,
			`expire = 0`,
			`ipv4_prefix = 33`,
			`ipv4_prefix = 7`,
			`ipv6_prefix = 129`,
			`ipv6_prefix = 15`,
			`auto_allow_after = -1`,
			`subaddress_separators = ""`,
			`exempt_networks = ["192.0.2.0/33"]`,
			`exempt_recipient_domains = ["a@b.example"]`,
			`exempt_recipient_domains = ["."]`,
			`store = "memcached"`,
			`bolt_sweep_interval = 0`,
			`bolt_lock_timeout = 0`,
			`store = "redis"
redis_addr = ""`,
			`store = "redis"
redis_timeout = 0`,
			"isolation = \"process\"\nworkers = 2",
			"isolation = \"process\"\nworkers = 1",
		},
	})
}
