package rspamd

import (
	"fmt"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract runs the registry's contract kit against the real rspamd,
// with a server that accepts and never answers for the cancellation check.
func TestContract(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	registrytest.Run(t, "rspamd", New, registrytest.Options{
		Config:     fmt.Sprintf("url = %q", url),
		SlowConfig: fmt.Sprintf("url = \"http://%s\"\ntimeout = 60", registrytest.Blackhole(t)),
	})
}
