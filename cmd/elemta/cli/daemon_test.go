package cli_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine to write
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// startDaemon writes config to DIR/elemta.toml and runs the long-running
// command args (`serve`, `milter`, with global flags before it) with
// `--config` that file in this process until the test ends: then its
// context is cancelled and it must exit 0 within 10 s. It returns once
// every address in listen accepts connections, with the command's
// standard error and the config file's path.
func startDaemon(t *testing.T, dir, config string, args []string, listen ...string) (*syncBuffer, string) {
	t.Helper()
	cfgFile := filepath.Join(dir, "elemta.toml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &syncBuffer{}
	argv := append(append([]string(nil), args...), "--config", cfgFile)
	go func() {
		done <- cli.MainIO(ctx, argv, gen.Manifest, &bytes.Buffer{}, stderr)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-done:
			if code != cli.ExitAccept {
				t.Errorf("%v exited %d: %s", args, code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%v did not stop within 10s of cancellation", args)
		}
	})
	for _, addr := range listen {
		waitListening(t, addr, done)
	}
	return stderr, cfgFile
}

// waitLog polls the daemon's log until it holds want (a line written
// after the listeners are up, such as "elemta serve started"), failing
// after 10 s.
func waitLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 10s:\n%s", want, log.String())
		}
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
			t.Fatalf("the command exited with %d before listening on %s", code, addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
