// Package pluginsfile reads plugins.yaml, the list of plugins compiled into
// Elemta binaries, and renders the Go source that links them in.
//
// The file is decoded strictly through yaml.v3's Node API so that every
// mistake is reported with the file name and line:
//
//	plugins.yaml:12: plugin "foo": version "1.2" is not a semantic version (want e.g. v1.2.0)
//
// Both tools/genplugins (the default binary's gen/ package) and
// tools/elemta-build (custom binaries) use it, so they agree on what a
// plugins file means.
package pluginsfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/elemta/elemta/pkg/pluginname"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// CorePath is the module path of Elemta itself. Built-in plugins live in
// CorePath + "/plugins/<name>".
const CorePath = "github.com/elemta/elemta"

// DefaultVariant is the name under which the top-level plugin selection is
// known (the default binary). It is reserved: no variant may use it.
const DefaultVariant = "default"

// Plugin is one entry of the top-level plugins list.
type Plugin struct {
	// Name is the name the plugin registers under (registry.Register).
	Name string
	// Module is the Go module that holds a third-party plugin; empty for a
	// built-in plugin, which lives in the core module.
	Module string
	// Version is the pinned module version of a third-party plugin.
	Version string
	// Path is the local directory of a plugin module, as written in the
	// file (relative to the file's directory unless absolute). It becomes a
	// replace directive in builder builds.
	Path string
	// Import is the Go package that registers the plugin.
	Import string
	// Default reports whether the plugin is linked into the default binary.
	Default bool
	// ReplaceBuiltin lets a third-party entry take the name of a built-in
	// plugin (replace_builtin: true); without it such an entry is refused.
	ReplaceBuiltin bool
	// Line is the line of the entry in the file.
	Line int
}

// Builtin reports whether p lives in the core module under plugins/.
func (p Plugin) Builtin() bool { return p.Module == "" }

// Variant is a named selection of declared plugins.
type Variant struct {
	Name    string
	Plugins []string // sorted
	Line    int
}

// File is a decoded plugins file.
type File struct {
	// Name is the file name used in messages.
	Name string
	// Plugins holds every declared plugin, sorted by name.
	Plugins []Plugin
	// Variants holds the named variants, sorted by name.
	Variants []Variant
	// Build holds the keys only tools/elemta-build reads (platforms, dist,
	// replaces, ...).
	Build Build
}

// Error is one problem found in a plugins file.
type Error struct {
	File   string
	Line   int    // 0 when unknown
	Plugin string // the entry's name, when known
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Plugin != "" {
		fmt.Fprintf(&b, "plugin %q: ", e.Plugin)
	}
	b.WriteString(e.Msg)
	return b.String()
}

var (
	// yamlLineRE matches the position yaml.v3 puts in its syntax errors.
	yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// ValidName reports whether s is a valid plugin or variant name: the
// registry's rule (pkg/pluginname), so a file that parses never names a
// plugin that Register would refuse.
func ValidName(s string) bool { return pluginname.Valid(s) }

// BuiltinImport returns the package path of the built-in plugin name.
func BuiltinImport(name string) string { return CorePath + "/plugins/" + name }

// Builtins lists the built-in plugins: the directories directly under dir
// that hold at least one non-test .go file, sorted. A missing dir means no
// built-in plugins.
func Builtins(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list built-in plugins: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list built-in plugins: %w", err)
		}
		for _, f := range files {
			n := f.Name()
			if !f.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
				names = append(names, e.Name())
				break
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Load reads and parses the plugins file at name; built-in plugin names are
// taken from builtinsDir (see Builtins).
func Load(name, builtinsDir string) (*File, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	builtins, err := Builtins(builtinsDir)
	if err != nil {
		return nil, err
	}
	return Parse(name, data, builtins)
}

// parser collects every problem of a file instead of stopping at the first.
type parser struct {
	name string
	errs []error // all *Error
}

func (p *parser) errorf(line int, plugin, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.name, Line: line, Plugin: plugin, Msg: fmt.Sprintf(format, args...)})
}

// Parse decodes a plugins file. name is used in messages; builtins lists the
// valid built-in plugin names. Every problem found is reported; the returned
// error joins *Error values in file order.
func Parse(name string, data []byte, builtins []string) (*File, error) {
	f, err := ParseUnchecked(name, data)
	if err != nil {
		return nil, err
	}
	if err := f.CheckBuiltins(builtins); err != nil {
		return nil, err
	}
	return f, nil
}

// ParseUnchecked decodes a plugins file without knowing which built-in
// plugins exist: a caller that learns them later (elemta-build, from the
// core module it builds against) calls CheckBuiltins before using f.
func ParseUnchecked(name string, data []byte) (*File, error) {
	p := &parser{name: name}
	f := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// err joins the collected errors in line order.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b error) int {
		return a.(*Error).Line - b.(*Error).Line
	})
	return errors.Join(p.errs...)
}

