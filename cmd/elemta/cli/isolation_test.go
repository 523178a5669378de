package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/elemta/elemta/cmd/elemta/cli"
)

// scan and plugins test run an instance with isolation = "process" in its
// worker, with the same verdicts as in-process.
func TestScanAndPluginsTestIsolated(t *testing.T) {
	const rules = "\n[[plugins.contentfilter.attachment_rules]]\nname = \"exe\"\nextensions = [\".exe\"]\naction = \"reject\"\nreply = \"No executables\"\n"
	cfg := filepath.Join(t.TempDir(), "iso.toml")
	if err := os.WriteFile(cfg, []byte("[plugins]\nplugins = [\"contentfilter\"]\n\n[plugins.contentfilter]\nisolation = \"process\"\nmemory_limit = \"128MiB\"\n"+rules), 0o644); err != nil {
		t.Fatal(err)
	}
	check(t, run(t, "scan", "--config", cfg, "testdata/exe.eml"), cli.ExitReject,
		[]string{`attachment "Invoice_88213.pdf.exe"`, "verdict: reject (550 5.7.1 No executables) by contentfilter"}, nil)
	check(t, run(t, "scan", "--config", cfg, "testdata/clean.eml"), cli.ExitAccept, []string{"verdict: accept"}, nil)
	r := run(t, "plugins", "test", "--config", cfg, "contentfilter")
	check(t, r, cli.ExitAccept, []string{"isolation = process", "1 of 1 workers", "memory_limit 128MiB", "PASS"}, nil)
	if !regexp.MustCompile(`pids \[\d+\]`).MatchString(r.stdout) {
		t.Errorf("plugins test names no worker pid:\n%s", r.stdout)
	}
}
