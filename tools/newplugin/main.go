// Command newplugin starts a plugin.
//
// A built-in plugin: it writes plugins/NAME/ with a config struct,
// registration, the stage handler, a README and tests that call the
// contract kit (registry/registrytest), adds `- name: NAME` to plugins.yaml
// and regenerates gen/plugins_gen.go.
//
//	go run ./tools/newplugin -name greylist [-type greylist] [-stage pre-reception] [-default=false]
//
// A third-party plugin, with -module: it writes a Go module of its own in
// -dir (default: the last element of the module path) with a go.mod that
// requires the core, the same plugin files at the module root, and
// plugins.yaml.snippet, the entry that links it into a custom binary.
//
//	go run github.com/elemta/elemta/tools/newplugin@v1.4.0 -module example.com/you/elemta-greet -name greet
//	go run ./tools/newplugin -module example.com/you/elemta-greet -name greet -core-dir .   # next to a checkout
//
// The core version required is -core-version, else the version newplugin
// itself was built from (go run ...@v1.4.0); -core-dir adds a replace to a
// local checkout. Either way the result builds and passes its tests as
// written (after `go mod tidy`); replace the example logic (it adds a
// header field) with the plugin's own.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/elemta/elemta/pkg/pluginname"
	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	name    string
	typ     string
	stage   string
	root    string
	inc     bool // in the default binary
	gen     bool // regenerate gen/
	summary string

	// third-party module mode (module != "")
	module      string
	dir         string
	coreVersion string
	coreDir     string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("newplugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.name, "name", "", "plugin name: lowercase letters, digits, '-' and '_', starting with a letter")
	fs.StringVar(&o.typ, "type", "filter", "plugin type for a stage handler: filter, greylist, ratelimit or custom")
	fs.StringVar(&o.stage, "stage", "post-reception", "stage the plugin runs in")
	fs.StringVar(&o.root, "root", ".", "repository root (holds plugins.yaml, plugins/ and gen/)")
	fs.BoolVar(&o.inc, "default", true, "link the plugin into the default binary (false: declare it with default: false)")
	fs.BoolVar(&o.gen, "generate", true, "regenerate gen/plugins_gen.go")
	fs.StringVar(&o.summary, "description", "", "one-line description (default: a placeholder to replace)")
	fs.StringVar(&o.module, "module", "", "write a third-party plugin module with this path (example.com/you/elemta-greet) instead of a built-in plugin")
	fs.StringVar(&o.dir, "dir", "", "with -module: the directory to create (default: the module path's last element)")
	fs.StringVar(&o.coreVersion, "core-version", "", "with -module: the core version to require (default: the version newplugin was built from)")
	fs.StringVar(&o.coreDir, "core-dir", "", "with -module: an Elemta checkout to use through a replace directive")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.name == "" {
		fmt.Fprintln(stderr, "usage: newplugin -name NAME [-type filter] [-stage post-reception] [-default=false] [-root .]\n"+
			"       newplugin -module PATH -name NAME [-dir DIR] [-core-version vX.Y.Z] [-core-dir CHECKOUT] [-type filter] [-stage post-reception]")
		return 2
	}
	if o.module != "" {
		files, err := scaffoldModule(o)
		if err != nil {
			fmt.Fprintf(stderr, "newplugin: %v\n", err)
			return 1
		}
		for _, f := range files {
			fmt.Fprintf(stdout, "wrote %s\n", f)
		}
		fmt.Fprintf(stdout, "next: cd %s && go mod tidy && go test -race ./...; then add plugins.yaml.snippet to a plugins.yaml\n", o.moduleDir())
		return 0
	}
	files, err := scaffold(o)
	if err != nil {
		fmt.Fprintf(stderr, "newplugin: %v\n", err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	fmt.Fprintf(stdout, "next: edit plugins/%s/%s.go, then go test -race ./plugins/%s/\n", o.name, o.name, o.name)
	return 0
}

var (
	// types a generated stage handler may declare, with their registry constant.
	types = map[string]string{
		"filter":    "PluginTypeFilter",
		"greylist":  "PluginTypeGreylist",
		"ratelimit": "PluginTypeRateLimit",
		"custom":    "PluginTypeCustom",
	}
	// stages by config name, with their registry constant.
	stages = map[string]string{
		"pre-reception":  "PreReception",
		"post-reception": "PostReception",
		"pre-queue":      "PreQueue",
		"pre-delivery":   "PreDelivery",
		"post-delivery":  "PostDelivery",
	}
)

// data fills the templates.
type data struct {
	Name, Package, Type, TypeConst, Stage, StageConst, Header, Description string
	// TestCmd runs the plugin's tests (README).
	TestCmd string
	// Module mode: the module path, the core version and replace target.
	Module, CoreVersion, CoreDir, GoVersion string
}

func (o options) data() (data, error) {
	if err := pluginname.Check(o.name); err != nil {
		return data{}, fmt.Errorf("plugin name %q: %w", o.name, err)
	}
	pkg := strings.NewReplacer("-", "", "_", "").Replace(o.name)
	if !token.IsIdentifier(pkg) || token.IsKeyword(pkg) {
		return data{}, fmt.Errorf("name %q gives package name %q, which is not a Go identifier: choose another", o.name, pkg)
	}
	tc, ok := types[o.typ]
	if !ok {
		return data{}, fmt.Errorf("-type %q: want one of %s (capability plugins such as antivirus start from an existing plugin)", o.typ, strings.Join(sortedKeys(types), ", "))
	}
	sc, ok := stages[o.stage]
	if !ok {
		return data{}, fmt.Errorf("-stage %q: want one of %s", o.stage, strings.Join(sortedKeys(stages), ", "))
	}
	desc := o.summary
	if desc == "" {
		desc = "TODO: one line on what " + o.name + " does"
	}
	return data{
		Name: o.name, Package: pkg, Type: o.typ, TypeConst: tc, Stage: o.stage, StageConst: sc,
		Header: "X-Elemta-" + headerWord(o.name), Description: desc,
		TestCmd: "go test -race ./plugins/" + o.name + "/",
	}, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// headerWord turns "rate-limit" into "Rate-Limit".
func headerWord(name string) string {
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '_' })
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "-")
}

