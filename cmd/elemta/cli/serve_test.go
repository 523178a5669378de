package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/elemta/elemta/cmd/elemta/cli"
)

// TestServeAndSend runs `elemta serve` and submits the example messages
// with `elemta send`: the clean one lands in the Maildir, the one with an
// .exe attachment is refused with the content filter's 550.
func TestServeAndSend(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
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
enabled = false
`, addr, filepath.Join(dir, "spool"), filepath.Join(dir, "mail"))
	startDaemon(t, dir, cfg, []string{"serve"}, addr)

	send := func(file string) result {
		return run(t, "send", "--server", addr, "--from", "alice@example.test", "--rcpt", "bob@example.test", file)
	}
	check(t, send("../../../examples/messages/clean.eml"), cli.ExitAccept, []string{"clean.eml: 250 ", "queued as"}, nil)
	check(t, send("../../../examples/messages/invoice-exe-attachment.eml"), cli.ExitReject,
		[]string{"invoice-exe-attachment.eml: ", "550", "Executable attachments are not accepted"}, nil)

	// Delivery is asynchronous: wait (bounded) for the one accepted message.
	newDir := filepath.Join(dir, "mail", "example.test", "bob", "new")
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(newDir)
		if len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after 10s, want 1", newDir, len(entries))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendUsage(t *testing.T) {
	check(t, run(t, "send", "x.eml"), cli.ExitError, nil, []string{"usage: elemta send"})
	check(t, run(t, "send", "--server", freeAddr(t), "--rcpt", "a@b.test", "../../../examples/messages/clean.eml"),
		cli.ExitError, nil, []string{"connect to 127.0.0.1:"})
}
