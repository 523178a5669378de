// Package buildinfo tells which Go module, at which version, each package
// compiled into the running binary comes from, using
// runtime/debug.ReadBuildInfo. The CLI uses it to show, for every plugin,
// the module and resolved version behind its package path, next to the
// core version and the Go version (`elemta version`, `plugins list`).
//
// It knows nothing about the registry: callers pass package paths.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// CorePath is the module path of Elemta itself.
const CorePath = "github.com/elemta/elemta"

// Module is one module linked into the binary.
type Module struct {
	Path    string
	Version string // "(devel)" for a main module built from a checkout
	Sum     string
	// Replace is the module's replacement (a local directory or another
	// module), nil when not replaced.
	Replace *Module
	// Main is true for the main module (the one `go build` ran in).
	Main bool
}

// String formats the module as `go version -m` does:
// "example.com/x v1.2.0" or "example.com/x v0.0.0-... => ../x".
func (m Module) String() string {
	s := m.Path + " " + m.Version
	if m.Replace != nil {
		s += " => " + m.Replace.Path
		if m.Replace.Version != "" {
			s += " " + m.Replace.Version
		}
	}
	return s
}

// EffectiveVersion is the version whose code is in the binary: the
// replacement's version when a module is replaced by another version, the
// module's own version otherwise. A replacement by a local directory has
// no version: it reports "(devel)".
func (m Module) EffectiveVersion() string {
	if m.Replace != nil {
		if m.Replace.Version != "" {
			return m.Replace.Version
		}
		return "(devel)"
	}
	return m.Version
}

// Info is what the binary knows about how it was built.
type Info struct {
	GoVersion string
	Main      Module
	Deps      []Module
}

// Read returns the running binary's build info. ok is false in binaries
// built without module support (and in some test binaries' edge cases).
func Read() (info *Info, ok bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, false
	}
	return FromBuildInfo(bi), true
}

// FromBuildInfo converts debug.BuildInfo.
func FromBuildInfo(bi *debug.BuildInfo) *Info {
	info := &Info{GoVersion: bi.GoVersion, Main: convert(&bi.Main)}
	info.Main.Main = true
	for _, d := range bi.Deps {
		info.Deps = append(info.Deps, convert(d))
	}
	return info
}

func convert(m *debug.Module) Module {
	out := Module{Path: m.Path, Version: m.Version, Sum: m.Sum}
	if m.Replace != nil {
		r := convert(m.Replace)
		out.Replace = &r
	}
	return out
}

// ModuleOf returns the module that provides the package pkg: the module
// with the longest path that is pkg or a prefix of it at a '/' boundary.
// Nested modules (example.com/a and example.com/a/b) are told apart that
// way, as the go command does.
func (i *Info) ModuleOf(pkg string) (Module, bool) {
	var best Module
	found := false
	consider := func(m Module) {
		if m.Path == "" || !within(pkg, m.Path) {
			return
		}
		if !found || len(m.Path) > len(best.Path) {
			best, found = m, true
		}
	}
	consider(i.Main)
	for _, d := range i.Deps {
		consider(d)
	}
	return best, found
}

// Core returns the Elemta core module: the main module in a binary built
// from the checkout (`go build ./cmd/elemta`), a dependency in one built by
// tools/elemta-build.
func (i *Info) Core() (Module, bool) {
	return i.ModuleOf(CorePath)
}

// within reports whether pkg is the package path mod or lies under it.
func within(pkg, mod string) bool {
	return pkg == mod || strings.HasPrefix(pkg, mod+"/")
}
