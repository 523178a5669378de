package serve

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type child struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
}

// startChild runs this test binary as an `elemta serve` subprocess (see
// TestMain) on spoolDir and mailDir and waits for its address.
// env adds variables (ELEMTA_CHILD_PLUGINS: the plugins, default servetest).
func startChild(t *testing.T, spoolDir, mailDir string, env ...string) *child {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ELEMTA_SERVE_CHILD=1", "ELEMTA_SPOOL="+spoolDir, "ELEMTA_MAIL="+mailDir, "ELEMTA_ADDR_FILE="+addrFile)
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, stderr: &stderr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(addrFile)
		c.addr = string(b)
		return err == nil
	}, 30*time.Second, 5*time.Millisecond, "child did not start: %s", &stderr)
	return c
}

// sendOne sends one message to two recipients; nil means the server
// answered 250 to the end of DATA.
func sendOne(addr, msgID string, body []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return err
	}
	if err := c.Mail("sender@example.org"); err != nil {
		return err
	}
	for _, r := range []string{"u1@example.net", "u2@example.net"} {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "Message-ID: %s\r\nSubject: durability\r\n\r\n%s", msgID, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}

// TestKill9Durability sends messages from several clients while the
// server is SIGKILLed at random points, restarts it each time, and checks
// that every message that got a 250 is delivered exactly once to each
// recipient, intact, and that nothing unacknowledged is delivered twice:
// through the spool (servetest runs at pre-delivery), and delivered at
// reception (no plugin: no spool entry at all).
func TestKill9Durability(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess kill test")
	}
	t.Run("spool", func(t *testing.T) { kill9(t, false) })
	t.Run("at reception", func(t *testing.T) { kill9(t, true) })
}

func kill9(t *testing.T, atReception bool) {
	var env []string
	if atReception {
		env = []string{"ELEMTA_CHILD_PLUGINS="}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	dir := t.TempDir()
	spoolDir, mailDir := filepath.Join(dir, "spool"), filepath.Join(dir, "mail")

	const rounds, clients = 6, 4
	var (
		mu        sync.Mutex
		acked     = map[string][32]byte{}
		attempted = map[string][32]byte{}
		seq       atomic.Int64
	)
	for round := range rounds {
		ch := startChild(t, spoolDir, mailDir, env...)
		target := int64(3 + rng.IntN(25))
		var roundAcked atomic.Int64
		reached := make(chan struct{})
		var once sync.Once
		stop := make(chan struct{})
		var wg sync.WaitGroup
		bodies := make([][]byte, clients)
		for i := range bodies {
			raw := make([]byte, 200+rng.IntN(6000))
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			bodies[i] = raw
		}
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("<r%d-c%d-%d-%d@example.org>", round, c, n, seq.Add(1))
					enc := base64.StdEncoding.EncodeToString(append(bodies[c], id...))
					var body strings.Builder
					for len(enc) > 76 {
						body.WriteString(enc[:76] + "\r\n")
						enc = enc[76:]
					}
					body.WriteString(enc + "\r\n")
					h := sha256.Sum256([]byte(body.String()))
					mu.Lock()
					attempted[id] = h
					mu.Unlock()
					if err := sendOne(ch.addr, id, []byte(body.String())); err != nil {
						select {
						case <-stop:
							return
						default:
						}
						t.Errorf("round %d: send before the kill failed: %v", round, err)
						return
					}
					mu.Lock()
					acked[id] = h
					mu.Unlock()
					if roundAcked.Add(1) >= target {
						once.Do(func() { close(reached) })
					}
				}
			}()
		}
		select {
		case <-reached:
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: only %d of %d messages acknowledged in time; child: %s", round, roundAcked.Load(), target, ch.stderr)
		}
		close(stop) // before the kill: from here on send errors are expected
		require.NoError(t, ch.cmd.Process.Signal(syscall.SIGKILL))
		_ = ch.cmd.Wait()
		wg.Wait()
		t.Logf("round %d: killed after %d acknowledged", round, roundAcked.Load())
		if atReception {
			m, err := filepath.Glob(filepath.Join(spoolDir, "queue", "*.json"))
			require.NoError(t, err)
			require.Empty(t, m, "round %d: delivered at reception, nothing spooled", round)
		}
	}

	// A last run drains the spool, then stops gracefully on SIGTERM.
	ch := startChild(t, spoolDir, mailDir, env...)
	require.Eventually(t, func() bool {
		m, _ := filepath.Glob(filepath.Join(spoolDir, "queue", "*.json"))
		return len(m) == 0
	}, 60*time.Second, 10*time.Millisecond, "spool not drained; child: %s", ch.stderr)
	require.NoError(t, ch.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, ch.cmd.Wait(), "graceful exit; child: %s", ch.stderr)
	tmp, err := os.ReadDir(filepath.Join(spoolDir, "tmp"))
	require.NoError(t, err)
	assert.Empty(t, tmp)

	for _, rcpt := range []string{"u1", "u2"} {
		got := map[string]int{}
		dir := filepath.Join(mailDir, "example.net", rcpt, "new")
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(t, err)
			s := string(b)
			_, body, ok := strings.Cut(s, "\r\n\r\n")
			require.True(t, ok, "no header/body separator in %s", e.Name())
			id := headerValue(s, "Message-ID")
			want, known := attempted[id]
			require.True(t, known, "%s: delivered a message nobody sent: %q", rcpt, id)
			assert.Equal(t, want, sha256.Sum256([]byte(body)), "%s: body of %s changed", rcpt, id)
			got[id]++
		}
		for id, n := range got {
			assert.Equal(t, 1, n, "%s: %s delivered %d times", rcpt, id, n)
		}
		for id := range acked {
			assert.Equal(t, 1, got[id], "%s: acknowledged %s delivered %d times", rcpt, id, got[id])
		}
		t.Logf("%s: %d acknowledged, %d attempted, %d delivered", rcpt, len(acked), len(attempted), len(got))
	}
}

func headerValue(msg, name string) string {
	hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, line := range strings.Split(hdr, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