// CheckBuiltins checks the entries of f against the built-in plugins of the
// core: a built-in entry must name one, and a third-party entry may take a
// built-in's name only with replace_builtin: true.
func (f *File) CheckBuiltins(builtins []string) error {
	p := &parser{name: f.Name}
	valid := "none yet"
	if len(builtins) > 0 {
		valid = strings.Join(builtins, ", ")
	}
	for _, pl := range f.Plugins {
		isBuiltin := slices.Contains(builtins, pl.Name)
		switch {
		case pl.Builtin() && !isBuiltin:
			p.errorf(pl.Line, pl.Name, "no built-in plugin of that name (no Go files in plugins/%s); built-in plugins: %s; for a third-party plugin set \"module\" and \"version\"", pl.Name, valid)
		case !pl.Builtin() && isBuiltin && !pl.ReplaceBuiltin:
			p.errorf(pl.Line, pl.Name, "module %s would replace the built-in plugin of that name; rename the entry, or set \"replace_builtin: true\" to build this module in place of the built-in", pl.Module)
		case !pl.Builtin() && !isBuiltin && pl.ReplaceBuiltin:
			p.errorf(pl.Line, pl.Name, "\"replace_builtin: true\" but there is no built-in plugin of that name (built-in plugins: %s)", valid)
		}
	}
	return p.err()
}

func (p *parser) parse(data []byte) *File {
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "empty file; want a top-level \"plugins\" list")
			return nil
		}
		p.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(extra.Line, "", "more than one YAML document; want exactly one")
		return nil
	}
	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = resolve(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "top level must be a mapping with keys \"plugins\" and \"variants\"")
		return nil
	}
	f := &File{Name: p.name}
	var pluginsNode, variantsNode *yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		if prev, dup := seen[k.Value]; dup {
			p.errorf(k.Line, "", "duplicate key %q (first at line %d)", k.Value, prev)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "plugins":
			pluginsNode = v
		case "variants":
			variantsNode = v
		default:
			if !p.buildKey(&f.Build, k, v) {
				p.errorf(k.Line, "", "unknown key %q; valid keys: plugins, variants, %s", k.Value, strings.Join(buildKeys, ", "))
			}
		}
	}
	if pluginsNode == nil {
		p.errorf(root.Line, "", "missing top-level \"plugins\" list")
		return nil
	}
	f.Plugins = p.plugins(pluginsNode)
	if variantsNode != nil {
		f.Variants = p.variants(variantsNode, f.Plugins)
	}
	return f
}

// yamlError turns a yaml.v3 error into file:line form.
func (p *parser) yamlError(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			p.yamlError(errors.New(msg))
		}
		return
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// resolve follows YAML aliases (*anchor) to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

var pluginKeys = []string{"name", "module", "version", "path", "import", "default", "replace_builtin"}

