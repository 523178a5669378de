package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// CLIPackage is the core package whose Main(ctx, args, manifest) int the
// generated main function calls.
const CLIPackage = pluginsfile.CorePath + "/cmd/elemta/cli"

type options struct {
	config       string
	variant      string
	output       string // file, or directory (see outputPath)
	dirOutput    bool   // output is a directory (several variants)
	coreDir      string
	coreVersion  string
	pluginsDir   string
	workDir      string
	keep         bool
	check        bool
	platforms    []pluginsfile.Platform // -platform
	cgo          bool                   // -cgo
	downloadOnly bool
	packages     []string // -package
	noSBOM       bool     // -sbom=false
	rest         []string // arguments after the flags (run)
	goCmd        string
	verbose      bool
	log          io.Writer
}

// result describes a finished build.
type result struct {
	Outputs  []string // one per platform, as named on the command line
	files    []string // the same, absolute
	Plugins  []string // names, sorted
	KeptDir  string   // the build module, when kept
	SBOMs    []string // one per platform, unless -sbom=false
	Packages []string // .deb and .rpm files
}

// plan is what every variant of one invocation shares.
type plan struct {
	file      *pluginsfile.File
	core      coreModule
	platforms []pluginsfile.Platform
	suffix    bool // names carry -GOOS-GOARCH: platforms were asked for
}

func (o *options) defaults() {
	if o.log == nil {
		o.log = io.Discard
	}
	if o.goCmd == "" {
		o.goCmd = "go"
	}
}

// newPlan reads the plugins file and resolves the core and its built-in
// plugins, and the platforms.
func newPlan(ctx context.Context, o options) (*plan, error) {
	o.defaults()
	data, err := os.ReadFile(o.config)
	if err != nil {
		return nil, err
	}
	f, err := pluginsfile.ParseUnchecked(o.config, data)
	if err != nil {
		return nil, err
	}
	core, err := o.resolveCore(ctx, f)
	if err != nil {
		return nil, err
	}
	var builtins []string
	if o.pluginsDir != "" {
		builtins, err = pluginsfile.Builtins(o.pluginsDir)
	} else {
		builtins, err = core.builtins()
	}
	if err != nil {
		return nil, err
	}
	if err := f.CheckBuiltins(builtins); err != nil {
		return nil, err
	}
	p := &plan{file: f, core: core}
	if p.platforms, p.suffix, err = o.choosePlatforms(ctx, f); err != nil {
		return nil, err
	}
	return p, nil
}

