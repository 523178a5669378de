package isolationtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// serverEnv makes the test binary a test server: "<plugin> <isolation>".
const serverEnv = "ISOLATIONTEST_SERVER"

// config enables the plugin bad with on_error = tempfail before the
// trivial plugin, both isolated or not.
func config(bad, isolation string) string {
	extra := ""
	if isolation == "process" {
		extra = "isolation = \"process\"\nmemory_limit = \"128MiB\"\n"
	}
	return fmt.Sprintf("[plugins]\nplugins = [%q, \"isotrivial\"]\n\n[plugins.%s]\non_error = \"tempfail\"\ntimeout = \"1s\"\n%s\n[plugins.isotrivial]\n%s",
		bad, bad, extra, extra)
}

func message(i int) *registry.ProcessingContext {
	msg, err := registry.ParseMessage([]byte(fmt.Sprintf("From: a@example.org\r\nSubject: m%d\r\n\r\nbody\r\n", i)), registry.Envelope{})
	if err != nil {
		panic(err)
	}
	return registry.NewProcessingContext(msg, nil)
}

// runServer loads the config and runs three messages through
// post-reception, printing one line each and "served" at the end. Its own
// address space is bounded (VmSize + 1 GiB), so an in-process allocation
// without bound kills it and not the machine.
func runServer(mode string) int {
	bad, isolation, _ := strings.Cut(mode, " ")
	isolation, expect, _ := strings.Cut(isolation, " ")
	if vm := vmSize(); vm > 0 {
		lim := uint64(vm + 1<<30)
		_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: lim, Max: lim})
	}
	cfg, err := pluginhost.ParseConfig("server.toml", []byte(config(bad, isolation)))
	if err != nil {
		fmt.Println("config:", err)
		return 1
	}
	m := pluginhost.NewManager(cfg)
	if err := m.LoadPlugins(context.Background()); err != nil {
		fmt.Println("load:", err)
		return 1
	}
	defer m.Close()
	for _, ws := range m.WorkerStats() {
		fmt.Printf("workers %s %v\n", ws.Name, ws.PIDs)
	}
	for i := range 3 {
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, message(i))
		if err != nil {
			fmt.Println("stage:", err)
			return 1
		}
		fmt.Printf("message %d: %s by %s, score %v\n", i, sr.Verdict.Action, sr.DecidedBy, sr.Score)
	}
	if expect == "crash" {
		// A worker killed past its deadline (cancelGrace after the call's
		// context ended) is counted by its supervisor when its process is
		// gone: on a loaded machine that can come after the last message.
		for deadline := time.Now().Add(10 * time.Second); crashes(m, bad) == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, ws := range m.WorkerStats() {
		fmt.Printf("stats %s: crashes %d, restarts %d\n", ws.Name, ws.Crashes, ws.Restarts)
	}
	if os.Getenv("ISOLATIONTEST_WAIT") == "1" {
		fmt.Println("waiting")
		select {} // until killed
	}
	fmt.Println("served")
	return 0
}

func crashes(m *pluginhost.Manager, name string) int64 {
	for _, ws := range m.WorkerStats() {
		if ws.Name == name {
			return ws.Crashes
		}
	}
	return 0
}

func vmSize() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
