package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileLimit runs a server in a child process whose RLIMIT_NOFILE is 64
// (the test binary again, as TestFileLimitChild) and opens 100 connections
// to it: each gets a 220 or a 421, none hangs in the listen queue, and once
// they are gone the server serves again. With reserved_files 16 the server
// stops at its lowered max_connections; with 1 it runs out of descriptors
// first and answers from its spare one.
func TestFileLimit(t *testing.T) {
	for _, reserved := range []int{16, 1} {
		t.Run(fmt.Sprintf("reserved_files=%d", reserved), func(t *testing.T) {
			exe, err := os.Executable()
			require.NoError(t, err)
			cmd := exec.Command(exe, "-test.run=^TestFileLimitChild$", "-test.v")
			cmd.Env = append(os.Environ(), "ELEMTA_FILELIMIT_CHILD="+strconv.Itoa(reserved))
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			defer func() {
				stdin.Close() // the child serves until its stdin closes
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					cmd.Process.Kill()
					t.Error("child did not stop")
				}
			}()
			out := bufio.NewScanner(stdout)
			var addr string
			for out.Scan() {
				if a, ok := strings.CutPrefix(out.Text(), "listening "); ok {
					addr = a
					break
				}
			}
			require.NotEmpty(t, addr, "child did not start")
			go io.Copy(io.Discard, stdout)

			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			codes := map[int]int{}
			for range 100 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				require.NoError(t, err)
				conns = append(conns, c)
				require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
				line, err := bufio.NewReader(c).ReadString('\n')
				require.NoError(t, err, "connection %d got no reply: the server must refuse, not hang", len(conns))
				code, _ := strconv.Atoi(line[:3])
				codes[code]++
			}
			t.Logf("replies to 100 connections at RLIMIT_NOFILE 64: %v", codes)
			assert.Equal(t, 100, codes[220]+codes[421], "%v", codes)
			assert.Positive(t, codes[220])
			assert.Positive(t, codes[421])
			for _, c := range conns {
				c.Close()
			}
			conns = nil
			// Recovered: a whole transaction goes through.
			require.Eventually(t, func() bool {
				c, err := textproto.Dial("tcp", addr)
				if err != nil {
					return false
				}
				defer c.Close()
				if _, _, err := c.ReadResponse(220); err != nil {
					return false
				}
				converseOn(t, c, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354},
					step{send: msg(""), raw: true, code: 250, text: "queued as"}))
				return true
			}, 10*time.Second, 50*time.Millisecond)
		})
	}
}

// TestFileLimitChild is TestFileLimit's server; it runs only in the child.
func TestFileLimitChild(t *testing.T) {
	reserved, err := strconv.Atoi(os.Getenv("ELEMTA_FILELIMIT_CHILD"))
	if err != nil {
		t.Skip("runs as TestFileLimit's child process")
	}
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 64, Max: 64}))
	h := start(t, Config{Limits: Limits{ReservedFiles: reserved, MaxConnectionsPerClient: 1000, MaxConnections: 1000}})
	fmt.Printf("listening %s\n", h.addr)
	io.Copy(io.Discard, os.Stdin)
}
