// Command elemta-build builds an Elemta binary with the plugins a plugins
// file selects (the default set or a named variant) without touching the
// working tree: it writes a main package into a temporary module that
// requires the core module (this checkout through a replace directive, or a
// published version) and every plugin module at its pinned version, then
// runs `go mod tidy` and `go build` inside that module only.
//
//	go run ./tools/elemta-build -config plugins.yaml -variant minimal -o bin/elemta-minimal
//	go run ./tools/elemta-build -config plugins.yaml -all-variants -o bin/
//	go run github.com/elemta/elemta/tools/elemta-build@v1.4.0 -config my.yaml -platform linux/amd64,linux/arm64
//	go run ./tools/elemta-build run -config plugins.yaml -- scan message.eml
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
	"slices"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "run" {
		return runBinary(ctx, args[1:], os.Stdin, stdout, stderr)
	}
	o, all, code := parseFlags("elemta-build", args, stderr)
	if code >= 0 {
		return code
	}
	p, err := newPlan(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "elemta-build: %v\n", err)
		return 1
	}
	variants := []string{o.variant}
	if all {
		variants = p.file.VariantNames()
		if len(variants) == 0 {
			fmt.Fprintf(stderr, "elemta-build: %s declares no variants\n", o.config)
			return 1
		}
		o.dirOutput = true
	}
	for _, v := range variants {
		vo := o
		vo.variant = v
		res, err := p.build(ctx, vo)
		if err != nil {
			fmt.Fprintf(stderr, "elemta-build: %v\n", err)
			return 1
		}
		if o.downloadOnly {
			fmt.Fprintf(stdout, "variant %s: modules downloaded: %s\n", variantName(v), strings.Join(res.Plugins, ", "))
		}
		for _, out := range res.Outputs {
			fmt.Fprintf(stdout, "%s: %s\n", out, strings.Join(res.Plugins, ", "))
		}
		for _, pkg := range res.Packages {
			fmt.Fprintf(stdout, "%s: package\n", pkg)
		}
		if res.KeptDir != "" {
			fmt.Fprintf(stdout, "variant %s: build module kept in %s\n", variantName(v), res.KeptDir)
		}
	}
	return 0
}

// parseFlags reads the build flags; code is -1 to go on, else the exit
// status.
func parseFlags(name string, args []string, stderr io.Writer) (o options, all bool, code int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var platforms, packages string
	sbom := true
	fs.StringVar(&o.config, "config", "plugins.yaml", "plugins file")
	fs.StringVar(&o.variant, "variant", "", "variant to build (default: the top-level selection)")
	fs.BoolVar(&all, "all-variants", false, "build every variant (and not the default selection); -o is a directory")
	fs.StringVar(&o.output, "o", "", "output binary, or directory (default: dist.output, else bin/)")
	fs.StringVar(&o.coreDir, "core-dir", "", "core checkout to build against (default: the checkout holding the plugins file)")
	fs.StringVar(&o.coreVersion, "core-version", "", "build against this published core version (default without a checkout: the builder's own version)")
	fs.StringVar(&o.pluginsDir, "plugins-dir", "", "built-in plugins directory (default: plugins/ of the core built against)")
	fs.StringVar(&platforms, "platform", "", "GOOS/GOARCH list to build for, e.g. linux/amd64,linux/arm64 (default: platforms: of the plugins file, else $GOOS/$GOARCH, else the host)")
	fs.BoolVar(&o.cgo, "cgo", false, "build with CGO_ENABLED=1 (default static, like cgo: true in the plugins file)")
	fs.StringVar(&packages, "package", "", "also make these packages of each linux binary: deb, rpm or deb,rpm (default: packages: of the plugins file)")
	fs.BoolVar(&sbom, "sbom", true, "write a CycloneDX SBOM beside each binary (BINARY.cdx.json)")
	fs.BoolVar(&o.downloadOnly, "download-only", false, "resolve and download the modules, check versions, build nothing")
	fs.StringVar(&o.workDir, "workdir", "", "build in this directory and keep it (go.mod, go.sum, main.go); default: a temporary directory, removed")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary build module and print its path")
	fs.BoolVar(&o.check, "check", true, "check the registered plugins against the selection (runs `plugins list --json` of a host build)")
	fs.StringVar(&o.goCmd, "go", "go", "go command")
	fs.BoolVar(&o.verbose, "v", false, "print the go commands run")
	if err := fs.Parse(args); err != nil {
		return o, all, 2
	}
	if name == "elemta-build" && fs.NArg() > 0 {
		fmt.Fprintf(stderr, "elemta-build: unexpected arguments: %v\n", fs.Args())
		return o, all, 2
	}
	if all && o.variant != "" {
		fmt.Fprintln(stderr, "elemta-build: -variant and -all-variants exclude each other")
		return o, all, 2
	}
	if platforms != "" {
		list, err := parsePlatforms(platforms)
		if err != nil {
			fmt.Fprintf(stderr, "elemta-build: %v\n", err)
			return o, all, 2
		}
		o.platforms = list
	}
	if packages != "" {
		for _, f := range strings.Split(packages, ",") {
			if !slices.Contains(packageFormats, f) {
				fmt.Fprintf(stderr, "elemta-build: -package %q: formats are %s\n", f, strings.Join(packageFormats, ", "))
				return o, all, 2
			}
			o.packages = append(o.packages, f)
		}
	}
	o.noSBOM = !sbom
	o.log = stderr
	o.rest = fs.Args()
	return o, all, -1
}
