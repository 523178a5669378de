package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/internal/admin"
)

// TestServeAdminCLI runs `elemta serve` with the admin listener and
// drives it with `plugins metrics|list|test --server` and `queue ... --server`;
// SIGUSR1 reopens the plugin log files after a rename.
func TestServeAdminCLI(t *testing.T) {
	dir := t.TempDir()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	logDir := filepath.Join(dir, "logs", "plugins")
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("cli-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[plugins]
plugins = ["contentfilter"]
[[plugins.contentfilter.attachment_rules]]
name = "executables"
extensions = ["exe"]
reply = "Executable attachments are not accepted"
[server]
listen = %q
spool_dir = %q
maildir_root = %q
shutdown_timeout = 5
[admin]
listen = %q
token_file = %q
[log]
plugin_dir = %q
`, addr, filepath.Join(dir, "spool"), filepath.Join(dir, "mail"), adminAddr, tokFile, logDir)
	serveErr, cfgFile := startDaemon(t, dir, cfg, []string{"-log-level", "info", "serve"}, addr, adminAddr)
	waitLog(t, serveErr, "elemta serve started") // logged once the admin listener is up: it may accept first
	for _, want := range []string{"elemta serve started", "admin=" + adminAddr, "plugins=contentfilter", "config=" + cfgFile} {
		if !strings.Contains(serveErr.String(), want) {
			t.Errorf("the start line lacks %q:\n%s", want, serveErr.String())
		}
	}

	send := func(file string) result {
		return run(t, "send", "--server", addr, "--from", "alice@example.test", "--rcpt", "bob@example.test", file)
	}
	check(t, send("../../../examples/messages/clean.eml"), cli.ExitAccept, []string{"250 "}, nil)
	check(t, send("../../../examples/messages/invoice-exe-attachment.eml"), cli.ExitReject, []string{"550"}, nil)

	// Without the token: refused.
	check(t, run(t, "plugins", "metrics", "--server", adminAddr), cli.ExitError, nil, []string{"401", "bearer token"})

	r := run(t, "plugins", "metrics", "--server", adminAddr, "--token-file", tokFile, "--json")
	check(t, r, cli.ExitAccept, nil, nil)
	var ps []admin.PluginStatus
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if len(ps) != 1 || ps[0].Name != "contentfilter" || ps[0].Calls != 2 || ps[0].Rejects != 1 {
		t.Errorf("plugins metrics --server: %+v, want contentfilter with 2 calls, 1 reject", ps)
	}
	check(t, run(t, "plugins", "list", "--server", adminAddr, "--token-file", tokFile), cli.ExitAccept,
		[]string{"server: " + adminAddr, "contentfilter"}, nil)
	check(t, run(t, "plugins", "test", "--server", adminAddr, "--token-file", tokFile, "contentfilter"), cli.ExitAccept,
		[]string{"health check", "PASS"}, nil)
	check(t, run(t, "plugins", "test", "--server", adminAddr, "--token-file", tokFile, "spf"), cli.ExitError,
		nil, []string{"404", "spf is not loaded"})

	// The queue, through the config's [admin] listen and token_file.
	check(t, run(t, "queue", "list", "--config", cfgFile), cli.ExitAccept, []string{"ID", "entries"}, nil)
	r = run(t, "queue", "list", "--server", adminAddr, "--token-file", tokFile, "--json")
	check(t, r, cli.ExitAccept, nil, nil)
	var ql admin.QueueList
	if err := json.Unmarshal([]byte(r.stdout), &ql); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	check(t, run(t, "queue", "show", "--config", cfgFile, "0000nosuchid"), cli.ExitError, nil, []string{"404"})
	check(t, run(t, "queue", "hold", "--config", cfgFile, "0000nosuchid"), cli.ExitError, nil, []string{"404"})
	check(t, run(t, "queue", "delete", "--config", cfgFile, "0000nosuchid"), cli.ExitError, nil, []string{"add --yes"})
	check(t, run(t, "queue", "delete", "--config", cfgFile, "--yes", "0000nosuchid"), cli.ExitError, nil, []string{"404"})
	check(t, run(t, "queue", "flush", "--config", cfgFile), cli.ExitAccept, []string{"due now"}, nil)
	check(t, run(t, "queue", "explode", "--config", cfgFile), cli.ExitError, nil, []string{"unknown command"})

	// logrotate: rename the plugin's file, SIGUSR1, a new file appears.
	logFile := filepath.Join(logDir, "contentfilter.log")
	if _, err := os.Stat(logFile); err != nil {
		t.Fatalf("plugin log file: %v", err)
	}
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, serveErr, "plugin log files reopened") // after SIGUSR1
	if _, err := os.Stat(logFile); err != nil {
		t.Errorf("SIGUSR1 did not reopen %s: %v", logFile, err)
	}
}
