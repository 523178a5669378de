package cli_test

import (
	"os"
	"testing"

	"github.com/elemta/elemta/pluginhost"
)

// TestMain lets this test binary serve as the worker of plugins with
// isolation = "process", as the elemta binary does in main.
func TestMain(m *testing.M) {
	pluginhost.RunWorker()
	os.Exit(m.Run())
}
