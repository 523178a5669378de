package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// goVersion is the go directive of a scaffolded module: the core's own
// (TestGoVersionIsTheCores keeps them equal), so the module never asks
// for a newer toolchain than the core does.
const goVersion = "1.26.0"

// develVersion is what a module requires of a core it replaces with a
// local checkout: any version will do, the replace wins.
const develVersion = "v0.0.0-00010101000000-000000000000"

// moduleDir is where -module writes: -dir, or the module path's last
// element in the working directory.
func (o options) moduleDir() string {
	if o.dir != "" {
		return o.dir
	}
	return path.Base(o.module)
}

// coreRequirement returns the core version the module requires and the
// replace target ("" for none).
func (o options) coreRequirement() (version, replace string, err error) {
	if o.coreDir != "" {
		abs, err := filepath.Abs(o.coreDir)
		if err != nil {
			return "", "", err
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			return "", "", fmt.Errorf("-core-dir %s: not an Elemta checkout: %w", o.coreDir, err)
		}
		replace = abs
	}
	version = o.coreVersion
	if version == "" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == pluginsfile.CorePath && semver.IsValid(bi.Main.Version) {
			version = bi.Main.Version // go run github.com/elemta/elemta/tools/newplugin@v1.4.0
		}
	}
	if version == "" {
		if replace == "" {
			return "", "", errors.New("-core-version: newplugin was not built from a released core; say which version to require (-core-version v1.4.0), or use a checkout (-core-dir)")
		}
		version = develVersion
	}
	if !semver.IsValid(version) {
		return "", "", fmt.Errorf("-core-version %q: want a semantic version such as v1.4.0", version)
	}
	return version, replace, nil
}

// scaffoldModule writes a third-party plugin module: go.mod, the plugin
// package at the module root, and plugins.yaml.snippet. Nothing is written
// when a check fails.
func scaffoldModule(o options) ([]string, error) {
	if err := module.CheckPath(o.module); err != nil {
		return nil, fmt.Errorf("-module: %w", err)
	}
	if o.module == pluginsfile.CorePath || strings.HasPrefix(o.module, pluginsfile.CorePath+"/") {
		return nil, fmt.Errorf("-module %s: is inside the core module; a built-in plugin goes under plugins/ (drop -module)", o.module)
	}
	d, err := o.data()
	if err != nil {
		return nil, err
	}
	d.Module, d.GoVersion = o.module, goVersion
	if d.CoreVersion, d.CoreDir, err = o.coreRequirement(); err != nil {
		return nil, err
	}
	d.TestCmd = "go test -race ./..."
	dir := o.moduleDir()
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%s already exists", dir)
	}
	files := pluginFiles(d)
	files["go.mod"] = goModTmpl
	files["plugins.yaml.snippet"] = snippetTmpl
	files["README.md"] = moduleReadmeTmpl + strings.TrimPrefix(readmeTmpl, "# {{.Name}}\n")
	rendered, err := render(files, d)
	if err != nil {
		return nil, err
	}
	// The snippet must be an entry the generator takes as written.
	if _, err := pluginsfile.Parse("plugins.yaml.snippet", rendered["plugins.yaml.snippet"], nil); err != nil {
		return nil, fmt.Errorf("plugins.yaml.snippet: %w", err)
	}
	return writeFiles(dir, rendered)
}

const goModTmpl = `module {{.Module}}

go {{.GoVersion}}

require github.com/elemta/elemta {{.CoreVersion}}
{{- if .CoreDir}}

// While developing next to an Elemta checkout. A replace applies only in
// this module, never in the binaries others build with it; drop it (and
// require a released core) before publishing.
replace github.com/elemta/elemta => {{.CoreDir}}
{{- end}}
`

const snippetTmpl = `# Add this entry to the plugins.yaml of an Elemta checkout, then
# make build (or go run ./tools/elemta-build -config plugins.yaml -o elemta).
plugins:
  - name: {{.Name}}
    module: {{.Module}}
    version: v0.1.0          # the tag you publish; while developing, path: /dir/of/this/module
    default: false           # only the variants that name it link it
variants:
  with-{{.Name}}: [{{.Name}}]
`

const moduleReadmeTmpl = `# {{.Name}}

An Elemta plugin in its own module, ` + "`{{.Module}}`" + `. It imports only the core's public
packages (` + "`registry`, `registry/registrytest`, `pkg/...`" + `); ` + "`plugins.yaml.snippet`" + ` is the
entry that links it into a custom binary (see the core's CONTRIBUTING.md, "Publishing a
third-party plugin").
`