func (p *parser) plugins(list *yaml.Node) []Plugin {
	if list.Kind != yaml.SequenceNode {
		p.errorf(list.Line, "", "\"plugins\" must be a list of entries like {name: contentfilter}")
		return nil
	}
	var out []Plugin
	names := map[string]int{}
	imports := map[string]Plugin{}
	modules := map[string]Plugin{}
	for _, n := range list.Content {
		n = resolve(n)
		pl, ok := p.plugin(n)
		if !ok {
			continue
		}
		if prev, dup := names[pl.Name]; dup {
			p.errorf(pl.Line, pl.Name, "declared twice (first at line %d)", prev)
			continue
		}
		names[pl.Name] = pl.Line
		if prev, dup := imports[pl.Import]; dup {
			p.errorf(pl.Line, pl.Name, "import path %s is already used by plugin %q (line %d)", pl.Import, prev.Name, prev.Line)
			continue
		}
		imports[pl.Import] = pl
		if !pl.Builtin() {
			if prev, dup := modules[pl.Module]; dup && (prev.Version != pl.Version || prev.Path != pl.Path) {
				p.errorf(pl.Line, pl.Name, "module %s is pinned differently by plugin %q (line %d): %s vs %s; one module has one version in a build",
					pl.Module, prev.Name, prev.Line, prev.pin(), pl.pin())
				continue
			}
			modules[pl.Module] = pl
		}
		out = append(out, pl)
	}
	slices.SortFunc(out, func(a, b Plugin) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (pl Plugin) pin() string {
	if pl.Path != "" {
		return "path " + pl.Path
	}
	return "version " + pl.Version
}

// plugin decodes one entry; ok is false when an error was reported.
func (p *parser) plugin(n *yaml.Node) (pl Plugin, ok bool) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "", "plugin entry must be a mapping like {name: contentfilter}")
		return pl, false
	}
	pl = Plugin{Default: true, Line: n.Line}
	nerr := len(p.errs)
	vals := map[string]*yaml.Node{}
	// The name first, so that every other message can carry it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			v := resolve(n.Content[i+1])
			if s, ok := p.str(v, "", "name"); ok {
				pl.Name = s
			}
			break
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if !slices.Contains(pluginKeys, k.Value) {
			p.errorf(k.Line, pl.Name, "unknown key %q; valid keys: %s", k.Value, strings.Join(pluginKeys, ", "))
			continue
		}
		if _, dup := vals[k.Value]; dup {
			p.errorf(k.Line, pl.Name, "duplicate key %q", k.Value)
			continue
		}
		vals[k.Value] = v
	}
	if len(p.errs) > nerr {
		return pl, false
	}
	if _, ok := vals["name"]; !ok {
		p.errorf(n.Line, "", "plugin entry has no \"name\"")
		return pl, false
	}
	if err := pluginname.Check(pl.Name); err != nil {
		p.errorf(vals["name"].Line, pl.Name, "%v", err)
		return pl, false
	}
	get := func(key string) (string, int) {
		v, ok := vals[key]
		if !ok {
			return "", 0
		}
		s, _ := p.str(v, pl.Name, key)
		return s, v.Line
	}
	var lines = map[string]int{}
	pl.Module, lines["module"] = get("module")
	pl.Version, lines["version"] = get("version")
	pl.Path, lines["path"] = get("path")
	pl.Import, lines["import"] = get("import")
	if v, ok := vals["default"]; ok {
		pl.Default, _ = p.boolean(v, pl.Name, "default")
	}
	if v, ok := vals["replace_builtin"]; ok {
		pl.ReplaceBuiltin, _ = p.boolean(v, pl.Name, "replace_builtin")
	}
	if len(p.errs) > nerr {
		return pl, false
	}

	if pl.Module == "" {
		for _, key := range []string{"version", "path", "import", "replace_builtin"} {
			if _, ok := vals[key]; ok {
				p.errorf(lines[key], pl.Name, "%q needs \"module\": a built-in plugin is part of %s and has no %s of its own", key, CorePath, key)
			}
		}
		if len(p.errs) > nerr {
			return pl, false
		}
		pl.Import = BuiltinImport(pl.Name)
		return pl, true
	}

	if err := module.CheckPath(pl.Module); err != nil {
		p.errorf(lines["module"], pl.Name, "invalid module path %q: %v", pl.Module, unwrapPathErr(err))
		return pl, false
	}
	if pl.Module == CorePath {
		p.errorf(lines["module"], pl.Name, "module %s is the core module: drop \"module\" for a built-in plugin", CorePath)
		return pl, false
	}
	switch {
	case pl.Version != "" && pl.Path != "":
		p.errorf(lines["path"], pl.Name, "has both \"version\" and \"path\"; pin a published module with \"version\" or use a local directory with \"path\", not both")
	case pl.Version == "" && pl.Path == "":
		p.errorf(lines["module"], pl.Name, "module %s needs a pinned \"version\" (e.g. v1.2.0) or a local \"path\"", pl.Module)
	case pl.Version != "":
		p.checkVersion(pl, lines["version"])
	}
	if pl.Import == "" {
		pl.Import = pl.Module
	} else if err := module.CheckImportPath(pl.Import); err != nil {
		p.errorf(lines["import"], pl.Name, "invalid import path %q: %v", pl.Import, unwrapPathErr(err))
	} else if pl.Import != pl.Module && !strings.HasPrefix(pl.Import, pl.Module+"/") {
		p.errorf(lines["import"], pl.Name, "import path %s is not inside module %s", pl.Import, pl.Module)
	}
	return pl, len(p.errs) == nerr
}

func (p *parser) checkVersion(pl Plugin, line int) {
	v := pl.Version
	if !semver.IsValid(v) {
		p.errorf(line, pl.Name, "version %q is not a semantic version (want e.g. v1.2.0)", v)
		return
	}
	canon := semver.Canonical(v)
	if semver.Build(v) == "+incompatible" {
		canon += "+incompatible"
	}
	if canon != v {
		p.errorf(line, pl.Name, "version %q is not a full module version: write %s", v, canon)
		return
	}
	_, major, _ := module.SplitPathVersion(pl.Module)
	if err := module.CheckPathMajor(v, major); err != nil {
		p.errorf(line, pl.Name, "version %s does not match module path %s: %v", v, pl.Module, unwrapVersionErr(err))
	}
}

func unwrapPathErr(err error) error {
	var pe *module.InvalidPathError
	if errors.As(err, &pe) && pe.Err != nil {
		return pe.Err
	}
	return err
}

