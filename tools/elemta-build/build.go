package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// CLIPackage is the core package whose Main(manifest []string) int the
// generated main function calls.
const CLIPackage = pluginsfile.CorePath + "/cmd/elemta/cli"

// placeholder is the version required for modules that a replace directive
// points at a directory.
const placeholder = "v0.0.0-00010101000000-000000000000"

// buildModule is the module path of the generated main module.
const buildModule = "elemta.build/custom"

type options struct {
	config      string
	variant     string
	output      string
	coreDir     string
	coreVersion string
	pluginsDir  string
	workDir     string
	keep        bool
	check       bool
	goCmd       string
	verbose     bool
	log         io.Writer
}

// result describes a finished build.
type result struct {
	Output  string
	Plugins []string // names, sorted
	KeptDir string   // the build module, when kept
}

func (o options) builtinsDir() string {
	if o.pluginsDir != "" {
		return o.pluginsDir
	}
	return filepath.Join(filepath.Dir(o.config), "plugins")
}

func (o options) load() (*pluginsfile.File, error) {
	return pluginsfile.Load(o.config, o.builtinsDir())
}

// build makes one binary.
func build(ctx context.Context, o options) (*result, error) {
	if o.log == nil {
		o.log = io.Discard
	}
	if o.goCmd == "" {
		o.goCmd = "go"
	}
	f, err := o.load()
	if err != nil {
		return nil, err
	}
	plugins, err := f.Select(o.variant)
	if err != nil {
		return nil, err
	}
	out, err := filepath.Abs(o.output)
	if err != nil {
		return nil, err
	}

	core, err := o.resolveCore()
	if err != nil {
		return nil, err
	}
	dir, cleanup, err := o.buildDir()
	if err != nil {
		return nil, err
	}
	res := &result{Output: o.output}
	defer func() {
		if res.KeptDir == "" {
			cleanup()
		}
	}()
	if o.keep || o.workDir != "" {
		res.KeptDir = dir
	}

	gomod, err := writeModule(f, plugins, core)
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

	g := goRunner{cmd: o.goCmd, dir: dir, verbose: o.verbose, log: o.log}
	if _, err := g.run(ctx, "mod", "tidy"); err != nil {
		return nil, fmt.Errorf("variant %s: resolve modules: %w", variantName(o.variant), err)
	}
	if err := checkVersions(ctx, g, f, plugins, core, o.log); err != nil {
		return nil, fmt.Errorf("variant %s: %w", variantName(o.variant), err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	if _, err := g.run(ctx, "build", "-trimpath", "-o", out, "."); err != nil {
		return nil, fmt.Errorf("variant %s: build: %w", variantName(o.variant), err)
	}
	for _, pl := range plugins {
		res.Plugins = append(res.Plugins, pl.Name)
	}
	slices.Sort(res.Plugins)
	if o.check && crossCompiling() {
		fmt.Fprintf(o.log, "elemta-build: %s: cross-compiled, not running `plugins list` to check the plugins\n", o.output)
	} else if o.check {
		if err := checkBinary(ctx, out, dir, res.Plugins); err != nil {
			return nil, fmt.Errorf("variant %s: %w", variantName(o.variant), err)
		}
	}
	return res, nil
}

func variantName(v string) string {
	if v == "" {
		return pluginsfile.DefaultVariant
	}
	return v
}

// coreModule says where the core module comes from.
type coreModule struct {
	dir       string // checkout (replace) when version is empty
	version   string // published version asked for
	goVersion string // go directive for the build module
}

func (o options) resolveCore() (coreModule, error) {
	c := coreModule{version: o.coreVersion}
	if o.coreVersion != "" {
		if o.coreDir != "" {
			return c, errors.New("-core-dir and -core-version exclude each other")
		}
		if err := module.Check(pluginsfile.CorePath, o.coreVersion); err != nil || semver.Canonical(o.coreVersion) != o.coreVersion {
			return c, fmt.Errorf("-core-version %q is not a full semantic version like v1.2.0", o.coreVersion)
		}
		c.goVersion = goDirective(nil)
		return c, nil
	}
	dir := o.coreDir
	if dir == "" {
		found, err := findCore(filepath.Dir(o.config))
		if err != nil {
			return c, err
		}
		dir = found
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return c, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return c, fmt.Errorf("core checkout: %w", err)
	}
	mf, err := modfile.ParseLax(filepath.Join(dir, "go.mod"), data, nil)
	if err != nil {
		return c, err
	}
	if mf.Module == nil || mf.Module.Mod.Path != pluginsfile.CorePath {
		return c, fmt.Errorf("core checkout %s: go.mod is not module %s", dir, pluginsfile.CorePath)
	}
	c.dir = dir
	c.goVersion = goDirective(mf)
	return c, nil
}

// findCore walks up from dir to the checkout of the core module.
func findCore(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modfile.ModulePath(data) == pluginsfile.CorePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no checkout of %s above %s: pass -core-dir or -core-version", pluginsfile.CorePath, abs)
		}
	}
}

