package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// runBinary is `elemta-build run [flags] [--] [elemta arguments]`: build
// the selection for the host into a temporary directory and run it with
// the arguments, the dev loop of a plugin author (write a plugins.yaml
// with `path: .` in the plugin's directory, then `elemta-build run -- scan
// x.eml`). The exit status is the binary's.
func runBinary(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, all, code := parseFlags("elemta-build run", args, stderr)
	if code >= 0 {
		return code
	}
	if all || len(o.platforms) > 0 || o.output != "" || o.downloadOnly {
		fmt.Fprintln(stderr, "elemta-build run: -all-variants, -platform, -o and -download-only do not apply")
		return 2
	}
	dir, err := os.MkdirTemp("", "elemta-run-")
	if err != nil {
		fmt.Fprintf(stderr, "elemta-build run: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	o.output = filepath.Join(dir, "elemta")
	p, err := newPlan(ctx, o)
	if err == nil {
		// Always the host: the binary runs here.
		p.platforms, p.suffix = []pluginsfile.Platform{hostPlatform()}, false
		_, err = p.build(ctx, o)
	}
	if err != nil {
		fmt.Fprintf(stderr, "elemta-build run: %v\n", err)
		return 1
	}
	cmd := exec.CommandContext(ctx, o.output, o.rest...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "elemta-build run: %v\n", err)
		return 1
	}
	return 0
}
