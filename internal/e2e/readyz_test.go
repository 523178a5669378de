package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/pkg/testenv"
)

// clamdProc is a clamd of the test's own (never the shared testenv's,
// which other tests use), on a loopback port, with the EICAR signature.
type clamdProc struct {
	t    *testing.T
	bin  string
	conf string
	addr string
	cmd  *exec.Cmd
	exit chan error
}

func newClamd(t *testing.T) *clamdProc {
	bin := testenv.RequireTool(t, "clamd")
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	require.NoError(t, os.MkdirAll(db, 0o755))
	var hex strings.Builder
	for _, b := range []byte(eicar) {
		fmt.Fprintf(&hex, "%02x", b)
	}
	require.NoError(t, os.WriteFile(filepath.Join(db, "eicar.ndb"), []byte("Eicar-Test-Signature:0:*:"+hex.String()+"\n"), 0o644))
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "clamd.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("Foreground yes\nDatabaseDirectory %s\nTCPSocket %s\nTCPAddr 127.0.0.1\nLogFile %s\n",
		db, port, filepath.Join(dir, "clamd.log"))), 0o644))
	c := &clamdProc{t: t, bin: bin, conf: conf, addr: addr}
	t.Cleanup(c.stop)
	return c
}

// start runs clamd and waits (at most 60 s) until it answers PING.
func (c *clamdProc) start() {
	c.t.Helper()
	c.cmd = exec.Command(c.bin, "-c", c.conf)
	c.exit = make(chan error, 1)
	require.NoError(c.t, c.cmd.Start())
	go func(cmd *exec.Cmd, exit chan error) { exit <- cmd.Wait() }(c.cmd, c.exit)
	deadline := time.Now().Add(60 * time.Second)
	for !ping(c.addr) {
		select {
		case err := <-c.exit:
			c.t.Fatalf("clamd exited: %v", err)
		default:
		}
		require.True(c.t, time.Now().Before(deadline), "clamd does not answer PING on %s after 60 s", c.addr)
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends clamd and waits for it.
func (c *clamdProc) stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exit:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exit
	}
	c.cmd = nil
}

func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return false
	}
	line, _ := bufio.NewReader(conn).ReadString(0)
	return strings.HasPrefix(line, "PONG")
}

// TestReadyzFollowsClamd: /readyz is ready while clamd answers, turns
// not-ready within ready_interval (plus the check's own time) once clamd
// is stopped, naming clamav, and ready again when clamd is back.
func TestReadyzFollowsClamd(t *testing.T) {
	clamd := newClamd(t)
	clamd.start()
	dir := t.TempDir()
	t.Chdir(dir)
	smtpAddr, adminAddr := freeAddr(t), freeAddr(t)
	const interval = 500 * time.Millisecond
	cfgFile := filepath.Join(dir, "elemta.toml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
[plugins]
plugins = ["clamav"]
[plugins.clamav]
servers = [%q]
timeout = "5s"
connect_timeout = "1s"
[dns]
offline = true
[server]
listen = %q
spool_dir = %q
maildir_root = %q
shutdown_timeout = 5
[admin]
listen = %q
ready_interval = %q
ready_timeout = "3s"
`, clamd.addr, smtpAddr, filepath.Join(dir, "spool"), filepath.Join(dir, "mail"), adminAddr, interval.String())), 0o644))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &lockedBuffer{}
	go func() {
		done <- cli.MainIO(ctx, []string{"serve", "--config", cfgFile}, gen.Manifest, io.Discard, stderr)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop within 15s")
		}
	})
	c := &http.Client{Timeout: 10 * time.Second}
	readyz := func() (int, admin.Readiness) {
		resp, err := c.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return 0, admin.Readiness{}
		}
		defer resp.Body.Close()
		var r admin.Readiness
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	// waitFor polls /readyz until it answers code, within limit.
	waitFor := func(code int, limit time.Duration) (admin.Readiness, time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			got, r := readyz()
			if got == code {
				return r, time.Since(start)
			}
			select {
			case c := <-done:
				t.Fatalf("serve exited %d:\n%s", c, stderr.String())
			default:
			}
			require.Less(t, time.Since(start), limit, "/readyz still answers %d, want %d", got, code)
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK, 20*time.Second)

	clamd.stop()
	// At most one interval of cached answers, then one check (bounded by
	// connect_timeout, well inside ready_timeout).
	r, took := waitFor(http.StatusServiceUnavailable, interval+3*time.Second+2*time.Second)
	assert.False(t, r.Plugins["clamav"].OK)
	assert.NotEmpty(t, r.Plugins["clamav"].Error)
	assert.True(t, r.Spool.OK)
	t.Logf("not ready %v after clamd stopped", took)

	clamd.start()
	r, took = waitFor(http.StatusOK, interval+5*time.Second)
	assert.True(t, r.Plugins["clamav"].OK)
	t.Logf("ready again %v after clamd answered", took)
}
