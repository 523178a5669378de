package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServeAndSend runs `elemta serve` and submits the example messages
// with `elemta send`: the clean one lands in the Maildir, the one with an
// .exe attachment is refused with the content filter's 550.
func TestServeAndSend(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "elemta.toml")
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
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var serveErr bytes.Buffer
	go func() {
		done <- cli.MainIO(ctx, []string{"serve", "--config", cfgFile}, gen.Manifest, &bytes.Buffer{}, &serveErr)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-done:
			if code != cli.ExitAccept {
				t.Errorf("serve exited %d: %s", code, serveErr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancellation")
		}
	})
	waitListening(t, addr, done)

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

// waitListening polls addr until it accepts a connection, failing if the
// server exits first or 10 s pass.
func waitListening(t *testing.T, addr string, done <-chan int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before listening", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendUsage(t *testing.T) {
	check(t, run(t, "send", "x.eml"), cli.ExitError, nil, []string{"usage: elemta send"})
	check(t, run(t, "send", "--server", freeAddr(t), "--rcpt", "a@b.test", "../../../examples/messages/clean.eml"),
		cli.ExitError, nil, []string{"connect to 127.0.0.1:"})
}
