package storetest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/testenv"
)

// sentinelLock takes the lock that keeps the Sentinel setup whole for
// the test: shared by tests that use it, exclusive for a test that kills
// its master (KillSentinelMaster), across every test process (go test
// runs packages at once). Released when the test ends; waiting for it is
// bounded (2 minutes).
func sentinelLock(t testing.TB, exclusive bool) {
	t.Helper()
	dir := testenv.Require(t, testenv.RedisHADir)
	f, err := os.OpenFile(filepath.Join(dir, "sentinel.test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("sentinel test lock: %v", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("sentinel test lock (another test process kills or uses the master): %v", err)
		}
		<-time.After(50 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
