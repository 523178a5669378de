// Command elemta is the Elemta mail transfer agent. Its plugins are
// compiled in: gen/ blank-imports the ones plugins.yaml selects.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
	"github.com/elemta/elemta/pluginhost"
)

func main() {
	// Worker mode first: an instance with isolation = "process" runs in
	// this same binary re-executed with ELEMTA_PLUGIN_WORKER=1, which
	// serves that plugin on fd 3 and exits here (pluginhost.RunWorker).
	pluginhost.RunWorker()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], gen.Manifest)
	stop()
	os.Exit(code)
}
