// Package cli is a stand-in for the core CLI in builder tests (core v1.1.0).
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/elemta/elemta/reg"
)

// Main has the signature of the real cli.Main. It checks the manifest, then answers "plugins list --json".
func Main(ctx context.Context, args []string, manifest []string) int {
	for _, n := range manifest {
		if !slices.Contains(reg.Names(), n) {
			fmt.Fprintf(os.Stderr, "manifest names %q but no package registered it (registered: %v)\n", n, reg.Names())
			return 1
		}
	}
	if len(args) == 3 && args[0] == "plugins" && args[1] == "list" && args[2] == "--json" {
		type entry struct {
			Name string `json:"name"`
		}
		var list []entry
		for _, n := range reg.Names() {
			list = append(list, entry{n})
		}
		json.NewEncoder(os.Stdout).Encode(list)
		return 0
	}
	fmt.Println("core v1.1.0")
	return 0
}
