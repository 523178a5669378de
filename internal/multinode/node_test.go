package multinode_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// elemtaBinary builds ./cmd/elemta once (without the race detector) for
// every test of the package.
func elemtaBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "elemta-multinode")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "elemta")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, "github.com/elemta/elemta/cmd/elemta").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// node is one running `elemta serve`.
type node struct {
	name string
	addr string
	dir  string
	cmd  *exec.Cmd

	mu   sync.Mutex
	logs bytes.Buffer
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startNode runs `elemta serve` on 127.0.0.1:0 with the plugin tables
// and the [store] table given, and stops it (SIGTERM) at clean-up.
func startNode(t *testing.T, name, plugins string) *node {
	t.Helper()
	bin := elemtaBinary(t)
	dir := t.TempDir()
	// [admin] off: its default 127.0.0.1:8025 is one port for both nodes.
	cfg := plugins + fmt.Sprintf("\n[server]\nlisten = \"127.0.0.1:0\"\nhostname = %q\nspool_dir = %q\nmaildir_root = %q\nshutdown_timeout = \"5s\"\nretry_base = \"1s\"\n\n[admin]\nenabled = false\n",
		name+".multinode.test", filepath.Join(dir, "spool"), filepath.Join(dir, "mail"))
	file := filepath.Join(dir, "elemta.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "config", "check", file).CombinedOutput(); err != nil {
		t.Fatalf("config check %s: %v\n%s\n%s", name, err, out, cfg)
	}
	n := &node{name: name, dir: dir}
	n.cmd = exec.Command(bin, "-log-level", "info", "serve", "--config", file)
	n.cmd.Dir = dir
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, n.log())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			n.mu.Lock()
			if n.logs.Len() < 256<<10 {
				n.logs.WriteString(sc.Text() + "\n")
			}
			n.mu.Unlock()
		}
	}()
	select {
	case n.addr = <-addr:
		return n
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start:\n%s", name, n.log())
		return nil
	}
}

func (n *node) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

// delivered counts the messages in rcpt's Maildir (user@domain).
func (n *node) delivered(rcpt string) int {
	local, domain, _ := strings.Cut(rcpt, "@")
	files, _ := os.ReadDir(filepath.Join(n.dir, "mail", domain, local, "new"))
	return len(files)
}

// reply is the outcome of one SMTP transaction: the first refusal, or the
// final 250 after DATA.
type reply struct {
	code int
	text string // "4.7.1 Rate limit ..." (enhanced code and text)
	step string // "connect", "MAIL", "RCPT", "DATA" or "" when accepted
}

func (r reply) String() string { return fmt.Sprintf("%s %d %s", r.step, r.code, r.text) }

// send runs one transaction from sender to rcpt with body (CRLF lines, no
// lone dots); a network failure is returned as an error.
func send(addr, sender, rcpt string, body []byte) (reply, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(conn)
	expect := func(step string, want int) (reply, bool, error) {
		code, text, err := c.ReadResponse(0)
		var perr *textproto.Error
		if err != nil && !errorsAs(err, &perr) {
			return reply{}, false, fmt.Errorf("%s: %w", step, err)
		}
		if code/100 != want/100 {
			return reply{code: code, text: text, step: step}, false, nil
		}
		return reply{code: code, text: text}, true, nil
	}
	steps := []struct {
		step, cmd string
		want      int
	}{
		{"connect", "", 220}, {"EHLO", "EHLO client.multinode.test", 250},
		{"MAIL", "MAIL FROM:<" + sender + ">", 250}, {"RCPT", "RCPT TO:<" + rcpt + ">", 250}, {"DATA", "DATA", 354},
	}
	for _, s := range steps {
		if s.cmd != "" {
			if err := c.PrintfLine("%s", s.cmd); err != nil {
				return reply{}, err
			}
		}
		r, ok, err := expect(s.step, s.want)
		if err != nil || !ok {
			return r, err
		}
	}
	w := c.DotWriter()
	if _, err := w.Write(body); err != nil {
		return reply{}, err
	}
	if err := w.Close(); err != nil {
		return reply{}, err
	}
	r, ok, err := expect("DATA", 250)
	if err != nil || !ok {
		return r, err
	}
	_ = c.PrintfLine("QUIT")
	return reply{code: 250, text: r.text}, nil
}

func errorsAs(err error, target **textproto.Error) bool {
	e, ok := err.(*textproto.Error)
	if ok {
		*target = e
	}
	return ok
}

func message(subject string) []byte {
	return []byte("From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		strings.ReplaceAll(subject, " ", ".") + "@multinode.test>\r\n\r\nhello\r\n")
}

// clamdCounter forwards a loopback port to clamd and counts the INSTREAM
// scans and VERSION commands that pass through it.
type clamdCounter struct {
	addr            string
	scans, versions atomic.Int64
	ln              net.Listener
	wg              sync.WaitGroup
	mu              sync.Mutex
	conns           []net.Conn
}

func newClamdCounter(t *testing.T, target string) *clamdCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &clamdCounter{addr: ln.Addr().String(), ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { p.count(c, up); up.Close() })
			p.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// count copies client bytes to clamd, counting the commands ("zINSTREAM\0",
// "zVERSION\0") even when split across reads.
func (p *clamdCounter) count(c, up net.Conn) {
	scans := &matcher{pat: []byte("INSTREAM"), n: &p.scans}
	versions := &matcher{pat: []byte("VERSION"), n: &p.versions}
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			scans.feed(buf[:n])
			versions.feed(buf[:n])
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// matcher counts pat in a stream: it keeps the last len(pat)-1 bytes, so a
// match split between reads counts once and none counts twice.
type matcher struct {
	pat  []byte
	tail []byte
	n    *atomic.Int64
}

func (m *matcher) feed(b []byte) {
	data := append(m.tail, b...)
	m.n.Add(int64(bytes.Count(data, m.pat)))
	k := max(0, len(data)-(len(m.pat)-1))
	m.tail = append([]byte(nil), data[k:]...)
}

// rateLimitTable is the [plugins.ratelimit] table both multi-node tests
// share: count messages per sender per minute in Redis under prefix,
// tempfail while Redis cannot answer.
func rateLimitTable(prefix string, count int) string {
	return fmt.Sprintf(`[plugins.ratelimit]
store = "redis"
redis_prefix = %q
exempt_networks = []
max_sessions_per_client = 0
on_error = "tempfail"
[[plugins.ratelimit.limits]]
name = "per-sender"
key = ["sender"]
count = %d
window = "1m"
on = "mail"
`, prefix, count)
}
