package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// coreModule says where the core module comes from.
type coreModule struct {
	dir       string // checkout (replace) when version is empty
	version   string // published version asked for
	from      string // how it was chosen, for messages
	srcDir    string // its source: dir, or the module cache directory of version
	goVersion string // go directive for the build module
	revision  string // VCS revision of a checkout, "" when unknown
}

// toolVersion is the version of the module this builder was built from:
// `go run github.com/elemta/elemta/tools/elemta-build@v1.4.0` runs v1.4.0
// and builds against the core v1.4.0. Empty when built from a checkout.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path != pluginsfile.CorePath {
		return ""
	}
	// A checkout's stamp (v1.4.1-0.2026...-abcdef+dirty) is no release.
	if v := bi.Main.Version; semver.IsValid(v) && !module.IsPseudoVersion(v) && semver.Build(v) == "" {
		return v
	}
	return ""
}

// resolveCore picks the core module: -core-dir, -core-version, a
// `replaces:` entry for it, the checkout above the plugins file, or the
// version the builder itself was built from, in that order.
func (o options) resolveCore(ctx context.Context, f *pluginsfile.File) (coreModule, error) {
	var c coreModule
	var rep *pluginsfile.Replace
	for i, r := range f.Build.Replaces {
		if r.Old.Path == pluginsfile.CorePath {
			rep = &f.Build.Replaces[i]
		}
	}
	switch {
	case o.coreDir != "" && o.coreVersion != "":
		return c, errors.New("-core-dir and -core-version exclude each other")
	case o.coreVersion != "":
		c.version, c.from = o.coreVersion, "-core-version"
	case o.coreDir != "":
		c.dir, c.from = o.coreDir, "-core-dir"
	case rep != nil && rep.New.Version != "":
		return c, &pluginsfile.Error{File: f.Name, Line: rep.Line, Msg: fmt.Sprintf("replace %s => %s %s: the core can be replaced only by a local checkout (or use -core-version)", rep.Old.Path, rep.New.Path, rep.New.Version)}
	case rep != nil:
		c.dir, c.from = resolveLocal(f, rep.New.Path), fmt.Sprintf("%s:%d", f.Name, rep.Line)
	default:
		if found, err := findCore(filepath.Dir(f.Name)); err == nil {
			c.dir, c.from = found, "the checkout above "+f.Name
		} else if v := toolVersion(); v != "" {
			c.version, c.from = v, "the builder's own version"
		} else {
			return c, fmt.Errorf("%w; or run a released builder: go run %s/tools/elemta-build@VERSION", err, pluginsfile.CorePath)
		}
	}
	if c.version != "" {
		if err := module.Check(pluginsfile.CorePath, c.version); err != nil || semver.Canonical(c.version) != c.version {
			return c, fmt.Errorf("-core-version %q is not a full semantic version like v1.2.0", c.version)
		}
		dl, err := o.download(ctx, pluginsfile.CorePath, c.version)
		if err != nil {
			return c, fmt.Errorf("core module %s@%s (%s): %w", pluginsfile.CorePath, c.version, c.from, err)
		}
		c.srcDir = dl.Dir
		data, err := os.ReadFile(dl.GoMod)
		if err != nil {
			return c, fmt.Errorf("core module: %w", err)
		}
		mf, err := modfile.ParseLax(dl.GoMod, data, nil)
		if err != nil {
			return c, fmt.Errorf("core module: %w", err)
		}
		c.goVersion = goDirective(mf)
		return c, nil
	}
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return c, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return c, fmt.Errorf("core checkout (%s): %w", c.from, err)
	}
	mf, err := modfile.ParseLax(filepath.Join(dir, "go.mod"), data, nil)
	if err != nil {
		return c, err
	}
	if mf.Module == nil || mf.Module.Mod.Path != pluginsfile.CorePath {
		return c, fmt.Errorf("core checkout %s (%s): go.mod is not module %s", dir, c.from, pluginsfile.CorePath)
	}
	c.dir, c.srcDir = dir, dir
	c.goVersion = goDirective(mf)
	c.revision = gitRevision(ctx, dir)
	return c, nil
}

// builtins lists the built-in plugins of the core being built against.
func (c coreModule) builtins() ([]string, error) {
	return pluginsfile.Builtins(filepath.Join(c.srcDir, "plugins"))
}

// resolveLocal resolves a directory written in the plugins file.
func resolveLocal(f *pluginsfile.File, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(f.Name), filepath.FromSlash(p))
}

// gitRevision is the checkout's commit, with "-dirty" when tracked files
// are modified; "" without git.
func gitRevision(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "-dirty"
	}
	return rev
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

// downloaded is the part of `go mod download -json` output we use.
type downloaded struct {
	Path, Version, Error, Dir, GoMod string
}

// download fetches one module version into the module cache (outside any
// module, so nothing but GOPROXY, GOMODCACHE and GOFLAGS matter). A
// version that does not exist is reported with the versions that do.
func (o options) download(ctx context.Context, path, version string) (*downloaded, error) {
	dir, err := os.MkdirTemp("", "elemta-build-dl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	g := o.runner(dir, nil)
	out, runErr := g.run(ctx, "mod", "download", "-json", path+"@"+version)
	var d downloaded
	if len(out) > 0 {
		if err := json.Unmarshal(out, &d); err != nil {
			return nil, fmt.Errorf("read go mod download output: %w", err)
		}
	}
	if d.Error == "" && runErr == nil {
		return &d, nil
	}
	msg := d.Error
	if msg == "" {
		msg = runErr.Error()
	}
	return nil, describeFetchError(ctx, g, path, version, msg)
}

// describeFetchError turns a failed fetch into advice: the versions that
// exist, or the variable that lets a private module past the checksum
// database.
func describeFetchError(ctx context.Context, g goRunner, path, version, msg string) error {
	if hint := sumDBHint(path, msg); hint != "" {
		return errors.New(hint)
	}
	versions, err := g.versions(ctx, path)
	if err == nil && !slices.Contains(versions, version) {
		list := "none"
		if len(versions) > 0 {
			list = strings.Join(versions, ", ")
		}
		return fmt.Errorf("no version %s of module %s (versions on GOPROXY: %s)", version, path, list)
	}
	return errors.New(firstLines(msg, 3))
}

// sumDBHint recognises a checksum database failure.
func sumDBHint(path, msg string) string {
	if !strings.Contains(msg, "verifying ") && !strings.Contains(msg, "checksum database") && !strings.Contains(msg, "SECURITY ERROR") {
		return ""
	}
	return fmt.Sprintf("the checksum database (GOSUMDB) could not verify %s: %s; for a private module set GONOSUMDB=%s (or GOPRIVATE=%s, which also bypasses GOPROXY)",
		path, firstLines(msg, 2), path, path)
}

// firstLines shortens the go command's stderr to its first n lines that
// are not progress ("go: downloading ...").
func firstLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if !strings.HasPrefix(l, "go: downloading ") && !strings.HasPrefix(l, "go: finding module for package ") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines; -v shows the go commands)", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}
