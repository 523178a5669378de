package sdkimports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const core = "github.com/elemta/elemta"

// listed is what `go list -json` says of one package.
type listed struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// sdkAllowed are the internal imports an SDK package may make, each with
// its reason. Nothing under plugins/ or examples/ is ever allowed one.
var sdkAllowed = map[string][]string{
	// Elemta's resolver pointed at a test server: the point of the package.
	core + "/pkg/testenv/dnstest": {core + "/internal/resolver"},
	// The static-zone resolver is Elemta's resolver, offline, on a zone
	// text: the same code answers tests and production.
	core + "/registry/registrytest": {core + "/internal/resolver"},
	// Register writes the registration table the host reads: the entries
	// hold constructors and type-erased configs that no plugin author
	// should see, so the table is internal and registry its only writer.
	core + "/registry": {core + "/internal/catalog"},
}

// isInternal reports whether path is a package of the core module that
// another module cannot import: one with an "internal" path element.
func isInternal(path string) bool {
	rest, ok := strings.CutPrefix(path, core+"/")
	if !ok {
		return false
	}
	return slices.Contains(strings.Split(rest, "/"), "internal")
}

// violations names every package of pkgs and the internal package it
// imports (in its code, its tests or its external tests) that allowed does
// not list for it.
func violations(pkgs []listed, allowed map[string][]string) []string {
	var out []string
	for _, p := range pkgs {
		for _, set := range []struct {
			kind    string
			imports []string
		}{{"imports", p.Imports}, {"test imports", p.TestImports}, {"external test imports", p.XTestImports}} {
			for _, imp := range set.imports {
				if isInternal(imp) && !slices.Contains(allowed[p.ImportPath], imp) {
					out = append(out, fmt.Sprintf("%s %s %s", p.ImportPath, set.kind, imp))
				}
			}
		}
	}
	return out
}

// goList lists the packages matching patterns in the core module.
func goList(t *testing.T, patterns ...string) []listed {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestPluginsImportNoInternal: every package under plugins/ and examples/
// (code and tests) imports only what a third-party module can import.
func TestPluginsImportNoInternal(t *testing.T) {
	pkgs := goList(t, "./plugins/...", "./examples/...")
	if !slices.ContainsFunc(pkgs, func(p listed) bool { return p.ImportPath == core+"/plugins/dkim" }) {
		t.Fatalf("go list found no plugins/dkim among %d packages: the test lists the wrong tree", len(pkgs))
	}
	for _, v := range violations(pkgs, nil) {
		t.Errorf("%s: a plugin may import only what a third-party module can (move what it needs to pkg/)", v)
	}
}

// TestSDKImportsNoInternal: the SDK packages a plugin imports do not
// import internal/ packages either, except those sdkAllowed names.
func TestSDKImportsNoInternal(t *testing.T) {
	for _, v := range violations(goList(t, "./pkg/...", "./registry/..."), sdkAllowed) {
		t.Errorf("%s: an SDK package may import only public packages", v)
	}
}

func TestViolations(t *testing.T) {
	pkgs := []listed{
		{ImportPath: core + "/plugins/a", Imports: []string{"fmt", core + "/registry", core + "/pkg/store"}},
		{ImportPath: core + "/plugins/b", Imports: []string{core + "/internal/store"}},
		{ImportPath: core + "/plugins/c", TestImports: []string{core + "/internal/testenv/dnstest"}},
		{ImportPath: core + "/plugins/d", XTestImports: []string{core + "/tools/internal/pluginsfile"}},
		{ImportPath: core + "/plugins/e", Imports: []string{"example.com/x/internal/y", core + "/internalish", core + "/internal"}},
		{ImportPath: core + "/pkg/x", Imports: []string{core + "/internal/resolver"}},
	}
	got := violations(pkgs, map[string][]string{core + "/pkg/x": {core + "/internal/resolver"}})
	want := []string{
		core + "/plugins/b imports " + core + "/internal/store",
		core + "/plugins/c test imports " + core + "/internal/testenv/dnstest",
		core + "/plugins/d external test imports " + core + "/tools/internal/pluginsfile",
		core + "/plugins/e imports " + core + "/internal",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
