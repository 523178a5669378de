package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

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
func checkVersions(ctx context.Context, g goRunner, modPath string, f *pluginsfile.File, plugins []pluginsfile.Plugin, core coreModule, log io.Writer) error {
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
		errs = append(errs, fmt.Errorf("core module %s (from %s): asked for %s, but the plugin modules move it to %s: %s; build with -core-version %s or pin plugin versions made for %s",
			pluginsfile.CorePath, core.from, core.version, coreGot, requirers(graph, modPath, pluginsfile.CorePath, coreGot, f, plugins), coreGot, core.version))
	case core.version == "" && coreGot != placeholder:
		// The replace directive still builds the checkout; say what the
		// plugins expected.
		fmt.Fprintf(log, "elemta-build: note: %s; building against the checkout %s\n",
			requirers(graph, modPath, pluginsfile.CorePath, coreGot, f, plugins), core.dir)
	}
	for _, pl := range plugins {
		if pl.Builtin() || pl.Path != "" {
			continue
		}
		if got := selected[pl.Module]; got != pl.Version {
			errs = append(errs, &pluginsfile.Error{File: f.Name, Line: pl.Line, Plugin: pl.Name, Msg: fmt.Sprintf(
				"module %s is pinned at %s, but the module graph moves it to %s: %s; pin %s in plugins.yaml or drop the module that needs it",
				pl.Module, pl.Version, got, requirers(graph, modPath, pl.Module, got, f, plugins), got)})
		}
	}
	return errors.Join(errs...)
}

// requirers describes who requires mod at version, from `go mod graph`
// output, naming plugins.yaml entries where it can.
func requirers(graph []byte, modPath, mod, version string, f *pluginsfile.File, plugins []pluginsfile.Plugin) string {
	target := mod + "@" + version
	var who []string
	sc := bufio.NewScanner(bytes.NewReader(graph))
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " ")
		// go mod tidy raises the build module's own requirement too;
		// only the modules that caused it are worth naming.
		if !ok || to != target || from == modPath {
			continue
		}
		desc := from + " requires " + target
		fromPath, _, _ := strings.Cut(from, "@")
		// Name every entry of the module: each one is affected.
		var entries []string
		for _, pl := range plugins {
			if pl.Module == fromPath {
				entries = append(entries, fmt.Sprintf("plugin %q, %s:%d", pl.Name, f.Name, pl.Line))
			}
		}
		if len(entries) > 0 {
			desc += " (" + strings.Join(entries, "; ") + ")"
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
