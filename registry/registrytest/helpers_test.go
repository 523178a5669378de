package registrytest_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry/registrytest"
)

func TestServer(t *testing.T) {
	registrytest.CheckLeaks(t)
	handled := make(chan string, 2)
	s := registrytest.NewServer(t, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			handled <- "closed"
			return
		}
		handled <- line
		_, _ = c.Write([]byte("ok\n"))
	})
	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello\n"))
	require.NoError(t, err)
	reply, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ok\n", reply)
	assert.Equal(t, "hello\n", <-handled)

	// A handler blocked reading is unblocked by Close, which waits for it.
	idle, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer idle.Close()
	require.Eventually(t, func() bool { return s.Accepts() == 2 }, 5*time.Second, 10*time.Millisecond)
	s.Close()
	assert.Equal(t, "closed", <-handled)
	s.Close() // twice is safe
}

func TestBlackholeNeverAnswers(t *testing.T) {
	c, err := net.Dial("tcp", registrytest.Blackhole(t))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "read from a blackhole: %v, want a timeout", err)
}

func TestClosedAddr(t *testing.T) {
	c, err := net.Dial("tcp", registrytest.ClosedAddr(t))
	if err == nil {
		c.Close()
	}
	require.Error(t, err)
}

func TestSettings(t *testing.T) {
	c, pc := registrytest.Settings[Config](t, "[plugins.kit-good]\nword = \"hi\"\ntimeout = \"2s\"\n", "kit-good")
	assert.Equal(t, "hi", c.Word)
	assert.Equal(t, 2*time.Second, pc.Timeout)
}

const leakEnv = "REGISTRYTEST_LEAK"

// TestLeakFixture leaks a goroutine under CheckLeaks when $REGISTRYTEST_LEAK
// is set; TestCheckLeaks runs it in a child process.
func TestLeakFixture(t *testing.T) {
	if os.Getenv(leakEnv) == "" {
		t.Skip("run by TestCheckLeaks")
	}
	registrytest.CheckLeaks(t)
	block := make(chan struct{})
	go func() { <-block }()
}

func TestCheckLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child test process")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLeakFixture$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), leakEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "CheckLeaks passed a leaking test:\n%s", out)
	assert.Contains(t, string(out), "1 goroutine(s) leaked")
	assert.Contains(t, string(out), "TestLeakFixture.func")
}
