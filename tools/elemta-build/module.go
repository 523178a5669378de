package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/mod/modfile"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// placeholder is the version required for modules that a replace directive
// points at a directory.
const placeholder = "v0.0.0-00010101000000-000000000000"

// defaultModule is the module path of the generated main module.
const defaultModule = "elemta.build/custom"

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

// linkDir makes dir/rel a symbolic link to target and returns "./rel",
// the replace target written in go.mod. The build info of the binary
// records replace targets as written, so a relative link inside the build
// module keeps the checkout's absolute path out of the binary: two clones
// give the same bytes.
func linkDir(dir, rel, target string) (string, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	link := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return "", err
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.Symlink(abs, link); err != nil {
		return "", fmt.Errorf("link %s to %s: %w", link, abs, err)
	}
	return "./" + rel, nil
}

func flat(path string) string { return strings.NewReplacer("/", "_", "@", "_").Replace(path) }

// writeModule writes dir/go.mod for the build module, with the links its
// replace directives point at.
func writeModule(dir, modPath string, f *pluginsfile.File, plugins []pluginsfile.Plugin, core coreModule) ([]byte, error) {
	mf := new(modfile.File)
	if err := mf.AddModuleStmt(modPath); err != nil {
		return nil, err
	}
	if err := mf.AddGoStmt(core.goVersion); err != nil {
		return nil, err
	}
	if core.version != "" {
		mf.AddNewRequire(pluginsfile.CorePath, core.version, false)
	} else {
		mf.AddNewRequire(pluginsfile.CorePath, placeholder, false)
		target, err := linkDir(dir, "core", core.dir)
		if err != nil {
			return nil, err
		}
		if err := mf.AddReplace(pluginsfile.CorePath, "", target, ""); err != nil {
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
		local := f.LocalDir(pl)
		if err := checkLocalModule(f, pl, local); err != nil {
			return nil, err
		}
		mf.AddNewRequire(pl.Module, placeholder, false)
		target, err := linkDir(dir, "local/"+flat(pl.Module), local)
		if err != nil {
			return nil, err
		}
		if err := mf.AddReplace(pl.Module, "", target, ""); err != nil {
			return nil, err
		}
	}
	for _, r := range f.Build.Replaces {
		if r.Old.Path == pluginsfile.CorePath {
			continue // resolveCore made it the core checkout
		}
		if seen[r.Old.Path] && plugins != nil && isPathPlugin(plugins, r.Old.Path) {
			return nil, &pluginsfile.Error{File: f.Name, Line: r.Line, Msg: fmt.Sprintf("replace %s: the module is already a \"path\" entry", r.Old.Path)}
		}
		newPath, newVersion := r.New.Path, r.New.Version
		if newVersion == "" {
			target, err := linkDir(dir, "replace/"+flat(r.Old.Path+"@"+r.Old.Version), resolveLocal(f, newPath))
			if err != nil {
				return nil, err
			}
			newPath = target
		}
		if err := mf.AddReplace(r.Old.Path, r.Old.Version, newPath, newVersion); err != nil {
			return nil, &pluginsfile.Error{File: f.Name, Line: r.Line, Msg: err.Error()}
		}
	}
	for _, e := range f.Build.Excludes {
		if err := mf.AddExclude(e.Path, e.Version.Version); err != nil {
			return nil, &pluginsfile.Error{File: f.Name, Line: e.Line, Msg: err.Error()}
		}
	}
	mf.Cleanup()
	return modfile.Format(mf.Syntax), nil
}

func isPathPlugin(plugins []pluginsfile.Plugin, mod string) bool {
	for _, pl := range plugins {
		if pl.Module == mod && pl.Path != "" {
			return true
		}
	}
	return false
}

// checkLocalModule makes sure a path entry points at the module it names
// and that its import path is a package in it.
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
	return checkImportDir(f, pl, dir)
}

// checkImportDir reports an import path that names no package of the
// module whose source is in dir.
func checkImportDir(f *pluginsfile.File, pl pluginsfile.Plugin, dir string) error {
	rel := strings.TrimPrefix(strings.TrimPrefix(pl.Import, pl.Module), "/")
	pkgDir := filepath.Join(dir, filepath.FromSlash(rel))
	entries, err := os.ReadDir(pkgDir)
	if err == nil {
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
				return nil
			}
		}
	}
	what := "import"
	if pl.Import == pl.Module {
		what = "module root (no \"import\" given)"
	}
	return &pluginsfile.Error{File: f.Name, Line: pl.Line, Plugin: pl.Name, Msg: fmt.Sprintf(
		"%s %s is not a package of module %s: no Go files in %s; set \"import\" to the package that registers the plugin",
		what, pl.Import, pl.Module, filepath.Join(pl.Module, rel))}
}
