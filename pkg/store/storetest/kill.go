package storetest

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/testenv"
)

// KillSentinelMaster SIGKILLs the current master of the Sentinel setup
// (s from SentinelExclusive) and returns its address. When the test ends,
// tools/testenv/redis-ha.sh starts it again and waits until Sentinel has
// made it a replica in sync with the new master, and then until twice the
// sentinels' failover-timeout has passed since the kill (a sentinel starts
// no other failover of the master before), so the next test finds the
// setup whole and able to fail over again.
func KillSentinelMaster(t testing.TB, s Setup) string {
	t.Helper()
	script, dir := testenv.Require(t, testenv.RedisHAScript), testenv.Require(t, testenv.RedisHADir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], Password: s.SentinelPassword, DisableIdentity: true})
	defer sc.Close()
	hp, err := sc.GetMasterAddrByName(ctx, s.SentinelMaster).Result()
	if err != nil || len(hp) != 2 {
		t.Fatalf("sentinel: master of %s: %v %v", s.SentinelMaster, hp, err)
	}
	addr := hp[0] + ":" + hp[1]
	mc := redis.NewClient(&redis.Options{Addr: addr, Password: s.Password, DisableIdentity: true})
	defer mc.Close()
	info, err := mc.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 1 {
		t.Fatalf("no process_id in INFO of %s", addr)
	}
	ft, err := sc.Master(ctx, s.SentinelMaster).Result()
	if err != nil {
		t.Fatal(err)
	}
	failoverTimeout, _ := strconv.Atoi(ft["failover-timeout"])
	killAt := time.Now()
	t.Cleanup(func() {
		cmd := exec.Command(script, "start")
		cmd.Env = append(os.Environ(), "ELEMTA_TESTENV_HA_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s start (revive %s): %v\n%s", script, addr, err, out)
		}
		<-time.After(time.Until(killAt.Add(2 * time.Duration(failoverTimeout) * time.Millisecond)))
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill master %s (pid %d): %v", addr, pid, err)
	}
	return addr
}
