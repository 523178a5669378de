package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rssSlack is the constant of the peak RSS bound: a message of n bytes may
// raise the server's peak resident set by at most 2n + rssSlack over its
// idle baseline (runtime, I/O buffers, the Go collector's granularity).
const rssSlack = 32 << 20

// rssSize is the size of the measured messages, under the default
// max_message_size (50 MiB).
const rssSize = 45 << 20

// TestPeakRSS runs the real binary (built without the race detector, the
// test itself may have it) and reports its peak resident set (VmHWM)
// minus its idle baseline for 45 MB messages streamed by the client:
// body-heavy, header-heavy (refused by the default max_header_size, then
// accepted with the limit raised), 8 body-heavy at once, and the memory of
// 500 idle connections. Each case runs in a fresh server, and counts until
// the message is delivered to its Maildir. A single message above 2x its
// size plus rssSlack fails the test. Figures: BENCHMARKS.md.
func TestPeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary with 45 MB messages")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	bin := buildElemta(t)
	t.Run("body-heavy", func(t *testing.T) {
		s := startElemta(t, bin, "")
		delta := s.measure(t, 1, func() { require.Equal(t, 250, sendStream(t, s.addr, bodyHeavy(rssSize))) })
		report(t, "body-heavy, 1 message", delta, rssSize)
		assert.LessOrEqual(t, delta, int64(2*rssSize+rssSlack), "peak RSS over 2x the message + %d MiB", rssSlack>>20)
	})
	t.Run("header-heavy refused by max_header_size", func(t *testing.T) {
		s := startElemta(t, bin, "")
		delta := s.measure(t, 0, func() { require.Equal(t, 552, sendStream(t, s.addr, headerHeavy(rssSize))) })
		report(t, "header-heavy, default max_header_size (552)", delta, rssSize)
		assert.LessOrEqual(t, delta, int64(rssSlack), "a refused message is never held")
	})
	t.Run("header-heavy accepted", func(t *testing.T) {
		s := startElemta(t, bin, "max_header_size = 67108864\n")
		delta := s.measure(t, 1, func() { require.Equal(t, 250, sendStream(t, s.addr, headerHeavy(rssSize))) })
		report(t, "header-heavy, max_header_size = 64 MiB", delta, rssSize)
		// The parser's own cost is one copy of the header section (the
		// fields' Name and Value are substrings of it, so they never alias
		// the message's buffer) and one registry.HeaderField (56 bytes) a
		// field, at reception and again at delivery. With the default
		// max_header_size both are bounded by 256 KiB and a constant.
		fields := int64(rssSize / headerLine)
		assert.LessOrEqual(t, delta, 2*(2*rssSize+56*fields)+rssSlack, "peak RSS over 2x (the message + its header + 56 B a field) + %d MiB", rssSlack>>20)
	})
	for _, limit := range []string{"", "400MiB"} {
		name := "8 concurrent body-heavy"
		if limit != "" {
			name += ", GOMEMLIMIT=" + limit
		}
		t.Run(name, func(t *testing.T) { eightAtOnce(t, bin, limit) })
	}
	t.Run("500 idle connections", func(t *testing.T) {
		// All from 127.0.0.1: over the default per-client limit (50).
		s := startElemta(t, bin, "max_connections_per_client = 1000\n")
		const n = 500
		before := s.status(t).rss
		conns := make([]*textproto.Conn, 0, n)
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		for range n {
			c := dialEHLO(t, s.addr)
			conns = append(conns, c)
		}
		after := s.status(t).rss
		t.Logf("RSS %-44s %8.1f KiB per connection (%d connections after EHLO, RSS %.1f -> %.1f MiB)",
			"idle connections", float64(after-before)/n/1024, n, mib(before), mib(after))
	})
}

// eightAtOnce sends 8 body-heavy messages at once (360 MiB, within the
// default max_bytes_in_flight) to a server run with GOMEMLIMIT=limit
// (unset when empty).
func eightAtOnce(t *testing.T, bin, limit string) {
	var env []string
	if limit != "" {
		env = append(env, "GOMEMLIMIT="+limit)
	}
	s := startElemta(t, bin, "", env...)
	const n = 8
	delta := s.measure(t, n, func() {
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { codes[i] = sendStream(t, s.addr, bodyHeavy(rssSize)) })
		}
		wg.Wait()
		assert.Equal(t, []int{250, 250, 250, 250, 250, 250, 250, 250}, codes)
	})
	what := "body-heavy, 8 at once"
	if limit != "" {
		what += ", GOMEMLIMIT=" + limit
	}
	report(t, what, delta, n*rssSize)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func report(t *testing.T, what string, delta, size int64) {
	t.Helper()
	t.Logf("RSS %-44s peak over idle %7.1f MiB for %5.1f MiB = %.2fx", what, mib(delta), mib(size), float64(delta)/float64(size))
}

