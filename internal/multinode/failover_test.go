package multinode_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pkg/testenv"
)

// TestSentinelFailover: two nodes share a rate limit through Sentinel
// while the master is SIGKILLed under load. Every reply is an accept, the
// limit's refusal, or on_error (tempfail) between the kill and the node's
// resume; no more than the limit is accepted; every accepted message is
// delivered; both nodes resume, without a restart, within the failover
// time (down-after 1s plus the election; measured and logged).
func TestSentinelFailover(t *testing.T) {
	s := storetest.SentinelExclusive(t)
	prefix := s.Prefix(t)
	const limit = 20 // per minute: one more every 3s; reached during the run
	clamd := newClamdCounter(t, testenv.Require(t, testenv.Clamd))
	cfg := fmt.Sprintf(`[plugins]
plugins = ["ratelimit", "clamav"]
[plugins.clamav]
servers = [%q]
cache_store = "redis"
cache_redis_prefix = %q
on_error = "tempfail"
%s
[store]
%sredis_timeout = "500ms"
`, clamd.addr, prefix+"av:", rateLimitTable(prefix, limit), s.TOML)
	nodes := []*node{startNode(t, "a", cfg), startNode(t, "b", cfg)}

	eicar, err := os.ReadFile(filepath.Join("..", "..", "plugins", "clamav", "testdata", "eicar-base64.eml"))
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		at    time.Time
		node  int
		r     reply
		err   error
		virus bool
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		killAt   time.Time
		// per node: an on_error seen after the kill, when it last came,
		// and the replies since (from transactions started after it)
		outage  [2]bool
		lastErr [2]time.Time
		streak  [2]int
		resumed [2]time.Time
	)
	stop := make(chan struct{})
	done := make(chan struct{}) // closed once both nodes answered 5 times in a row after their outage
	var doneOnce sync.Once
	var wg sync.WaitGroup
	// Workers 0-3 send clean mail from one sender (one rate budget); worker
	// 4 sends EICAR, each time from a sender of its own (never limited),
	// which must never be accepted, Redis or not.
	const workers = 5
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := (w + i) % 2
				virus := w == workers-1
				sender, body := "load@sender.example", message(fmt.Sprintf("failover %d %d", w, i))
				if virus {
					sender, body = fmt.Sprintf("virus%d@sender.example", i), eicar
				}
				began := time.Now()
				r, err := send(nodes[n].addr, sender, "fo@example.net", body)
				now := time.Now()
				mu.Lock()
				outcomes = append(outcomes, outcome{now, n, r, err, virus})
				switch {
				case err == nil && r.code == 451 && strings.HasPrefix(r.text, "4.3.0"): // on_error
					outage[n], lastErr[n], streak[n], resumed[n] = true, now, 0, time.Time{}
				case err == nil && outage[n] && began.After(lastErr[n]):
					if streak[n]++; streak[n] == 1 {
						resumed[n] = now
					}
					if streak[0] >= 5 && streak[1] >= 5 {
						doneOnce.Do(func() { close(done) })
					}
				}
				mu.Unlock()
			}
		})
	}
	// Kill the master once some mail went through both nodes.
	for {
		mu.Lock()
		k := len(outcomes)
		mu.Unlock()
		if k >= 10 {
			break
		}
		<-time.After(10 * time.Millisecond)
	}
	mu.Lock()
	killAt = time.Now()
	mu.Unlock()
	master := storetest.KillSentinelMaster(t, s)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Error("the nodes did not both resume within 30s of the kill")
	}
	mu.Lock()
	for n := range nodes {
		if d := resumed[n].Sub(killAt); !resumed[n].IsZero() && d > 15*time.Second {
			t.Errorf("node %s resumed %v after the kill, want within the failover time (down-after 1s, failover within 15s)", nodes[n].name, d)
		}
	}
	mu.Unlock()
	close(stop)
	wg.Wait()
	end := time.Now()

	accepted, limited, onError, viruses := 0, 0, 0, 0
	first := outcomes[0].at
	for _, o := range outcomes {
		if o.at.Before(first) {
			first = o.at
		}
		switch {
		case o.err == nil && o.virus && o.r.step == "DATA" && o.r.code == 554 && strings.Contains(o.r.text, "Virus found"):
			viruses++
		case o.err == nil && o.virus && o.r.code == 250:
			t.Errorf("node %d accepted EICAR: %v", o.node, o.r)
		case o.err != nil:
			t.Errorf("node %d: %v (a message lost to a network error)", o.node, o.err)
		case o.r.code == 250:
			accepted++
		case o.r.step == "MAIL" && o.r.code == 451 && strings.Contains(o.r.text, "Rate limit"):
			limited++
		case o.r.step == "MAIL" && o.r.code == 451 && strings.HasPrefix(o.r.text, "4.3.0"):
			onError++
			if o.at.Before(killAt) {
				t.Errorf("node %d: on_error %v before the master was killed", o.node, killAt.Sub(o.at))
			}
		default:
			t.Errorf("node %d: %v, want 250, the rate limit's 451 or on_error's 451 4.3.0", o.node, o.r)
		}
	}
	most := limit + int(end.Sub(first)/(time.Minute/limit))
	if accepted > most {
		t.Errorf("%d accepted in %v, the limit allows %d", accepted, end.Sub(first), most)
	}
	for n := range nodes {
		if !outage[n] {
			t.Errorf("node %s never applied on_error: the kill was not seen", nodes[n].name)
		}
		if !resumed[n].IsZero() {
			t.Logf("node %s resumed %v after master %s was killed", nodes[n].name, resumed[n].Sub(killAt).Round(time.Millisecond), master)
		}
	}
	t.Logf("%d transactions in %v: %d accepted, %d rate-limited, %d on_error (tempfail) during the failover, %d EICAR rejected (clamd scanned %d)",
		len(outcomes), end.Sub(first).Round(time.Millisecond), accepted, limited, onError, viruses, clamd.scans.Load())
	if viruses == 0 {
		t.Error("no EICAR message was rejected")
	}
	got := 0
	for deadline := time.Now().Add(20 * time.Second); ; <-time.After(50 * time.Millisecond) {
		got = nodes[0].delivered("fo@example.net") + nodes[1].delivered("fo@example.net")
		if got == accepted || time.Now().After(deadline) {
			break
		}
	}
	if got != accepted {
		t.Errorf("%d delivered, want the %d accepted", got, accepted)
	}
}
