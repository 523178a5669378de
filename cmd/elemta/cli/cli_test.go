package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/elemta/elemta/plugins/contentfilter"
)

// testHeaders is a pre-queue plugin for these tests: it adds and removes
// header fields, and fails when told to.
type testHeaders struct{ cfg testHeadersConfig }

type testHeadersConfig struct {
	Add    []string `toml:"add"`
	Remove []string `toml:"remove"`
	Fail   bool     `toml:"fail"`
}

func (p *testHeaders) HandleStage(_ context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
	if p.cfg.Fail {
		return nil, errors.New("backend unreachable")
	}
	res := &registry.Result{Details: "headers changed"}
	for _, f := range p.cfg.Add {
		name, value, _ := strings.Cut(f, ":")
		res.AddHeaders = append(res.AddHeaders, registry.Field{Name: name, Value: strings.TrimSpace(value)})
	}
	for _, n := range p.cfg.Remove {
		res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: n, Index: -1})
	}
	return res, nil
}

func init() {
	registry.Register(registry.Module[testHeadersConfig, *testHeaders]{
		Name:   "testheaders",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreQueue},
		New: func(cfg testHeadersConfig, _ registry.Host) (*testHeaders, error) {
			return &testHeaders{cfg: cfg}, nil
		},
	})
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.MainIO(context.Background(), args, gen.Manifest, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func check(t *testing.T, r result, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

// writeMsg writes a message into a temporary directory.
func writeMsg(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScan(t *testing.T) {
	defer_ := writeMsg(t, "defer.eml", "Subject: x\r\n\r\nplease DEFER-ME\r\n")
	hold := writeMsg(t, "hold.eml", "Subject: x\r\n\r\nplease HOLD-ME\r\n")
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
	}{
		{name: "clean message is accepted", args: []string{"scan", "testdata/clean.eml"}, code: cli.ExitAccept,
			stdout: []string{"testdata/clean.eml", "post-reception", "contentfilter", "accept 250 2.0.0", "verdict: accept (250 2.0.0 OK)"}},
		{name: "exe attachment is rejected by the default config", args: []string{"scan", "testdata/exe.eml"}, code: cli.ExitReject,
			stdout: []string{`attachment "Invoice_88213.pdf.exe"`, "verdict: reject (550 5.7.1 Executable attachments are not accepted) by contentfilter", "pre-queue       not run (message refused)"}},
		{name: "most severe verdict of several files", args: []string{"scan", "testdata/clean.eml", "testdata/exe.eml"}, code: cli.ExitReject,
			stdout: []string{"verdict: accept", "verdict: reject"}},
		{name: "malformed message names file and line, others still scanned", args: []string{"scan", "testdata/malformed.eml", "testdata/clean.eml"},
			code: cli.ExitError, stdout: []string{"testdata/clean.eml\n", "verdict: accept"},
			stderr: []string{"testdata/malformed.eml: malformed header: line 3: not a header field"}},
		{name: "missing file", args: []string{"scan", "testdata/nosuch.eml"}, code: cli.ExitError, stderr: []string{"nosuch.eml: no such file"}},
		{name: "tempfail", args: []string{"scan", "--config", "testdata/verdicts.toml", defer_}, code: cli.ExitTempFail,
			stdout: []string{"verdict: tempfail (451 4.7.1"}},
		{name: "quarantine, flags after the files", args: []string{"scan", hold, "--config", "testdata/verdicts.toml"}, code: cli.ExitQuarantine,
			stdout: []string{"verdict: quarantine (250 2.0.0 Message quarantined by content policy)", "add header: X-Scanned-By: testheaders", "remove header: X-Remove-Me (every)"}},
		{name: "failing plugin shows its error", args: []string{"scan", "--config", "testdata/failing.toml", "testdata/clean.eml"}, code: cli.ExitAccept,
			stdout: []string{"testheaders", "error: plugin testheaders: backend unreachable"}},
		{name: "bad --ip", args: []string{"scan", "--ip", "300.1.1.1", "testdata/clean.eml"}, code: cli.ExitError, stderr: []string{"--ip"}},
		{name: "no files", args: []string{"scan"}, code: cli.ExitError, stderr: []string{"usage: elemta scan"}},
		{name: "invalid config", args: []string{"scan", "--config", "testdata/bad-regexp.toml", "testdata/clean.eml"}, code: cli.ExitError,
			stderr: []string{`rule "casino"`}},
		{name: "metrics", args: []string{"plugins", "metrics", "testdata/clean.eml", "testdata/exe.eml"}, code: cli.ExitReject,
			stdout: []string{"PLUGIN", "contentfilter      2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, tt.args...), tt.code, tt.stdout, tt.stderr)
		})
	}
}

func TestScanJSON(t *testing.T) {
	r := run(t, "scan", "--json", "--ip", "192.0.2.7", "--helo", "mx.example.org", "--from", "a@example.org",
		"--rcpt", "b@example.net", "--rcpt", "c@example.net", "testdata/exe.eml", "testdata/clean.eml")
	if r.code != cli.ExitReject {
		t.Fatalf("exit %d, want %d; stderr %s", r.code, cli.ExitReject, r.stderr)
	}
	var reports []struct {
		File    string
		Verdict struct {
			Action       string
			Code         int
			EnhancedCode string `json:"enhanced_code"`
		}
		DecidedBy string `json:"decided_by"`
		Stages    []struct {
			Stage   string
			Results []struct {
				Plugin     string
				DurationMS float64 `json:"duration_ms"`
				Details    string
				TimedOut   bool `json:"timed_out"`
				Panicked   bool
			}
		}
		NotRun []string `json:"not_run"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &reports); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, r.stdout)
	}
	if len(reports) != 2 {
		t.Fatalf("%d reports, want 2", len(reports))
	}
	exe, clean := reports[0], reports[1]
	if exe.Verdict.Action != "reject" || exe.Verdict.Code != 550 || exe.Verdict.EnhancedCode != "5.7.1" || exe.DecidedBy != "contentfilter" {
		t.Errorf("exe report %+v", exe)
	}
	if len(exe.Stages) != 2 || exe.Stages[1].Results[0].Plugin != "contentfilter" || !strings.Contains(exe.Stages[1].Results[0].Details, ".exe") ||
		len(exe.NotRun) != 1 || exe.NotRun[0] != "pre-queue" {
		t.Errorf("exe stages %+v, not run %v", exe.Stages, exe.NotRun)
	}
	if clean.Verdict.Action != "accept" || len(clean.Stages) != 3 {
		t.Errorf("clean report %+v", clean)
	}
}

// TestScanOut checks that --out writes the message byte for byte as
// received except for the header changes.
func TestScanOut(t *testing.T) {
	// Odd but valid bytes: folded fields, 8-bit text, a body without a final line end.
	orig := "Received: from a\r\n\tby b; Tue, 24 Nov 2026 09:00:00 +0000\r\n" +
		"X-Remove-Me: 1\r\nSubject: caf\xc3\xa9 TAG-ME\r\nx-remove-me: 2\r\n\r\nTAG-ME body\r\n\r\n  trailing \t\r\nno final newline"
	in := writeMsg(t, "tagged.eml", orig)
	outDir := filepath.Join(t.TempDir(), "out")
	rejected := writeMsg(t, "exe.eml", "Content-Type: application/octet-stream; name=a.exe\r\n\r\nMZ")
	r := run(t, "scan", "--config", "testdata/verdicts.toml", "--out", outDir, in)
	check(t, r, cli.ExitAccept, []string{"written: " + filepath.Join(outDir, "tagged.eml")}, nil)

	got, err := os.ReadFile(filepath.Join(outDir, "tagged.eml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Tagged: yes\r\nX-Scanned-By: testheaders\r\n" +
		"Received: from a\r\n\tby b; Tue, 24 Nov 2026 09:00:00 +0000\r\n" +
		"Subject: caf\xc3\xa9 TAG-ME\r\n\r\nTAG-ME body\r\n\r\n  trailing \t\r\nno final newline"
	if string(got) != want {
		t.Errorf("written message:\n%q\nwant:\n%q", got, want)
	}

	// A rejected message is not queued, so not written; a default-config
	// reject still exits 2.
	r = run(t, "scan", "--out", outDir, rejected)
	check(t, r, cli.ExitReject, nil, nil)
	if _, err := os.Stat(filepath.Join(outDir, "exe.eml")); !os.IsNotExist(err) {
		t.Errorf("rejected message was written (stat: %v)", err)
	}

	// Two inputs with the same base name would overwrite each other.
	other := filepath.Join(t.TempDir(), "tagged.eml")
	if err := os.WriteFile(other, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, "scan", "--out", t.TempDir(), in, other)
	check(t, r, cli.ExitError, nil, []string{"would both be written to"})
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
	}{
		{name: "embedded default", args: []string{"config", "check"}, code: cli.ExitAccept,
			stdout: []string{"(embedded default config): OK; plugins enabled: contentfilter",
				"server: deliver_at_reception = true: a message for local Maildirs only is delivered before the 250"}},
		{name: "deliver_at_reception off", args: []string{"config", "check", "testdata/spool-always.toml"}, code: cli.ExitAccept,
			stdout: []string{"server: deliver_at_reception = false: every message is spooled"}},
		{name: "unknown key", args: []string{"config", "check", "testdata/unknown-key.toml"}, code: cli.ExitError,
			stderr: []string{`testdata/unknown-key.toml:5:1: plugins.contentfilter: unknown key "max_part"`, "plugin contentfilter accepts:", "max_parts"}},
		{name: "wrong type", args: []string{"config", "check", "testdata/wrong-type.toml"}, code: cli.ExitError,
			stderr: []string{"testdata/wrong-type.toml:5", "max_parts", "string"}},
		{name: "plugin not compiled in", args: []string{"config", "check", "testdata/not-compiled.toml"}, code: cli.ExitError,
			stderr: []string{`enables "greylisting", which is not compiled into this binary`, "compiled in: ", "contentfilter", "plugins.yaml", "make build"}},
		{name: "legacy directory warns", args: []string{"config", "check", "testdata/legacy-directory.toml"}, code: cli.ExitAccept,
			stdout: []string{`warning: testdata/legacy-directory.toml: plugins.directory = "/app/plugins" is ignored: plugins are compiled into the binary`, "OK; plugins enabled: contentfilter"}},
		{name: "bad duration after the same value", args: []string{"config", "check", "testdata/duration-same-value.toml"}, code: cli.ExitError,
			stderr: []string{`testdata/duration-same-value.toml:6:11: plugins.contentfilter.timeout: invalid duration "soon"`}},
		{name: "plugin validation", args: []string{"config", "check", "testdata/bad-regexp.toml"}, code: cli.ExitError,
			stderr: []string{`body_rules[0] (rule "casino"): pattern "(casino": error parsing regexp`}},
		{name: "missing file", args: []string{"config", "check", "testdata/nosuch.toml"}, code: cli.ExitError,
			stderr: []string{"read config", "nosuch.toml"}},
		{name: "too many arguments", args: []string{"config", "check", "a", "b"}, code: cli.ExitError, stderr: []string{"usage: elemta config check"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, tt.args...), tt.code, tt.stdout, tt.stderr)
		})
	}
}

// TestSeedConfig loads the original plugin module's config example as written.
func TestSeedConfig(t *testing.T) {
	var missing []string
	for _, name := range []string{"clamav", "rspamd", "dkim", "spf", "dmarc"} {
		if _, ok := pluginhost.Lookup(name); !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Skipf("the seed config enables %s, not compiled into this test binary yet (add them to plugins.yaml and run make generate)", strings.Join(missing, ", "))
	}
	check(t, run(t, "config", "check", "testdata/seed.toml"), cli.ExitAccept,
		[]string{"warning: testdata/seed.toml: plugins.directory", "OK; plugins enabled: clamav, rspamd, dkim, spf, dmarc"}, nil)
}

func TestPlugins(t *testing.T) {
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
		rows           map[string]string // plugins list: name -> ENABLED column
	}{
		{name: "list", args: []string{"plugins", "list"}, code: cli.ExitAccept,
			stdout: []string{"NAME", "ENABLED", "filter", "post-reception", "github.com/elemta/elemta/plugins/contentfilter"},
			rows:   map[string]string{"contentfilter": "yes", "testheaders": "no"}},
		{name: "list with config", args: []string{"plugins", "list", "--config", "testdata/verdicts.toml"}, code: cli.ExitAccept,
			stdout: []string{"config: testdata/verdicts.toml"}, rows: map[string]string{"contentfilter": "yes", "testheaders": "yes"}},
		{name: "test passes", args: []string{"plugins", "test", "contentfilter"}, code: cli.ExitAccept,
			stdout: []string{"build and start", "health check", "self-test at post-reception  ok   accept", "PASS"}},
		{name: "test fails", args: []string{"plugins", "test", "--config", "testdata/failing.toml", "testheaders"}, code: cli.ExitError,
			stdout: []string{"self-test at pre-queue       FAIL plugin testheaders: backend unreachable", "FAIL"}},
		{name: "test of a plugin not compiled in", args: []string{"plugins", "test", "nosuch"}, code: cli.ExitError,
			stderr: []string{`no plugin "nosuch" is compiled into this binary (compiled in: `, "contentfilter"}},
		{name: "test of a plugin with invalid config", args: []string{"plugins", "test", "--config", "testdata/bad-regexp.toml", "contentfilter"}, code: cli.ExitError,
			stderr: []string{`rule "casino"`}},
		{name: "version", args: []string{"version"}, code: cli.ExitAccept, stdout: []string{"elemta ", "plugin contentfilter  1.0.0  github.com/elemta/elemta"}},
		{name: "unknown command", args: []string{"plugins", "frobnicate"}, code: cli.ExitError, stderr: []string{`unknown command "plugins frobnicate"`, "usage:"}},
		{name: "no command", args: nil, code: cli.ExitError, stderr: []string{"usage:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			check(t, r, tt.code, tt.stdout, tt.stderr)
			for name, enabled := range tt.rows {
				found := false
				for _, line := range strings.Split(r.stdout, "\n") {
					if f := strings.Fields(line); len(f) > 1 && f[0] == name {
						found = true
						if f[1] != enabled {
							t.Errorf("plugin %s: ENABLED %s, want %s", name, f[1], enabled)
						}
					}
				}
				if !found {
					t.Errorf("plugin %s not listed:\n%s", name, r.stdout)
				}
			}
		})
	}
}

func TestPluginsListJSON(t *testing.T) {
	r := run(t, "plugins", "list", "--json")
	var list []struct {
		Name, Package, Module string
		Types, Stages         []string
		Enabled               bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("decode: %v\n%s", err, r.stdout)
	}
	found := false
	for _, p := range list {
		if p.Name == "contentfilter" {
			found = true
			if !p.Enabled || p.Package != "github.com/elemta/elemta/plugins/contentfilter" || p.Types[0] != "filter" || p.Stages[0] != "post-reception" {
				t.Errorf("contentfilter entry %+v", p)
			}
		}
	}
	if !found {
		t.Errorf("contentfilter not listed: %s", r.stdout)
	}
}

func TestManifestMismatch(t *testing.T) {
	var out, errOut bytes.Buffer
	code := cli.MainIO(context.Background(), []string{"version"}, []string{"contentfilter", "forgotten"}, &out, &errOut)
	if code != cli.ExitError || !strings.Contains(errOut.String(), "plugins.yaml selects forgotten but no package registered that name") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// TestMaildirMigrate: `elemta maildir migrate` moves what an earlier
// version named by other rules, says what it leaves, and --dry-run moves
// nothing.
func TestMaildirMigrate(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, files ...string) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			require.NoError(t, os.MkdirAll(filepath.Join(root, rel, sub), 0o700))
		}
		for _, f := range files {
			require.NoError(t, os.WriteFile(filepath.Join(root, rel, f), []byte(f), 0o600))
		}
	}
	mk("example.org/Alice", "cur/1:2,S")
	mk("bücher.example/user", "new/2")
	mk("example.org/Carol", "new/3")
	mk("example.org/carol", "new/3") // the same name on both sides: left
	cfg := filepath.Join(t.TempDir(), "elemta.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("[server]\nmaildir_root = %q\n", root)), 0o600))

	r := run(t, "maildir", "migrate", "--config", cfg, "--dry-run")
	check(t, r, cli.ExitAccept, []string{filepath.Join(root, "example.org/Alice") + " -> " + filepath.Join(root, "example.org/alice")}, nil)
	assert.DirExists(t, filepath.Join(root, "example.org/Alice"), "--dry-run moves nothing")

	r = run(t, "maildir", "migrate", "--config", cfg)
	check(t, r, cli.ExitError, []string{
		filepath.Join(root, "example.org/Alice") + " -> " + filepath.Join(root, "example.org/alice") + ": renamed",
		filepath.Join(root, "bücher.example/user") + " -> " + filepath.Join(root, "xn--bcher-kva.example/user") + ": renamed",
		filepath.Join(root, "example.org/Carol") + " -> " + filepath.Join(root, "example.org/carol") + ": 0 messages moved",
		"left in " + filepath.Join(root, "example.org/Carol"), "new/3",
	}, nil)
	assert.FileExists(t, filepath.Join(root, "example.org/alice/cur/1:2,S"))
	assert.FileExists(t, filepath.Join(root, "xn--bcher-kva.example/user/new/2"))

	require.NoError(t, os.RemoveAll(filepath.Join(root, "example.org/Carol")))
	r = run(t, "maildir", "migrate", "--config", cfg)
	check(t, r, cli.ExitAccept, []string{"every Maildir has the name delivery gives it"}, nil)
}
