package pluginsfile

import (
	"bytes"
	"errors"
	"fmt"
	goparser "go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var fuzzBuiltins = []string{"contentfilter", "spf", "dkim", "dmarc"}

// FuzzParse checks what Parse promises for any plugins file: every error
// is an *Error naming the file, at a line of the file, in line order; a
// file that parses has valid, unique, sorted names, variants made of
// declared plugins, renders to Go source that parses, and reads back the
// same from a re-encoding.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../../../plugins.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(sample))
	f.Add([]byte("plugins:\n  - &cf {name: contentfilter}\n  - *cf\nvariants:\n  a: [contentfilter, contentfilter]\n"))
	f.Add([]byte("plugins: [{name: x, module: example.com/x, version: v1.2}, {name: y, module: example.com/y/v2, version: v1.0.0}]\n"))
	f.Add([]byte("plugins:\n  - name: q\n    module: \"example.com/q\\\"; evil\"\n    version: v1.0.0\n"))
	f.Add([]byte("plugins:\n  - name: a\n    module: example.com/a\n    version: v1.0.0+incompatible\n    import: example.com/a/sub\n    default: no\n"))
	f.Add([]byte("--- \nplugins: []\n---\nplugins: []\n"))
	f.Add([]byte("a: &a [*a, *a]\nplugins: []\n"))
	f.Add([]byte("plugins:\n\t- name: tab\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz/plugins.yaml"
		file, err := Parse(name, data, fuzzBuiltins)
		if err != nil {
			checkErrors(t, name, data, err)
			return
		}
		checkFile(t, file)
		again, err := Parse(name, encode(file), fuzzBuiltins)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v\n%s", err, encode(file))
		}
		if !reflect.DeepEqual(strip(file), strip(again)) {
			t.Fatalf("round trip changed the file:\n%+v\n%+v", file, again)
		}
	})
}

func checkErrors(t *testing.T, name string, data []byte, err error) {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	// yaml.v3 counts CR, LF and CRLF as line breaks, and puts a problem at
	// the end of the file on the line after the last one ("---": line 2).
	lines := bytes.Count(bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")), []byte("\n")) + 2
	prev := 0
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("error %T is not an *Error: %v", e, e)
		}
		if pe.File != name || !strings.HasPrefix(pe.Error(), name+":") {
			t.Fatalf("error does not name the file: %q", pe.Error())
		}
		if pe.Line < 0 || pe.Line > lines {
			t.Fatalf("error at line %d of a %d-line file: %v", pe.Line, lines, pe)
		}
		if pe.Line < prev {
			t.Fatalf("errors out of line order: %d after %d", pe.Line, prev)
		}
		prev = pe.Line
	}
}

func checkFile(t *testing.T, file *File) {
	t.Helper()
	seenImport := map[string]bool{}
	for i, pl := range file.Plugins {
		if !ValidName(pl.Name) {
			t.Fatalf("invalid name %q accepted", pl.Name)
		}
		if i > 0 && file.Plugins[i-1].Name >= pl.Name {
			t.Fatalf("plugins not sorted or not unique: %q, %q", file.Plugins[i-1].Name, pl.Name)
		}
		if seenImport[pl.Import] {
			t.Fatalf("import %q used twice", pl.Import)
		}
		seenImport[pl.Import] = true
		if pl.Builtin() {
			if !slices.Contains(fuzzBuiltins, pl.Name) || pl.Import != BuiltinImport(pl.Name) || pl.Version != "" || pl.Path != "" {
				t.Fatalf("bad built-in plugin %+v", pl)
			}
		} else if (pl.Version == "") == (pl.Path == "") {
			t.Fatalf("third-party plugin %+v needs exactly one of version and path", pl)
		}
	}
	variants := append([]string{"", DefaultVariant}, file.VariantNames()...)
	for i, v := range file.Variants {
		if i > 0 && file.Variants[i-1].Name >= v.Name {
			t.Fatalf("variants not sorted or not unique")
		}
		if !ValidName(v.Name) || v.Name == DefaultVariant {
			t.Fatalf("invalid variant name %q accepted", v.Name)
		}
	}
	for _, v := range variants {
		sel, err := file.Select(v)
		if err != nil {
			t.Fatalf("Select(%q): %v", v, err)
		}
		src, err := Render(Source{Generator: "fuzz", Package: "gen", Variant: v, Plugins: sel, Main: "example.com/cli"})
		if err != nil {
			t.Fatalf("Render(%q): %v", v, err)
		}
		if _, err := goparser.ParseFile(token.NewFileSet(), "gen.go", src, goparser.ImportsOnly); err != nil {
			t.Fatalf("rendered source does not parse: %v\n%s", err, src)
		}
	}
}

// encode writes f back as a plugins file, every string quoted.
func encode(f *File) []byte {
	var b bytes.Buffer
	b.WriteString("plugins:")
	if len(f.Plugins) == 0 {
		b.WriteString(" []")
	}
	b.WriteString("\n")
	for _, pl := range f.Plugins {
		fmt.Fprintf(&b, "  - name: %s\n", strconv.Quote(pl.Name))
		if !pl.Builtin() {
			fmt.Fprintf(&b, "    module: %s\n", strconv.Quote(pl.Module))
			if pl.Version != "" {
				fmt.Fprintf(&b, "    version: %s\n", strconv.Quote(pl.Version))
			}
			if pl.Path != "" {
				fmt.Fprintf(&b, "    path: %s\n", strconv.Quote(pl.Path))
			}
			fmt.Fprintf(&b, "    import: %s\n", strconv.Quote(pl.Import))
		}
		fmt.Fprintf(&b, "    default: %t\n", pl.Default)
	}
	if len(f.Variants) > 0 {
		b.WriteString("variants:\n")
		for _, v := range f.Variants {
			q := make([]string, len(v.Plugins))
			for i, p := range v.Plugins {
				q[i] = strconv.Quote(p)
			}
			fmt.Fprintf(&b, "  %s: [%s]\n", strconv.Quote(v.Name), strings.Join(q, ", "))
		}
	}
	return b.Bytes()
}

// strip drops what a re-encoding changes: line numbers.
func strip(f *File) *File {
	c := *f
	c.Plugins = slices.Clone(f.Plugins)
	for i := range c.Plugins {
		c.Plugins[i].Line = 0
	}
	c.Variants = slices.Clone(f.Variants)
	for i := range c.Variants {
		c.Variants[i].Line = 0
	}
	return &c
}
