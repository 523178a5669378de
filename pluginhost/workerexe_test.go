package pluginhost

import (
	"os"
	"runtime"
	"testing"
)

// TestWorkerRunsThisExecutable: on Linux a worker is started from
// /proc/self/exe, so a binary installed at this executable's path (an
// upgrade being prepared, or one that failed) never becomes the worker of
// the server still running the old one.
func TestWorkerRunsThisExecutable(t *testing.T) {
	cmd, err := workerCommand()
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "linux" {
		t.Skip("/proc/self/exe is Linux's")
	}
	if cmd.Path != selfExe {
		t.Fatalf("worker command %q, want %s", cmd.Path, selfExe)
	}
	self, err := os.Stat(selfExe)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(exe); err != nil || !os.SameFile(st, self) {
		t.Fatalf("%s is not this executable (%s): %v", selfExe, exe, err)
	}
}