// buildElemta builds ./cmd/elemta with the default plugin set, without
// the race detector, into a temporary directory.
func buildElemta(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "elemta")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/elemta/elemta/cmd/elemta")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type elemta struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startElemta runs `elemta serve` on a config of no plugins (the
// receiver's own cost) plus extra [server] lines, on 127.0.0.1:0, and
// stops it at cleanup.
func startElemta(t *testing.T, bin, extra string, env ...string) *elemta {
	t.Helper()
	dir := t.TempDir()
	// [admin] off: its default 127.0.0.1:8025 is one port for every server
	// the test packages start at once.
	cfg := fmt.Sprintf("[plugins]\nplugins = []\n\n[server]\nlisten = \"127.0.0.1:0\"\nhostname = \"mx.rss.test\"\nspool_dir = %q\nmaildir_root = %q\nshutdown_timeout = \"5s\"\n%s\n[admin]\nenabled = false\n",
		filepath.Join(dir, "spool"), filepath.Join(dir, "mail"), extra)
	cfgFile := filepath.Join(dir, "elemta.toml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
	cmd := exec.Command(bin, "-log-level", "info", "serve", "--config", cfgFile)
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			mu.Lock()
			if logs.Len() < 64<<10 {
				logs.WriteString(sc.Text() + "\n")
			}
			mu.Unlock()
		}
	}()
	select {
	case a := <-addr:
		return &elemta{cmd: cmd, addr: a, dir: dir}
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("elemta serve did not start:\n%s", logs.String())
		return nil
	}
}

type procStatus struct{ rss, hwm int64 }

// status reads VmRSS and VmHWM (bytes) of the server.
func (e *elemta) status(t *testing.T) procStatus {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	require.NoError(t, err)
	var st procStatus
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		require.NoError(t, err, line)
		if k == "VmRSS" {
			st.rss = kb << 10
		} else {
			st.hwm = kb << 10
		}
	}
	return st
}

// measure runs send against the idle server, waits until delivered
// messages are in the Maildir and the queue is empty, and returns the
// peak RSS (VmHWM) minus the idle RSS before.
func (e *elemta) measure(t *testing.T, delivered int, send func()) int64 {
	t.Helper()
	idle := e.status(t)
	send()
	box := filepath.Join(e.dir, "mail", "example.net", "rss", "new")
	queue := filepath.Join(e.dir, "spool", "queue")
	require.Eventually(t, func() bool {
		n, _ := os.ReadDir(box)
		q, _ := os.ReadDir(queue)
		return len(n) == delivered && len(q) == 0
	}, 2*time.Minute, 20*time.Millisecond, "messages not delivered")
	return e.status(t).hwm - idle.rss
}

// A message generator writes a message of about size bytes to w, a block
// at a time, without holding it; no line starts with a dot.
type generator func(w *bufio.Writer) error

// bodyHeavy is a short header and size bytes of 78-byte body lines.
func bodyHeavy(size int) generator {
	return func(w *bufio.Writer) error {
		if _, err := w.WriteString("From: a@example.org\r\nTo: rss@example.net\r\nSubject: body-heavy\r\nMessage-ID: <body@rss.test>\r\n\r\n"); err != nil {
			return err
		}
		return repeat(w, strings.Repeat("The quick brown fox jumps over the lazy dog, 0123456789 abcdefghijklmnopqr\r\n", 840), size)
	}
}

// headerLine is the length of headerHeavy's fields.
const headerLine = 78

// headerHeavy is size bytes of 78-byte header fields and a short body.
func headerHeavy(size int) generator {
	return func(w *bufio.Writer) error {
		var block strings.Builder
		for i := range 840 {
			fmt.Fprintf(&block, "X-Trace-%04d: the quick brown fox jumps over the lazy dog 0123456789 abcdefg\r\n", i)
		}
		if block.Len() != 840*headerLine {
			return fmt.Errorf("header line of %d bytes, want %d", block.Len()/840, headerLine)
		}
		if err := repeat(w, block.String(), size); err != nil {
			return err
		}
		_, err := w.WriteString("Subject: header-heavy\r\n\r\nbody\r\n")
		return err
	}
}

func repeat(w *bufio.Writer, block string, size int) error {
	for n := 0; n < size; n += len(block) {
		if _, err := w.WriteString(block); err != nil {
			return err
		}
	}
	return nil
}

func dialEHLO(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(2*time.Minute)))
	c := textproto.NewConn(conn)
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("EHLO client.rss.test"))
	_, _, err = c.ReadResponse(250)
	require.NoError(t, err)
	return c
}

// sendStream sends one message from gen and returns the reply code to
// the end of DATA.
func sendStream(t *testing.T, addr string, gen generator) int {
	t.Helper()
	c := dialEHLO(t, addr)
	defer c.Close()
	for _, cmd := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<rss@example.net>"} {
		require.NoError(t, c.PrintfLine("%s", cmd))
		_, _, err := c.ReadResponse(250)
		require.NoError(t, err, cmd)
	}
	require.NoError(t, c.PrintfLine("DATA"))
	_, _, err := c.ReadResponse(354)
	require.NoError(t, err)
	require.NoError(t, gen(c.W))
	_, err = c.W.WriteString(".\r\n")
	require.NoError(t, err)
	require.NoError(t, c.W.Flush())
	code, msg, err := c.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatalf("end of DATA: %v", err)
	}
	t.Logf("end of DATA: %d %s", code, msg)
	_ = c.PrintfLine("QUIT")
	return code
}
