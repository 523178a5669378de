package config

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// position is the "file:line:col:" (or "file:line:") an error starts with.
var position = regexp.MustCompile(`^` + regexp.QuoteMeta(fuzzFile) + `:(\d+)(?::(\d+))?:`)

const fuzzFile = "fuzz/elemta.toml"

// FuzzParse checks what Parse promises for any config document: it is
// deterministic; every error names the file, and a line:col it gives lies
// inside the document; a document that parses is the whole truth, so
// every plugin it enables builds from its settings (contentfilter is the
// plugin compiled in here), and the [server] and [dns] tables it yields
// validate.
func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	if data, err := compiledInOnly(DefaultTOML()); err == nil {
		f.Add(data)
	}
	if paths, err := filepath.Glob("../../examples/*/*.toml"); err == nil {
		for _, p := range paths {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\ntimeout = \"3s\"\non_error = \"tempfail\"\nmax_parts = 10\n[[plugins.contentfilter.body_rules]]\nname = \"r\"\npattern = \"(?i)casino\"\n"))
	f.Add([]byte("[plugins]\nplugins = [\"contentfilter\", \"contentfilter\"]\nmax_concurrency = 0\ndefault_timeout = \"-1s\"\n"))
	f.Add([]byte("[plugins.contentfilter]\ntimeout = \"1h\"\nstages = [\"nosuch\"]\n[dns]\nservers = [\"127.0.0.1:53\", \"::1\"]\ntimeout = \"0s\"\n"))
	f.Add([]byte("[server]\nlisten = [\"127.0.0.1:2525\"]\nmax_message_bytes = -1\n[servr]\n"))
	f.Add([]byte("plugins = 3\n"))
	f.Add([]byte("[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\ntimeout = \"99999999999999999999h\"\n"))
	f.Add([]byte("[dns]\nstatic = \"/nonexistent/zone\"\n[dns.x]\n"))
	f.Add([]byte("a = \"\\uD800\"\n[plugins\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(fuzzFile, data)
		cfg2, err2 := Parse(fuzzFile, data)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("not deterministic:\n%v\n---\n%v", err, err2)
		}
		if err != nil {
			checkErrors(t, data, err)
			return
		}
		if !reflect.DeepEqual(cfg.Server, cfg2.Server) || !reflect.DeepEqual(cfg.DNS, cfg2.DNS) {
			t.Fatalf("not deterministic: %+v vs %+v", cfg, cfg2)
		}
		if err := cfg.Server.Validate(); err != nil {
			t.Fatalf("parsed [server] does not validate: %v", err)
		}
		if err := cfg.DNS.Validate(); err != nil {
			t.Fatalf("parsed [dns] does not validate: %v", err)
		}
		for _, name := range cfg.Plugins.Plugins {
			if _, err := cfg.Plugins.Settings(name); err != nil {
				t.Fatalf("enabled plugin %s has no settings: %v", name, err)
			}
		}
		m := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(registry.Host{Hostname: "mx.test"}))
		if err := m.LoadPlugins(context.Background()); err != nil {
			t.Fatalf("config check passes but the plugins do not load: %v\n%s", err, data)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}

func checkErrors(t *testing.T, data []byte, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	for _, e := range errs {
		msg := e.Error()
		if !strings.HasPrefix(msg, fuzzFile+":") {
			t.Fatalf("error does not name the file: %q", msg)
		}
		m := position.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if line < 1 || line > lines {
			t.Fatalf("error at line %d of a %d-line document: %q", line, lines, msg)
		}
		if m[2] != "" {
			col, _ := strconv.Atoi(m[2])
			l := bytes.Split(data, []byte("\n"))[line-1]
			if col < 1 || col > len(l)+1 {
				t.Fatalf("error at %d:%d, but line %d has %d bytes: %q", line, col, line, len(l), msg)
			}
		}
	}
}
