package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

func hostPlatform() pluginsfile.Platform {
	return pluginsfile.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// parsePlatforms reads -platform linux/arm64,darwin/amd64.
func parsePlatforms(s string) ([]pluginsfile.Platform, error) {
	var out []pluginsfile.Platform
	for _, part := range strings.Split(s, ",") {
		pf, err := pluginsfile.ParsePlatform(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("-platform: %w", err)
		}
		if !slices.ContainsFunc(out, func(o pluginsfile.Platform) bool { return o.String() == pf.String() }) {
			out = append(out, pf)
		}
	}
	return out, nil
}

// choosePlatforms picks the targets: -platform, else the file's
// platforms:, else GOOS/GOARCH from the environment, else the host.
// suffix is true unless the host was chosen by default: binaries for
// asked-for platforms are named elemta-VARIANT-GOOS-GOARCH.
func (o options) choosePlatforms(ctx context.Context, f *pluginsfile.File) (list []pluginsfile.Platform, suffix bool, err error) {
	from := "-platform"
	switch {
	case len(o.platforms) > 0:
		list = o.platforms
	case len(f.Build.Platforms) > 0:
		list, from = f.Build.Platforms, f.Name
	case os.Getenv("GOOS") != "" || os.Getenv("GOARCH") != "":
		pf := hostPlatform()
		if v := os.Getenv("GOOS"); v != "" {
			pf.OS = v
		}
		if v := os.Getenv("GOARCH"); v != "" {
			pf.Arch = v
		}
		list, from = []pluginsfile.Platform{pf}, "GOOS/GOARCH"
	default:
		return []pluginsfile.Platform{hostPlatform()}, false, nil
	}
	known, err := o.knownPlatforms(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, pf := range list {
		if known != nil && !slices.Contains(known, pf.String()) {
			msg := fmt.Sprintf("platform %s is not supported by this Go toolchain (go tool dist list)", pf)
			if pf.Line > 0 {
				return nil, false, &pluginsfile.Error{File: f.Name, Line: pf.Line, Msg: msg}
			}
			return nil, false, fmt.Errorf("%s: %s", from, msg)
		}
	}
	return list, true, nil
}

// knownPlatforms asks the toolchain which GOOS/GOARCH pairs it supports.
func (o options) knownPlatforms(ctx context.Context) ([]string, error) {
	out, err := o.runner("", nil).run(ctx, "tool", "dist", "list")
	if err != nil {
		return nil, fmt.Errorf("list platforms: %w", err)
	}
	return strings.Fields(string(out)), nil
}

type target struct {
	platform pluginsfile.Platform
	output   string // absolute: go build runs in the build module
	display  string // as the user wrote it
}

// targets names the binary of each platform.
func (p *plan) targets(o options) ([]target, error) {
	dist := p.file.Build.Dist
	dirMode := o.dirOutput || len(p.platforms) > 1
	if o.output != "" && len(p.platforms) > 1 && !isDir(o.output) {
		if _, err := os.Stat(o.output); err == nil {
			return nil, fmt.Errorf("-o %s: a file, but %d platforms need a directory", o.output, len(p.platforms))
		}
	}
	var out []target
	for _, pf := range p.platforms {
		name := BinaryName(dist.Name, o.variant)
		if p.suffix {
			name += "-" + pf.OS + "-" + pf.Arch
		}
		if pf.OS == "windows" {
			name += ".exe"
		}
		display := outputPath(o.output, dist.Output, name, dirMode)
		abs, err := filepath.Abs(display)
		if err != nil {
			return nil, err
		}
		out = append(out, target{platform: pf, output: abs, display: display})
	}
	return out, nil
}

// outputPath places a binary: out itself, or out/name when out is a
// directory (several binaries, a trailing separator, or an existing
// directory); without -o, dist.output (default bin/) / name.
func outputPath(out, distOutput, name string, dirMode bool) string {
	switch {
	case out == "" && distOutput != "":
		return filepath.Join(distOutput, name)
	case out == "":
		return filepath.Join("bin", name)
	case dirMode || strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) || isDir(out):
		return filepath.Join(out, name)
	}
	return out
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// BinaryName is NAME for the default selection and NAME-VARIANT for a
// variant, NAME being the dist name (default elemta), as in
// `make build VARIANT=minimal` → bin/elemta-minimal.
func BinaryName(dist, variant string) string {
	if dist == "" {
		dist = "elemta"
	}
	if variant == "" || variant == pluginsfile.DefaultVariant {
		return dist
	}
	return dist + "-" + variant
}
