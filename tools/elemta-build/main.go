// Command elemta-build builds an Elemta binary with the plugins a plugins
// file selects (the default set or a named variant) without touching the
// working tree: it writes a main package into a temporary module that
// requires the core module (this checkout through a replace directive, or a
// published version) and every plugin module at its pinned version, then
// runs `go mod tidy` and `go build` inside that module only.
//
//	go run ./tools/elemta-build -config plugins.yaml -variant minimal -o bin/elemta-minimal
//	go run ./tools/elemta-build -config plugins.yaml -all-variants -o bin/
//
// The build fails when the module graph moves the core module or a pinned
// plugin module to a version other than the one asked for, and when the
// built binary does not register exactly the plugins the variant names
// (checked by running `<binary> plugins list --json`).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elemta-build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o   options
		all bool
		out string
	)
	fs.StringVar(&o.config, "config", "plugins.yaml", "plugins file")
	fs.StringVar(&o.variant, "variant", "", "variant to build (default: the top-level selection)")
	fs.BoolVar(&all, "all-variants", false, "build every variant (and not the default selection); -o is a directory")
	fs.StringVar(&out, "o", "", "output binary (default bin/elemta or bin/elemta-VARIANT); a directory with -all-variants")
	fs.StringVar(&o.coreDir, "core-dir", "", "core checkout to build against through a replace (default: the checkout holding the plugins file)")
	fs.StringVar(&o.coreVersion, "core-version", "", "build against this published core version instead of a checkout")
	fs.StringVar(&o.pluginsDir, "plugins-dir", "", "built-in plugins directory (default: plugins/ next to the plugins file)")
	fs.StringVar(&o.workDir, "workdir", "", "build in this directory and keep it (go.mod, go.sum, main.go); default: a temporary directory, removed")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary build module and print its path")
	fs.BoolVar(&o.check, "check", true, "run the built binary's `plugins list --json` and compare with the selection (off when cross-compiling)")
	fs.StringVar(&o.goCmd, "go", "go", "go command")
	fs.BoolVar(&o.verbose, "v", false, "print the go commands run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "elemta-build: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if all && o.variant != "" {
		fmt.Fprintln(stderr, "elemta-build: -variant and -all-variants exclude each other")
		return 2
	}
	o.log = stderr

	variants := []string{o.variant}
	if all {
		f, err := o.load()
		if err != nil {
			fmt.Fprintf(stderr, "elemta-build: %v\n", err)
			return 1
		}
		variants = f.VariantNames()
		if len(variants) == 0 {
			fmt.Fprintf(stderr, "elemta-build: %s declares no variants\n", o.config)
			return 1
		}
		if out == "" {
			out = "bin"
		}
	}
	for _, v := range variants {
		vo := o
		vo.variant = v
		vo.output = outputPath(out, v, all)
		res, err := build(ctx, vo)
		if err != nil {
			fmt.Fprintf(stderr, "elemta-build: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %s\n", res.Output, strings.Join(res.Plugins, ", "))
		if res.KeptDir != "" {
			fmt.Fprintf(stdout, "%s: build module kept in %s\n", res.Output, res.KeptDir)
		}
	}
	return 0
}

// outputPath names the binary of a variant: out itself, or
// out/elemta[-variant] when out is a directory (all variants, or a trailing
// separator).
func outputPath(out, variant string, all bool) string {
	name := BinaryName(variant)
	switch {
	case out == "":
		return filepath.Join("bin", name)
	case all || strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)):
		return filepath.Join(out, name)
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return filepath.Join(out, name)
	}
	return out
}

// BinaryName is elemta for the default selection and elemta-VARIANT for a
// variant, as in `make build VARIANT=minimal` → bin/elemta-minimal.
func BinaryName(variant string) string {
	if variant == "" || variant == pluginsfile.DefaultVariant {
		return "elemta"
	}
	return "elemta-" + variant
}
