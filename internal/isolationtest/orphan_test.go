package isolationtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
)

const prSetChildSubreaper = 36

// A server killed with SIGKILL leaves no worker: the kernel kills them
// (Pdeathsig). This test process is made a subreaper, so orphans come to
// it and it can wait for each worker's death without polling.
func TestNoOrphanAfterSIGKILL(t *testing.T) {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	require.Zero(t, errno, "PR_SET_CHILD_SUBREAPER")
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"=isopanic process", "ISOLATIONTEST_WAIT=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var pids []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "workers "); ok {
			_, list, _ := strings.Cut(rest, " [")
			for _, f := range strings.Fields(strings.TrimSuffix(list, "]")) {
				pid, err := strconv.Atoi(f)
				require.NoError(t, err)
				pids = append(pids, pid)
			}
		}
		if line == "waiting" {
			break
		}
	}
	require.Len(t, pids, 2, "two isolated instances, one worker each")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	killed := time.Now()
	for _, pid := range pids {
		done := make(chan error, 1)
		go func() {
			var ws syscall.WaitStatus
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			// Killed by its parent-death signal, or out on its own first
			// (it saw its socket close): either way no orphan.
			if err == nil && !(ws.Signaled() && ws.Signal() == syscall.SIGKILL) && !(ws.Exited() && ws.ExitStatus() == 0) {
				err = fmt.Errorf("worker %d ended with %v, neither by SIGKILL nor on its own", pid, ws)
			}
			done <- err
		}()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(time.Second - time.Since(killed)):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("worker %d outlived the server by a second", pid)
		}
	}
	t.Logf("both workers (%v) died within %v of the server's SIGKILL", pids, time.Since(killed).Round(time.Millisecond))
}

// The kernel holds a worker to its memory_limit: RLIMIT_AS is its address
// space at start plus the limit (Go reserves about a gigabyte before it
// allocates anything).
func TestWorkerAddressSpaceLimit(t *testing.T) {
	cfg, err := pluginhost.ParseConfig("t.toml", []byte("[plugins]\nplugins = [\"isotrivial\"]\n[plugins.isotrivial]\nisolation = \"process\"\nmemory_limit = \"128MiB\"\n"))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg)
	require.NoError(t, m.LoadPlugins(context.Background()))
	defer func() { assert.NoError(t, m.Close()) }()
	ws := m.WorkerStats()
	require.Len(t, ws, 1)
	require.Len(t, ws[0].PIDs, 1)
	pid := ws[0].PIDs[0]
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	require.NoError(t, err)
	var soft int64
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max address space") {
			f := strings.Fields(strings.TrimPrefix(line, "Max address space"))
			soft, err = strconv.ParseInt(f[0], 10, 64)
			require.NoError(t, err, line)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	var vm int64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			vm, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			vm <<= 10
		}
	}
	require.NotZero(t, soft, "no address space limit on worker %d:\n%s", pid, limits)
	assert.Less(t, vm, soft, "the worker maps less than its limit")
	assert.LessOrEqual(t, soft-vm, int64(128<<20), "the limit is at most memory_limit above what the worker maps")
	t.Logf("worker %d: RLIMIT_AS %d MiB, VmSize %d MiB", pid, soft>>20, vm>>20)
}

// max_requests retires a worker after that many calls, and a new one
// serves the next.
func TestMaxRequestsRecycles(t *testing.T) {
	cfg, err := pluginhost.ParseConfig("t.toml", []byte("[plugins]\nplugins = [\"isotrivial\"]\n[plugins.isotrivial]\nisolation = \"process\"\nmax_requests = 2\n"))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg)
	require.NoError(t, m.LoadPlugins(context.Background()))
	defer func() { assert.NoError(t, m.Close()) }()
	first := m.WorkerStats()[0].PIDs
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sr, err := m.ExecuteStage(ctx, 1, message(i))
		cancel()
		require.NoError(t, err)
		require.NoError(t, sr.Results[0].Err, "message %d", i)
	}
	st := m.WorkerStats()[0]
	assert.GreaterOrEqual(t, st.Recycled, int64(2))
	assert.Zero(t, st.Crashes)
	assert.NotEqual(t, first, st.PIDs)
}