// goDirective returns the go version of the core's go.mod, or that of the
// running toolchain.
func goDirective(mf *modfile.File) string {
	if mf != nil && mf.Go != nil {
		return mf.Go.Version
	}
	v := strings.TrimPrefix(runtime.Version(), "go")
	if i := strings.IndexAny(v, " -"); i >= 0 {
		v = v[:i]
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

// writeModule returns the go.mod of the build module.
func writeModule(f *pluginsfile.File, plugins []pluginsfile.Plugin, core coreModule) ([]byte, error) {
	mf := new(modfile.File)
	if err := mf.AddModuleStmt(buildModule); err != nil {
		return nil, err
	}
	if err := mf.AddGoStmt(core.goVersion); err != nil {
		return nil, err
	}
	if core.version != "" {
		mf.AddNewRequire(pluginsfile.CorePath, core.version, false)
	} else {
		mf.AddNewRequire(pluginsfile.CorePath, placeholder, false)
		if err := mf.AddReplace(pluginsfile.CorePath, "", core.dir, ""); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, pl := range plugins {
		if pl.Builtin() || seen[pl.Module] {
			continue
		}
		seen[pl.Module] = true
		if pl.Path == "" {
			mf.AddNewRequire(pl.Module, pl.Version, false)
			continue
		}
		dir, err := filepath.Abs(f.LocalDir(pl))
		if err != nil {
			return nil, err
		}
		if err := checkLocalModule(f, pl, dir); err != nil {
			return nil, err
		}
		mf.AddNewRequire(pl.Module, placeholder, false)
		if err := mf.AddReplace(pl.Module, "", dir, ""); err != nil {
			return nil, err
		}
	}
	mf.Cleanup()
	return modfile.Format(mf.Syntax), nil
}

// checkLocalModule makes sure a path entry points at the module it names.
func checkLocalModule(f *pluginsfile.File, pl pluginsfile.Plugin, dir string) error {
	fail := func(format string, args ...any) error {
		return &pluginsfile.Error{File: f.Name, Line: pl.Line, Plugin: pl.Name, Msg: fmt.Sprintf(format, args...)}
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if errors.Is(err, os.ErrNotExist) {
		return fail("path %s (%s) holds no go.mod", pl.Path, dir)
	}
	if err != nil {
		return fail("path %s: %v", pl.Path, err)
	}
	if got := modfile.ModulePath(data); got != pl.Module {
		return fail("path %s holds module %q, not %s", pl.Path, got, pl.Module)
	}
	return nil
}

// listedModule is the part of `go list -m -json` output we use.
type listedModule struct {
	Path    string
	Version string
	Replace *struct {
		Path    string
		Version string
	}
}

// checkVersions compares the versions go selected with those asked for:
// a plugin's go.mod may require a newer core or a newer version of another
// plugin's module, and minimal version selection then silently moves it.
func checkVersions(ctx context.Context, g goRunner, f *pluginsfile.File, plugins []pluginsfile.Plugin, core coreModule, log io.Writer) error {
	paths := []string{pluginsfile.CorePath}
	for _, pl := range plugins {
		if !pl.Builtin() && pl.Path == "" && !slices.Contains(paths, pl.Module) {
			paths = append(paths, pl.Module)
		}
	}
	out, err := g.run(ctx, append([]string{"list", "-m", "-json"}, paths...)...)
	if err != nil {
		return err
	}
	selected := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m listedModule
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("read go list -m output: %w", err)
		}
		selected[m.Path] = m.Version
	}
	graph, err := g.run(ctx, "mod", "graph")
	if err != nil {
		return err
	}

	var errs []error
	coreGot := selected[pluginsfile.CorePath]
	switch {
	case core.version != "" && coreGot != core.version:
		errs = append(errs, fmt.Errorf("core module %s: asked for %s, but the plugin modules move it to %s: %s; build with -core-version %s or pin plugin versions made for %s",
			pluginsfile.CorePath, core.version, coreGot, requirers(graph, pluginsfile.CorePath, coreGot, f, plugins), coreGot, core.version))
	case core.version == "" && coreGot != placeholder:
		// The replace directive still builds the checkout; say what the
		// plugins expected.
		fmt.Fprintf(log, "elemta-build: note: %s; building against the checkout %s\n",
			requirers(graph, pluginsfile.CorePath, coreGot, f, plugins), core.dir)
	}
	for _, pl := range plugins {
		if pl.Builtin() || pl.Path != "" {
			continue
		}
		if got := selected[pl.Module]; got != pl.Version {
			errs = append(errs, &pluginsfile.Error{File: f.Name, Line: pl.Line, Plugin: pl.Name, Msg: fmt.Sprintf(
				"module %s is pinned at %s, but the module graph moves it to %s: %s; pin %s in plugins.yaml or drop the module that needs it",
				pl.Module, pl.Version, got, requirers(graph, pl.Module, got, f, plugins), got)})
		}
	}
	return errors.Join(errs...)
}

// requirers describes who requires mod at version, from `go mod graph`
// output, naming plugins.yaml entries where it can.
func requirers(graph []byte, mod, version string, f *pluginsfile.File, plugins []pluginsfile.Plugin) string {
	target := mod + "@" + version
	var who []string
	sc := bufio.NewScanner(bytes.NewReader(graph))
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " ")
		// go mod tidy raises the build module's own requirement too;
		// only the modules that caused it are worth naming.
		if !ok || to != target || from == buildModule {
			continue
		}
		desc := from + " requires " + target
		fromPath, _, _ := strings.Cut(from, "@")
		for _, pl := range plugins {
			if pl.Module == fromPath {
				desc += fmt.Sprintf(" (plugin %q, %s:%d)", pl.Name, f.Name, pl.Line)
				break
			}
		}
		if !slices.Contains(who, desc) {
			who = append(who, desc)
		}
	}
	if len(who) == 0 {
		return "required at " + target
	}
	slices.Sort(who)
	return strings.Join(who, "; ")
}

