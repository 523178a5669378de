package ratelimit

import (
	"testing"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// contractLimits are tight enough that the kit's sample messages (three
// messages from one client, two recipients each) run into them: the first
// message passes, the second is refused at its second recipient, the third
// at its sender. Same-results then compares refusals too, not only passes.
const contractLimits = `max_sessions_per_client = 4

[[plugins.ratelimit.limits]]
name = "client-messages"
key = ["ip"]
count = 2
window = "1h"

[[plugins.ratelimit.limits]]
name = "rcpt-domain"
key = ["rcpt_domain"]
count = 3
window = "1h"
`

// TestContract checks the plugin against the registry's contract kit, in
// process and with isolation = "process" (one worker: the bbolt file is
// locked by the process that opens it), on a bbolt file in the test's data
// directory and a clock that stands still, so that every run spends the
// budgets the same way.
func TestContract(t *testing.T) {
	registrytest.Run(t, "ratelimit", New, registrytest.Options{
		Host:   registry.Host{DataDir: t.TempDir(), Clock: storetest.NewClock(epoch)},
		Config: contractLimits,
		Configs: []string{
			// The README's examples.
			`max_sessions_per_client = 10

[[plugins.ratelimit.limits]]
name = "user-messages"
key = ["user"]
count = 200
window = "1h"
burst = 20

[[plugins.ratelimit.limits]]
name = "user-per-domain"
key = ["user", "rcpt_domain"]
count = 100
window = "10m"

[[plugins.ratelimit.limits]]
name = "connections"
key = ["network"]
on = "connect"
count = 60
window = "1m"`,
			`limits = []
max_sessions_per_client = 50
session_key = "network"`,
			`store = "redis"
redis_addr = "redis.internal.example:6379"
redis_password = "s3cret"
redis_prefix = "elemta:ratelimit:"
timeout = "2s"`,
			// Values the README says are refused.
			"[[plugins.ratelimit.limits]]\nkey = [\"ip\"]\ncount = 1\nwindow = \"1h\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 1\nwindow = \"1h\"\n[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 1\nwindow = \"1h\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 0\nwindow = \"1h\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 1\nwindow = 0",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 2000000\nwindow = \"1s\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 1\nwindow = \"1h\"\nburst = -1",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = []\ncount = 1\nwindow = \"1h\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"country\"]\ncount = 1\nwindow = \"1h\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"ip\"]\ncount = 1\nwindow = \"1h\"\non = \"data\"",
			"[[plugins.ratelimit.limits]]\nname = \"a\"\nkey = [\"rcpt\"]\ncount = 1\nwindow = \"1h\"\non = \"connect\"",
			`max_sessions_per_client = -1`,
			`session_key = "sender"`,
			`session_lease = 0`,
			`ipv4_prefix = 33`,
			`ipv6_prefix = 15`,
			`exempt_networks = ["not-a-network"]`,
			`store = "memcached"`,
			`bolt_sweep_interval = 0`,
			`store = "redis"
redis_addr = ""`,
			"isolation = \"process\"\nworkers = 2",
		},
	})
}