// build makes the binaries of one variant, one per platform.
func build(ctx context.Context, o options) (*result, error) {
	p, err := newPlan(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.build(ctx, o)
}

func (p *plan) modulePath() string {
	if p.file.Build.Dist.Module != "" {
		return p.file.Build.Dist.Module
	}
	return defaultModule
}

func (p *plan) build(ctx context.Context, o options) (*result, error) {
	o.defaults()
	f := p.file
	vname := variantName(o.variant)
	plugins, err := f.Select(o.variant)
	if err != nil {
		return nil, err
	}
	targets, err := p.targets(o)
	if err != nil {
		return nil, err
	}
	dir, cleanup, err := o.buildDir()
	if err != nil {
		return nil, err
	}
	res := &result{}
	defer func() {
		if res.KeptDir == "" {
			cleanup()
		}
	}()
	if o.keep || o.workDir != "" {
		res.KeptDir = dir
	}
	for _, pl := range plugins {
		res.Plugins = append(res.Plugins, pl.Name)
	}
	slices.Sort(res.Plugins)

	gomod, err := writeModule(dir, p.modulePath(), f, plugins, p.core)
	if err != nil {
		return nil, err
	}
	src, err := pluginsfile.Render(pluginsfile.Source{
		Generator: "elemta-build",
		Package:   "main",
		Variant:   o.variant,
		Plugins:   plugins,
		Main:      CLIPackage,
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		return nil, err
	}
	// A kept directory may hold the go.sum of an earlier build: start over.
	if err := os.Remove(filepath.Join(dir, "go.sum")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	g := o.runner(dir, nil)
	if _, err := g.run(ctx, "mod", "tidy"); err != nil {
		return nil, fmt.Errorf("variant %s: resolve modules: %w", vname, o.diagnose(ctx, f, plugins, err))
	}
	if err := checkVersions(ctx, g, p.modulePath(), f, plugins, p.core, o.log); err != nil {
		return nil, fmt.Errorf("variant %s: %w", vname, err)
	}
	if o.downloadOnly {
		if _, err := g.run(ctx, "mod", "download"); err != nil {
			return nil, fmt.Errorf("variant %s: download modules: %w", vname, err)
		}
		return res, nil
	}

	hostBin := ""
	for _, t := range targets {
		if err := os.MkdirAll(filepath.Dir(t.output), 0o755); err != nil {
			return nil, err
		}
		if err := p.goBuild(ctx, o, dir, t.platform, t.output); err != nil {
			removeAll(res.files)
			return nil, fmt.Errorf("variant %s: build for %s: %w", vname, t.platform, err)
		}
		res.Outputs = append(res.Outputs, t.display)
		res.files = append(res.files, t.output)
		if t.platform == hostPlatform() {
			hostBin = t.output
		}
	}
	formats := p.packageFormats(o)
	if !o.check && len(formats) == 0 {
		return res, p.sboms(o, targets, plugins, res)
	}
	// The registration check runs the binary; for a target this machine
	// cannot run, the same main package built for the host stands in.
	if hostBin == "" {
		hostBin = filepath.Join(dir, "elemta-check")
		if err := p.goBuild(ctx, o, dir, hostPlatform(), hostBin); err != nil {
			removeAll(res.files)
			return nil, fmt.Errorf("variant %s: build for the registration check on %s: %w", vname, hostPlatform(), err)
		}
		defer os.Remove(hostBin)
	}
	if o.check {
		if err := checkBinary(ctx, hostBin, dir, res.Plugins); err != nil {
			removeAll(res.files)
			return nil, fmt.Errorf("variant %s: %w (removed %s)", vname, err, strings.Join(res.Outputs, ", "))
		}
	}
	if err := p.sboms(o, targets, plugins, res); err != nil {
		return nil, fmt.Errorf("variant %s: %w", vname, err)
	}
	for i, t := range targets {
		if len(formats) == 0 {
			break
		}
		made, err := writePackages(ctx, packageInput{
			name: BinaryName(p.file.Build.Dist.Name, o.variant), version: p.packageVersion(),
			platform: t.platform, binary: t.output, sbom: res.SBOMs[i], hostBin: hostBin,
			dir: dir, outDir: filepath.Dir(t.output), formats: formats, plugins: res.Plugins,
		})
		res.Packages = append(res.Packages, made...)
		if err != nil {
			return nil, fmt.Errorf("variant %s: %w", vname, err)
		}
	}
	return res, nil
}

// sboms writes the CycloneDX SBOM of every binary (-sbom).
func (p *plan) sboms(o options, targets []target, plugins []pluginsfile.Plugin, res *result) error {
	if o.noSBOM {
		return nil
	}
	for _, t := range targets {
		path, err := writeSBOM(t.output, filepath.Base(t.output), p.packageVersion(), plugins)
		if err != nil {
			return err
		}
		res.SBOMs = append(res.SBOMs, path)
	}
	return nil
}

// packageVersion is the dist version, else the core's version.
func (p *plan) packageVersion() string {
	if v := p.file.Build.Dist.Version; v != "" {
		return v
	}
	if p.core.version != "" {
		return strings.TrimPrefix(p.core.version, "v")
	}
	return ""
}

func (p *plan) packageFormats(o options) []string {
	if len(o.packages) > 0 {
		return o.packages
	}
	return p.file.Build.Packages
}

func removeAll(files []string) {
	for _, f := range files {
		_ = os.Remove(f)
	}
}

// goBuild runs go build for one platform: static unless cgo is asked for,
// -trimpath, no VCS stamp, the dist and core revision in the CLI's
// version variables.
func (p *plan) goBuild(ctx context.Context, o options, dir string, pf pluginsfile.Platform, out string) error {
	b := p.file.Build
	cgo := "0"
	if b.CGO || o.cgo {
		cgo = "1"
	}
	env := []string{"GOOS=" + pf.OS, "GOARCH=" + pf.Arch, "CGO_ENABLED=" + cgo}
	args := []string{"build", "-trimpath", "-buildvcs=false"}
	if ld := p.ldflags(); ld != "" {
		args = append(args, "-ldflags="+ld)
	}
	if len(b.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(b.Tags, ","))
	}
	args = append(args, "-o", out, ".")
	if _, err := o.runner(dir, env).run(ctx, args...); err != nil {
		_ = os.Remove(out)
		return err
	}
	return nil
}

// ldflags sets the version variables of the core's CLI (the linker
// ignores -X for a variable an older core does not have), then the
// plugins file's ldflags.
func (p *plan) ldflags() string {
	var parts []string
	set := func(name, value string) {
		if value != "" {
			parts = append(parts, "-X "+CLIPackage+"."+name+"="+value)
		}
	}
	set("distName", p.file.Build.Dist.Name)
	set("distVersion", p.file.Build.Dist.Version)
	set("coreRevision", p.core.revision)
	if p.file.Build.LDFlags != "" {
		parts = append(parts, p.file.Build.LDFlags)
	}
	return strings.Join(parts, " ")
}

func variantName(v string) string {
	if v == "" {
		return pluginsfile.DefaultVariant
	}
	return v
}

func (o options) buildDir() (dir string, cleanup func(), err error) {
	if o.workDir != "" {
		if err := os.MkdirAll(o.workDir, 0o755); err != nil {
			return "", nil, err
		}
		abs, err := filepath.Abs(o.workDir)
		return abs, func() {}, err
	}
	dir, err = os.MkdirTemp("", "elemta-build-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
