package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// goRunner runs the go command in the build module.
type goRunner struct {
	cmd     string
	dir     string
	extra   []string // environment added last (GOOS, GOARCH, CGO_ENABLED)
	verbose bool
	log     io.Writer
}

func (o options) runner(dir string, extra []string) goRunner {
	return goRunner{cmd: o.goCmd, dir: dir, extra: extra, verbose: o.verbose, log: o.log}
}

// run returns the command's stdout; on failure the error carries stderr.
func (g goRunner) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, g.cmd, args...)
	cmd.Dir = g.dir
	cmd.Env = append(buildEnv(os.Environ()), g.extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if g.verbose {
		fmt.Fprintf(g.log, "elemta-build: (cd %s && %s %s %s)\n", g.dir, strings.Join(g.extra, " "), g.cmd, strings.Join(args, " "))
	}
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &goError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// goError is a failed go command with its stderr.
type goError struct {
	args   []string
	err    error
	stderr string
}

func (e *goError) Error() string {
	return fmt.Sprintf("go %s: %v\n%s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *goError) Unwrap() error { return e.err }

// versions lists the published versions of a module, from GOPROXY's list.
func (g goRunner) versions(ctx context.Context, path string) ([]string, error) {
	out, err := g.run(ctx, "list", "-m", "-versions", "-json", path+"@latest")
	if err != nil {
		return nil, err
	}
	var m struct{ Versions []string }
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("read go list -m -versions output: %w", err)
	}
	return m.Versions, nil
}

// buildEnv keeps the caller's environment (GOPROXY, GOMODCACHE, GOFLAGS)
// but makes sure the build module is its own module: no workspace, go.mod
// may be updated (-mod=mod), and no VCS stamping of whatever repository
// the build directory sits in (-buildvcs=false). GOOS, GOARCH and
// CGO_ENABLED are dropped: the builder sets them per target.
func buildEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	flags := []string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOWORK", "GOOS", "GOARCH", "CGO_ENABLED":
			continue
		case "GOFLAGS":
			for _, fl := range strings.Fields(v) {
				name, _, _ := strings.Cut(strings.TrimLeft(fl, "-"), "=")
				if name != "mod" && name != "buildvcs" {
					flags = append(flags, fl)
				}
			}
			continue
		}
		out = append(out, kv)
	}
	flags = append(flags, "-mod=mod", "-buildvcs=false")
	return append(out, "GOWORK=off", "GOFLAGS="+strings.Join(flags, " "))
}
