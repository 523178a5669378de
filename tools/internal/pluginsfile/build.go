package pluginsfile

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// Build holds the top-level keys of a plugins file that only
// tools/elemta-build reads; tools/genplugins checks and ignores them.
type Build struct {
	// Platforms to build for (platforms: [linux/amd64, linux/arm64]).
	Platforms []Platform
	// CGO turns cgo on (cgo: true); binaries are static by default.
	CGO bool
	// Dist names the distribution (dist:).
	Dist Dist
	// Replaces are go.mod replace directives (replaces:).
	Replaces []Replace
	// Excludes are go.mod exclude directives (excludes:).
	Excludes []Exclude
	// LDFlags is passed to go build -ldflags after the builder's own -X
	// flags (ldflags: "-s -w").
	LDFlags string
	// Tags are build tags (tags: [netgo]).
	Tags []string
	// Packages are the package formats made of each linux binary
	// (packages: [deb, rpm]).
	Packages []string
	// Line records where each key was written, for messages.
	Line map[string]int
}

// Platform is a GOOS/GOARCH pair.
type Platform struct {
	OS, Arch string
	Line     int
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// Dist describes the distribution a build makes.
type Dist struct {
	// Name is the binary's base name (default "elemta").
	Name string
	// Version is the distribution's version, shown by `elemta version`.
	Version string
	// Module is the module path of the generated main package (default
	// elemta.build/custom).
	Module string
	// Output is the output directory (default bin/).
	Output string
}

// Replace is a replace directive: Old (any version when Old.Version is
// empty) => New, a module version or, when New.Version is empty, a local
// directory relative to the plugins file.
type Replace struct {
	Old, New module.Version
	Line     int
}

// Exclude is an exclude directive.
type Exclude struct {
	module.Version
	Line int
}

var (
	buildKeys  = []string{"platforms", "cgo", "dist", "replaces", "excludes", "ldflags", "tags", "packages"}
	distKeys   = []string{"name", "version", "module", "output"}
	platformRE = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`)
	// tokenRE is what a dist name or version may hold: it ends up in a file
	// name and in an -ldflags -X value.
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)
	tagRE   = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
)

// ParsePlatform reads "GOOS/GOARCH".
func ParsePlatform(s string) (Platform, error) {
	if !platformRE.MatchString(s) {
		return Platform{}, fmt.Errorf("platform %q is not GOOS/GOARCH like linux/arm64", s)
	}
	os, arch, _ := strings.Cut(s, "/")
	return Platform{OS: os, Arch: arch}, nil
}

// ParseReplace reads "old [version] => new [version]" as in go.mod.
func ParseReplace(s string) (Replace, error) {
	left, right, ok := strings.Cut(s, "=>")
	if !ok {
		return Replace{}, fmt.Errorf("replace %q: want \"old [version] => new [version]\" or \"old => ../dir\"", s)
	}
	l, r := strings.Fields(left), strings.Fields(right)
	if len(l) < 1 || len(l) > 2 || len(r) < 1 || len(r) > 2 {
		return Replace{}, fmt.Errorf("replace %q: want \"old [version] => new [version]\" or \"old => ../dir\"", s)
	}
	var rep Replace
	rep.Old.Path = l[0]
	if len(l) == 2 {
		rep.Old.Version = l[1]
	}
	if err := module.CheckPath(rep.Old.Path); err != nil {
		return Replace{}, fmt.Errorf("replace %q: %w", s, err)
	}
	if rep.Old.Version != "" && !semver.IsValid(rep.Old.Version) {
		return Replace{}, fmt.Errorf("replace %q: %q is not a semantic version", s, rep.Old.Version)
	}
	rep.New.Path = r[0]
	if len(r) == 2 {
		rep.New.Version = r[1]
		if err := module.Check(rep.New.Path, rep.New.Version); err != nil {
			return Replace{}, fmt.Errorf("replace %q: %w", s, err)
		}
	} else if !isLocalPath(rep.New.Path) {
		return Replace{}, fmt.Errorf("replace %q: %s is neither a local directory (start it with ./, ../ or /) nor a module with a version", s, rep.New.Path)
	}
	return rep, nil
}

func isLocalPath(s string) bool {
	return s == "." || s == ".." || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || strings.HasPrefix(s, "/")
}

// buildKey decodes one of the build keys into b; false when key is not one.
func (p *parser) buildKey(b *Build, k, v *yaml.Node) bool {
	if !slices.Contains(buildKeys, k.Value) {
		return false
	}
	if b.Line == nil {
		b.Line = map[string]int{}
	}
	b.Line[k.Value] = k.Line
	switch k.Value {
	case "platforms":
		for _, s := range p.strList(v, k.Value) {
			pl, err := ParsePlatform(s.val)
			if err != nil {
				p.errorf(s.line, "", "%v", err)
				continue
			}
			if slices.ContainsFunc(b.Platforms, func(o Platform) bool { return o.String() == pl.String() }) {
				p.errorf(s.line, "", "platform %s listed twice", pl)
				continue
			}
			pl.Line = s.line
			b.Platforms = append(b.Platforms, pl)
		}
	case "cgo":
		b.CGO, _ = p.boolean(v, "", "cgo")
	case "dist":
		p.dist(&b.Dist, v)
	case "replaces":
		for _, s := range p.strList(v, k.Value) {
			r, err := ParseReplace(s.val)
			if err != nil {
				p.errorf(s.line, "", "%v", err)
				continue
			}
			r.Line = s.line
			b.Replaces = append(b.Replaces, r)
		}
	case "excludes":
		for _, s := range p.strList(v, k.Value) {
			f := strings.Fields(s.val)
			if len(f) != 2 || module.Check(f[0], f[1]) != nil {
				p.errorf(s.line, "", "exclude %q: want \"module version\" like \"example.com/x v1.2.3\"", s.val)
				continue
			}
			b.Excludes = append(b.Excludes, Exclude{Version: module.Version{Path: f[0], Version: f[1]}, Line: s.line})
		}
	case "ldflags":
		b.LDFlags, _ = p.str(v, "", "ldflags")
	case "packages":
		for _, s := range p.strList(v, k.Value) {
			if s.val != "deb" && s.val != "rpm" {
				p.errorf(s.line, "", "package format %q: want deb or rpm", s.val)
				continue
			}
			if !slices.Contains(b.Packages, s.val) {
				b.Packages = append(b.Packages, s.val)
			}
		}
	case "tags":
		for _, s := range p.strList(v, k.Value) {
			if !tagRE.MatchString(s.val) {
				p.errorf(s.line, "", "build tag %q: use letters, digits, '_' and '.'", s.val)
				continue
			}
			b.Tags = append(b.Tags, s.val)
		}
	}
	return true
}

type lineStr struct {
	val  string
	line int
}

func (p *parser) strList(v *yaml.Node, key string) []lineStr {
	if v.Kind != yaml.SequenceNode {
		p.errorf(v.Line, "", "%q must be a list", key)
		return nil
	}
	var out []lineStr
	for _, item := range v.Content {
		item = resolve(item)
		if s, ok := p.str(item, "", key+" entry"); ok {
			out = append(out, lineStr{s, item.Line})
		}
	}
	return out
}

func (p *parser) dist(d *Dist, v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.errorf(v.Line, "", "\"dist\" must be a mapping with keys %s", strings.Join(distKeys, ", "))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], resolve(v.Content[i+1])
		if !slices.Contains(distKeys, k.Value) {
			p.errorf(k.Line, "", "dist: unknown key %q; valid keys: %s", k.Value, strings.Join(distKeys, ", "))
			continue
		}
		if seen[k.Value] {
			p.errorf(k.Line, "", "dist: duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		s, ok := p.str(val, "", "dist "+k.Value)
		if !ok {
			continue
		}
		switch k.Value {
		case "name":
			if !tokenRE.MatchString(s) || strings.Contains(s, "/") {
				p.errorf(val.Line, "", "dist name %q: use letters, digits, '.', '_', '+', '~' and '-'", s)
			}
			d.Name = s
		case "version":
			if !tokenRE.MatchString(s) {
				p.errorf(val.Line, "", "dist version %q: use letters, digits, '.', '_', '+', '~' and '-'", s)
			}
			d.Version = s
		case "module":
			if err := module.CheckPath(s); err != nil {
				p.errorf(val.Line, "", "dist module %q: %v", s, unwrapPathErr(err))
			}
			if s == CorePath {
				p.errorf(val.Line, "", "dist module %q is the core module; name your own", s)
			}
			d.Module = s
		case "output":
			d.Output = s
		}
	}
}