func unwrapVersionErr(err error) error {
	var ve *module.InvalidVersionError
	if errors.As(err, &ve) && ve.Err != nil {
		return ve.Err
	}
	return err
}

// boolean returns the value of a true/false node, reporting anything else.
func (p *parser) boolean(v *yaml.Node, plugin, key string) (bool, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
		p.errorf(v.Line, plugin, "%q must be true or false", key)
		return false, false
	}
	return v.Value == "true" || v.Value == "True" || v.Value == "TRUE", true
}

// str returns the string value of a scalar node, reporting anything else.
func (p *parser) str(v *yaml.Node, plugin, key string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		what := "a " + kindName(v)
		if v.Kind == yaml.ScalarNode {
			what = fmt.Sprintf("%s %s", strings.TrimPrefix(v.ShortTag(), "!!"), v.Value)
		}
		p.errorf(v.Line, plugin, "%q must be a string, got %s (quote it)", key, what)
		return "", false
	}
	if v.Value == "" {
		p.errorf(v.Line, plugin, "%q is empty", key)
		return "", false
	}
	return v.Value, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	default:
		return "value"
	}
}

func (p *parser) variants(n *yaml.Node, plugins []Plugin) []Variant {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "", "\"variants\" must be a mapping from variant name to a list of plugin names")
		return nil
	}
	declared := make([]string, 0, len(plugins))
	for _, pl := range plugins {
		declared = append(declared, pl.Name)
	}
	var out []Variant
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		name := k.Value
		if prev, dup := seen[name]; dup {
			p.errorf(k.Line, "", "variant %q: declared twice (first at line %d)", name, prev)
			continue
		}
		seen[name] = k.Line
		if err := pluginname.Check(name); err != nil {
			p.errorf(k.Line, "", "variant %q: %v", name, err)
			continue
		}
		if name == DefaultVariant {
			p.errorf(k.Line, "", "variant %q: the name is reserved for the top-level selection (entries without default: false)", name)
			continue
		}
		if v.Kind != yaml.SequenceNode {
			p.errorf(v.Line, "", "variant %q: must be a list of plugin names, e.g. [contentfilter]", name)
			continue
		}
		va := Variant{Name: name, Line: k.Line, Plugins: []string{}}
		members := map[string]int{}
		for _, item := range v.Content {
			item = resolve(item)
			s, ok := p.str(item, "", "variant "+name+" entry")
			if !ok {
				continue
			}
			if prev, dup := members[s]; dup {
				where := ""
				if prev != item.Line {
					where = fmt.Sprintf(" (first at line %d)", prev)
				}
				p.errorf(item.Line, "", "variant %q: plugin %q listed twice%s", name, s, where)
				continue
			}
			members[s] = item.Line
			if !slices.Contains(declared, s) {
				valid := "none"
				if len(declared) > 0 {
					valid = strings.Join(declared, ", ")
				}
				p.errorf(item.Line, "", "variant %q: unknown plugin %q; declare it under \"plugins\" first (declared: %s)", name, s, valid)
				continue
			}
			va.Plugins = append(va.Plugins, s)
		}
		slices.Sort(va.Plugins)
		out = append(out, va)
	}
	slices.SortFunc(out, func(a, b Variant) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// VariantNames lists the variants of f, sorted.
func (f *File) VariantNames() []string {
	names := make([]string, 0, len(f.Variants))
	for _, v := range f.Variants {
		names = append(names, v.Name)
	}
	return names
}

// Select returns the plugins of a variant, sorted by name. The empty name
// and DefaultVariant select the default binary: every entry without
// default: false.
func (f *File) Select(variant string) ([]Plugin, error) {
	var out []Plugin
	if variant == "" || variant == DefaultVariant {
		for _, pl := range f.Plugins {
			if pl.Default {
				out = append(out, pl)
			}
		}
		return out, nil
	}
	i := slices.IndexFunc(f.Variants, func(v Variant) bool { return v.Name == variant })
	if i < 0 {
		valid := "none"
		if len(f.Variants) > 0 {
			valid = strings.Join(f.VariantNames(), ", ")
		}
		return nil, fmt.Errorf("%s: no variant %q; variants: %s", f.Name, variant, valid)
	}
	for _, pl := range f.Plugins {
		if slices.Contains(f.Variants[i].Plugins, pl.Name) {
			out = append(out, pl)
		}
	}
	return out, nil
}

// LocalDir returns the directory of a path entry, resolved against the
// directory of the plugins file.
func (f *File) LocalDir(pl Plugin) string {
	if pl.Path == "" || filepath.IsAbs(pl.Path) {
		return pl.Path
	}
	return filepath.Join(filepath.Dir(f.Name), filepath.FromSlash(pl.Path))
}