// listedPlugin is one entry of `elemta plugins list --json`.
type listedPlugin struct {
	Name string `json:"name"`
}

// checkBinary runs the binary's plugin list and compares it with want. The
// binary itself refuses to start when a manifest name did not register, so
// a failing run is reported with its output. It runs in dir, away from any
// ./elemta.toml of the caller, so the binary uses its embedded config.
func checkBinary(ctx context.Context, bin, dir string, want []string) error {
	cmd := exec.CommandContext(ctx, bin, "plugins", "list", "--json")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("check %s: `plugins list --json` failed (%v): %s", bin, err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	got, err := parsePluginList(stdout.Bytes())
	if err != nil {
		return fmt.Errorf("check %s: %w", bin, err)
	}
	var missing, extra []string
	for _, n := range want {
		if !slices.Contains(got, n) {
			missing = append(missing, n)
		}
	}
	for _, n := range got {
		if !slices.Contains(want, n) {
			extra = append(extra, n)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("selected but not registered: %s (does the package register the name plugins.yaml gives it?)", strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("registered but not selected: %s", strings.Join(extra, ", ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("check %s: plugins differ from plugins.yaml: %s", bin, strings.Join(problems, "; "))
	}
	return nil
}

// parsePluginList reads the plugin names from `plugins list --json`: either
// a list of objects with a "name", or an object with such a list under
// "plugins".
func parsePluginList(data []byte) ([]string, error) {
	var list []listedPlugin
	if err := json.Unmarshal(data, &list); err != nil {
		var wrapped struct {
			Plugins []listedPlugin `json:"plugins"`
		}
		if err2 := json.Unmarshal(data, &wrapped); err2 != nil {
			return nil, fmt.Errorf("read `plugins list --json` output: %w", err)
		}
		list = wrapped.Plugins
	}
	names := make([]string, 0, len(list))
	for _, p := range list {
		if p.Name == "" {
			return nil, errors.New("`plugins list --json` output has an entry without a name")
		}
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names, nil
}

func crossCompiling() bool {
	goos, goarch := os.Getenv("GOOS"), os.Getenv("GOARCH")
	return goos != "" && goos != runtime.GOOS || goarch != "" && goarch != runtime.GOARCH
}

// goRunner runs the go command in the build module.
type goRunner struct {
	cmd     string
	dir     string
	verbose bool
	log     io.Writer
}

// run returns the command's stdout; on failure the error carries stderr.
func (g goRunner) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, g.cmd, args...)
	cmd.Dir = g.dir
	cmd.Env = buildEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if g.verbose {
		fmt.Fprintf(g.log, "elemta-build: (cd %s && %s %s)\n", g.dir, g.cmd, strings.Join(args, " "))
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// buildEnv keeps the caller's environment (GOPROXY, GOMODCACHE, GOFLAGS
// such as -buildvcs=false) but makes sure the build module is its own
// module: no workspace, and go.mod may be updated (-mod=mod).
func buildEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	flags := []string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOWORK":
			continue
		case "GOFLAGS":
			for _, fl := range strings.Fields(v) {
				if !strings.HasPrefix(fl, "-mod=") && !strings.HasPrefix(fl, "--mod=") {
					flags = append(flags, fl)
				}
			}
			continue
		}
		out = append(out, kv)
	}
	flags = append(flags, "-mod=mod")
	return append(out, "GOWORK=off", "GOFLAGS="+strings.Join(flags, " "))
}
