// Command genplugins reads plugins.yaml and writes the Go file that links
// the selected plugins into the binary: blank imports of their packages and
// a Manifest of the names they must register.
//
// Usage (from gen/, through go generate):
//
//	go run ../tools/genplugins -config ../plugins.yaml -out plugins_gen.go [-variant NAME]
//
// The output is gofmt-formatted and depends only on what the file means, not
// on the order of its entries. The output file is rewritten only when its
// bytes change, so an unchanged plugins.yaml leaves its mtime alone.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// options are the command-line flags.
type options struct {
	config     string
	out        string
	variant    string
	pluginsDir string
	pkg        string
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("genplugins", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.config, "config", "plugins.yaml", "plugins file to read")
	fs.StringVar(&o.out, "out", "plugins_gen.go", "Go file to write")
	fs.StringVar(&o.variant, "variant", "", "variant to select (default: the top-level plugins without default: false)")
	fs.StringVar(&o.pluginsDir, "plugins-dir", "", "directory of built-in plugins (default: plugins/ next to the config file)")
	fs.StringVar(&o.pkg, "package", "gen", "package name of the generated file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "genplugins: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if _, err := generate(o); err != nil {
		fmt.Fprintf(stderr, "genplugins: %v\n", err)
		return 1
	}
	return 0
}

// generate writes o.out and reports whether it changed.
func generate(o options) (bool, error) {
	src, err := render(o)
	if err != nil {
		return false, err
	}
	return writeIfChanged(o.out, src)
}

// render returns the generated source for o without writing it.
func render(o options) ([]byte, error) {
	dir := o.pluginsDir
	if dir == "" {
		dir = filepath.Join(filepath.Dir(o.config), "plugins")
	}
	f, err := pluginsfile.Load(o.config, dir)
	if err != nil {
		return nil, err
	}
	plugins, err := f.Select(o.variant)
	if err != nil {
		return nil, err
	}
	return pluginsfile.Render(pluginsfile.Source{
		Generator: "genplugins",
		Package:   o.pkg,
		Variant:   o.variant,
		Plugins:   plugins,
	})
}

// writeIfChanged writes data to name unless the file already holds exactly
// those bytes. The write goes through a temporary file and a rename, so a
// reader never sees half a file.
func writeIfChanged(name string, data []byte) (bool, error) {
	old, err := os.ReadFile(name)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return false, err
	}
	return true, nil
}
