package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/elemta/elemta/plugins/contentfilter"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // substrings of the error; none means no error
	}{
		{name: "minimal", toml: "[plugins]\nplugins = [\"contentfilter\"]\n"},
		{name: "unknown top-level table", toml: "[plugins]\nplugins = []\n\n[servr]\nport = 25\n",
			want: []string{`c.toml:4:2: unknown top-level key "servr"`, "this binary knows: [plugins], [dns]"}},
		{name: "dns table", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[dns]\nservers = [\"127.0.0.1:5353\"]\ntimeout = 2\n"},
		{name: "unknown key in dns", toml: "[dns]\nserver = [\"127.0.0.1\"]\n",
			want: []string{`c.toml:2:1: unknown key "server" in [dns]`}},
		{name: "bad dns server", toml: "[dns]\nservers = [\"ns1.example\"]\n",
			want: []string{`c.toml:2:1: [dns]: servers: "ns1.example": want an IP address`}},
		{name: "bad dns duration", toml: "[dns]\ntimeout = \"fast\"\n",
			want: []string{`c.toml:2:11: dns.timeout: invalid duration "fast"`}},
		{name: "unknown key in an array of tables", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[[plugins.contentfilter.body_rules]]\nname = \"a\"\npatern = \"x\"\n",
			want: []string{`c.toml:5:1: plugins.contentfilter.body_rules: unknown key "patern"`}},
		{name: "unknown plugin key", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\nmax_part = 3\n",
			want: []string{"c.toml:4:1", `unknown key "max_part"`}},
		{name: "wrong type", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\nmax_parts = \"many\"\n",
			want: []string{"c.toml:4", "max_parts"}},
		{name: "plugin validation names the rule", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[[plugins.contentfilter.body_rules]]\nname = \"casino\"\npattern = \"(casino\"\n",
			want: []string{`c.toml:3:3: [plugins.contentfilter]: body_rules[0] (rule "casino"): pattern "(casino": error parsing regexp`}},
		{name: "plugin not compiled in", toml: "[plugins]\nplugins = [\"nosuchplugin\"]\n",
			want: []string{`enables "nosuchplugin", which is not compiled into this binary`, "plugins.yaml"}},
		{name: "syntax error", toml: "[plugins\n", want: []string{"c.toml:1"}},
		// config check reports every error at once: a wrong value does not
		// hide unknown keys, in the host's tables or a plugin's, and a
		// plugin's error does not hide the host's.
		{name: "a wrong value and unknown keys, host", toml: "[dns]\nservr = 1\ntimeout = \"fast\"\n[server]\nlisten_adress = \"x\"\n[lgo]\n",
			want: []string{`c.toml:3:11: dns.timeout: invalid duration "fast"`, `c.toml:2:1: unknown key "servr" in [dns]`,
				`c.toml:5:1: unknown key "listen_adress" in [server]`, `c.toml:6:2: unknown top-level key "lgo"`}},
		{name: "a wrong value and unknown keys, plugin", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\nmax_part = 3\nmax_parts = \"many\"\ntimeout = \"soon\"\n",
			want: []string{`c.toml:4:1: plugins.contentfilter: unknown key "max_part"`, "c.toml:5", "max_parts", `c.toml:6:11: plugins.contentfilter.timeout: invalid duration "soon"`}},
		{name: "wrong values in two tables", toml: "[server]\nlisten = \"0.0.0.0:25\"\nmax_connections = \"many\"\nlocal_domains = [\"example.org\"]\n[dns]\ntimeout = \"fast\"\n",
			want: []string{`c.toml:3:19: server.max_connections: cannot decode TOML string`, `c.toml:6:11: dns.timeout: invalid duration "fast"`}},
		{name: "a plugin error and a host error", toml: "[plugins]\nplugins = [\"contentfilter\"]\n[plugins.contentfilter]\nmax_part = 3\n[dns]\ntimeout = \"fast\"\n",
			want: []string{`unknown key "max_part"`, `c.toml:6:11: dns.timeout: invalid duration "fast"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tt.toml))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.File != "c.toml" || !slices.Equal(cfg.Plugins.Plugins, []string{"contentfilter"}) {
					t.Errorf("config %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// TestNoLineFromAHalfDecodedTable: a table with a wrong value is not
// validated: decoded only up to it, it would lack the keys after it
// (local_domains here) and be told it needs them.
func TestNoLineFromAHalfDecodedTable(t *testing.T) {
	_, err := Parse("c.toml", []byte("[server]\nlisten = \"0.0.0.0:25\"\nmax_connections = \"many\"\nlocal_domains = [\"example.org\"]\n"))
	if err == nil {
		t.Fatal("Parse accepts a wrong value")
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 {
		t.Errorf("want the one error, got %q", lines)
	}
}

func TestLegacyDirectoryWarns(t *testing.T) {
	cfg, err := Parse("c.toml", []byte("[plugins]\nenabled = true\ndirectory = \"/app/plugins\"\nplugins = [\"contentfilter\"]\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "compiled into the binary") {
		t.Fatalf("warnings %q, want one about compiled-in plugins", cfg.Warnings)
	}
}

func TestDefault(t *testing.T) {
	cfg, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if cfg.File != EmbeddedName || !slices.Contains(cfg.Plugins.Plugins, "contentfilter") {
		t.Fatalf("default config %s enables %v, want contentfilter", cfg.File, cfg.Plugins.Plugins)
	}
}

func TestCompiledInOnly(t *testing.T) {
	in := "[plugins]\nplugins = [\"notcompiled\", \"contentfilter\"]\n[plugins.notcompiled]\nx = 1\n[plugins.contentfilter]\nmax_parts = 7\n"
	out, err := compiledInOnly([]byte(in))
	if err != nil {
		t.Fatalf("compiledInOnly: %v", err)
	}
	cfg, err := Parse("x", out)
	if err != nil {
		t.Fatalf("Parse of the filtered config:\n%s\n%v", out, err)
	}
	if !slices.Equal(cfg.Plugins.Plugins, []string{"contentfilter"}) || strings.Contains(string(out), "notcompiled") {
		t.Fatalf("filtered config:\n%s", out)
	}
	pc, _ := cfg.Plugins.Settings("contentfilter")
	if !strings.Contains(string(out), "max_parts = 7") || pc == nil {
		t.Fatalf("contentfilter table lost:\n%s", out)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "named.toml")
	if err := os.WriteFile(named, []byte("[plugins]\nplugins = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, cwdFile, want string
	}{
		{name: "named file", path: named, want: named},
		{name: "elemta.toml in the working directory", cwdFile: "[plugins]\nplugins = []\n", want: DefaultFile},
		{name: "embedded default", want: EmbeddedName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if tt.cwdFile != "" {
				if err := os.WriteFile(DefaultFile, []byte(tt.cwdFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := Find(tt.path)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if cfg.File != tt.want {
				t.Errorf("Find(%q) read %s, want %s", tt.path, cfg.File, tt.want)
			}
		})
	}
	if _, err := Find(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Find of a missing file: %v", err)
	}
}
