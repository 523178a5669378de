package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/cmd/elemta/cli"
	"github.com/elemta/elemta/gen"
	"github.com/elemta/elemta/pkg/store/storetest"
)

// TestReloadKeepsOneStorePool: `elemta serve` with a [store] pool that
// greylist uses. Reloads that leave [store] alone reuse the pool (the
// process's connections to Redis do not grow); one that changes it opens
// a new pool, and the old one stays open for a transaction begun before
// the reload, then is closed with the manager it served.
func TestReloadKeepsOneStorePool(t *testing.T) {
	redisAddr, prefix := storetest.Redis(t)
	_, redisPort, err := net.SplitHostPort(redisAddr)
	require.NoError(t, err)
	dir := t.TempDir()
	smtpAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "elemta.toml")
	write := func(poolSize int) {
		cfg := fmt.Sprintf(`[plugins]
plugins = ["greylist"]
[plugins.greylist]
store = "redis"
redis_prefix = %q
exempt_networks = ["192.0.2.0/24"]
on_error = "reject"
[store]
redis_addr = %q
redis_pool_size = %d
[server]
listen = %q
spool_dir = %q
maildir_root = %q
shutdown_timeout = 5
[admin]
enabled = true
listen = %q
`, prefix, redisAddr, poolSize, smtpAddr, filepath.Join(dir, "spool"), filepath.Join(dir, "mail"), adminAddr)
		require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	}
	write(4)

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
			assert.Equal(t, cli.ExitAccept, code, "serve: %s", serveErr.String())
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancellation")
		}
		assert.Zero(t, redisConns(t, redisPort), "every pool closed at exit")
	})
	waitListening(t, smtpAddr, done)
	waitListening(t, adminAddr, done)

	// greylisted asks the greylist (and so Redis) about a new triplet on
	// session c: 451 from the greylist, not on_error's 554 of a closed pool.
	n := 0
	greylisted := func(c *textproto.Conn) {
		t.Helper()
		n++
		id, err := c.Cmd("RCPT TO:<rcpt%d@example.test>", n)
		require.NoError(t, err)
		c.StartResponse(id)
		code, msg, err := c.ReadResponse(451)
		c.EndResponse(id)
		require.NoError(t, err, "RCPT: %d %s", code, msg)
	}
	session := func() *textproto.Conn {
		c, err := textproto.Dial("tcp", smtpAddr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, _, err = c.ReadResponse(220)
		require.NoError(t, err)
		for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<a@example.org>"} {
			id, err := c.Cmd("%s", cmd)
			require.NoError(t, err)
			c.StartResponse(id)
			_, _, err = c.ReadResponse(250)
			c.EndResponse(id)
			require.NoError(t, err, cmd)
		}
		return c
	}
	quit := func(c *textproto.Conn) {
		id, err := c.Cmd("QUIT")
		require.NoError(t, err)
		c.StartResponse(id)
		_, _, _ = c.ReadResponse(221)
		c.EndResponse(id)
		c.Close()
	}
	reload := func() {
		t.Helper()
		resp, err := http.Post("http://"+adminAddr+"/api/v1/reload", "application/json", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	c := session()
	greylisted(c)
	quit(c)
	base := redisConns(t, redisPort)
	require.Positive(t, base, "the pool holds a connection to Redis")
	for range 5 {
		reload()
		c := session()
		greylisted(c)
		quit(c)
		assert.LessOrEqual(t, redisConns(t, redisPort), base, "an unchanged [store] reuses the pool")
	}

	// A transaction begun before a reload that changes [store] keeps the
	// old pool until it ends.
	old := session()
	greylisted(old)
	write(5)
	reload()
	c = session()
	greylisted(c)
	quit(c)
	greylisted(old) // the old manager's pool still answers
	quit(old)
	require.Eventually(t, func() bool { return redisConns(t, redisPort) <= base }, 10*time.Second, 10*time.Millisecond,
		"the replaced pool is closed with its manager: %d connections, want at most %d", redisConns(t, redisPort), base)
}

// redisConns counts this process's established TCP connections to port
// (the sockets among its open files that /proc/net/tcp{,6} lists).
func redisConns(t *testing.T, port string) int {
	t.Helper()
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	ours := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			ours[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, rport, _ := strings.Cut(fields[2], ":")
			if v, err := strconv.ParseInt(rport, 16, 32); err == nil && int(v) == p && ours[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}