// scaffold writes the plugin and updates plugins.yaml and gen/. Nothing is
// written when a check fails.
func scaffold(o options) ([]string, error) {
	d, err := o.data()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.root, "plugins", o.name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%s already exists", dir)
	}
	cfgPath := filepath.Join(o.root, "plugins.yaml")
	old, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	updated, err := addEntry(cfgPath, old, o.name, o.inc)
	if err != nil {
		return nil, err
	}
	// Check the new plugins.yaml as the generator will, with the new
	// plugin counted as built in.
	builtins, err := pluginsfile.Builtins(filepath.Join(o.root, "plugins"))
	if err != nil {
		return nil, err
	}
	f, err := pluginsfile.Parse(cfgPath, updated, append(builtins, o.name))
	if err != nil {
		return nil, fmt.Errorf("plugins.yaml after adding %s: %w", o.name, err)
	}
	var gen []byte
	if o.gen {
		selected, _ := f.Select("")
		gen, err = pluginsfile.Render(pluginsfile.Source{Generator: "genplugins", Package: "gen", Plugins: selected})
		if err != nil {
			return nil, err
		}
	}

	rendered, err := render(pluginFiles(d), d)
	if err != nil {
		return nil, err
	}
	written, err := writeFiles(dir, rendered)
	if err != nil {
		return written, err
	}
	if err := os.WriteFile(cfgPath, updated, 0o644); err != nil {
		return written, err
	}
	written = append(written, cfgPath)
	if gen != nil {
		p := filepath.Join(o.root, "gen", "plugins_gen.go")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, gen, 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// pluginFiles are the templates of a plugin package by file name.
func pluginFiles(d data) map[string]string {
	return map[string]string{
		"README.md":            readmeTmpl,
		"register.go":          registerTmpl,
		d.Package + ".go":      pluginTmpl,
		d.Package + "_test.go": testTmpl,
		"testdata/message.eml": messageTmpl,
		"testdata/README.md":   testdataTmpl,
	}
}

// render executes the templates with d; Go files come out gofmt-clean.
func render(files map[string]string, d data) (map[string][]byte, error) {
	rendered := map[string][]byte{}
	for name, text := range files {
		var b bytes.Buffer
		if err := template.Must(template.New(name).Parse(text)).Execute(&b, d); err != nil {
			return nil, err
		}
		out := b.Bytes()
		if strings.HasSuffix(name, ".go") {
			var err error
			if out, err = format.Source(out); err != nil {
				return nil, fmt.Errorf("format %s: %w", name, err)
			}
		}
		rendered[name] = out
	}
	return rendered, nil
}

// writeFiles writes the rendered files under dir, creating directories,
// and returns the paths written, in name order.
func writeFiles(dir string, rendered map[string][]byte) ([]string, error) {
	var written []string
	for _, name := range sortedFiles(rendered) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, rendered[name], 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

func sortedFiles(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// addEntry inserts `- name: NAME` after the last entry of the top-level
// plugins list, keeping every other byte (comments, order, variants) as it
// was. An empty flow list (`plugins: []`) becomes a block list.
func addEntry(file string, src []byte, name string, inc bool) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: want a mapping with a \"plugins\" list", file)
	}
	root := doc.Content[0]
	var key, list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "plugins" {
			key, list = root.Content[i], root.Content[i+1]
		}
	}
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: no top-level \"plugins\" list", file)
	}
	entry := func(indent string) string {
		s := indent + "- name: " + name + "\n"
		if !inc {
			s += indent + "  default: false\n"
		}
		return s
	}
	lines := strings.SplitAfter(string(src), "\n")
	if !strings.HasSuffix(string(src), "\n") {
		lines[len(lines)-1] += "\n"
	}
	if len(list.Content) == 0 {
		if list.Style&yaml.FlowStyle == 0 {
			return nil, fmt.Errorf("%s:%d: cannot add to this empty plugins list: write `plugins: []`", file, list.Line)
		}
		// "plugins: []" (a comment may follow): rewrite the key's line.
		l := key.Line - 1
		_, comment, _ := strings.Cut(lines[l], "#")
		head := strings.Repeat(" ", key.Column-1) + "plugins:"
		if comment != "" {
			head += " #" + strings.TrimRight(comment, "\n")
		}
		lines[l] = head + "\n" + entry(strings.Repeat(" ", key.Column+1))
		return []byte(strings.Join(lines, "")), nil
	}
	if list.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("%s:%d: the plugins list is in flow style ([...]): write one `- name:` entry per line to let newplugin add to it", file, list.Line)
	}
	for _, e := range list.Content {
		for i := 0; i+1 < len(e.Content); i += 2 {
			if e.Content[i].Value == "name" && e.Content[i+1].Value == name {
				return nil, fmt.Errorf("%s:%d: plugin %q is already declared", file, e.Line, name)
			}
		}
	}
	last := list.Content[len(list.Content)-1]
	end := lastLine(last)
	// Keep comment lines that belong to the last entry (indented deeper
	// than its dash) with it. The entry's node starts after "- ", so the
	// dash is indented by Column-3 spaces.
	dash := max(last.Column-3, 0)
	for end < len(lines) {
		t := lines[end]
		trimmed := strings.TrimLeft(t, " ")
		indent := len(t) - len(trimmed)
		if strings.HasPrefix(trimmed, "#") && indent > dash {
			end++
			continue
		}
		break
	}
	indent := strings.Repeat(" ", dash)
	out := slices.Concat(lines[:end], []string{entry(indent)}, lines[end:])
	return []byte(strings.Join(out, "")), nil
}

// lastLine is the last line (1-based) any part of n is on.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}
