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

// TestClusterSharedState: two `elemta serve` nodes whose [store] is the
// 3-master Cluster keep one greylist, one rate limit and one scan cache.
func TestClusterSharedState(t *testing.T) { sharedState(t, storetest.Cluster(t)) }

// TestSentinelSharedState: the same through Sentinel (failover: see
// TestSentinelFailover).
func TestSentinelSharedState(t *testing.T) { sharedState(t, storetest.Sentinel(t)) }

func sharedState(t *testing.T, cl storetest.Setup) {
	prefix := cl.Prefix(t)
	storeTable := "\n[store]\n" + cl.TOML

	t.Run("greylist", func(t *testing.T) {
		cfg := fmt.Sprintf("[plugins]\nplugins = [\"greylist\"]\n[plugins.greylist]\nstore = \"redis\"\nredis_prefix = %q\ndelay = \"1s\"\nexempt_networks = []\non_error = \"tempfail\"\n%s",
			prefix+"gl:", storeTable)
		a, b := startNode(t, "a", cfg), startNode(t, "b", cfg)
		start := time.Now()
		for _, s := range []string{"one", "two"} {
			r, err := send(a.addr, s+"@sender.example", s+"@example.net", message("greylist "+s))
			if err != nil || r.step != "RCPT" || r.code != 451 {
				t.Fatalf("first sight of %s on node A: %v, %v; want RCPT 451", s, r, err)
			}
		}
		// Wait out the delay by asking node A for "one" (early retries do
		// not restart it) until it passes.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(15 * time.Second)
		for passed := false; !passed; {
			select {
			case <-deadline:
				t.Fatal("triplet one not passed on node A 15s after its first sight (delay 1s)")
			case <-tick.C:
			}
			r, err := send(a.addr, "one@sender.example", "one@example.net", message("greylist one retry"))
			if err != nil {
				t.Fatal(err)
			}
			passed = r.code == 250
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("passed %v after the first sight, before the 1s delay", el)
		}
		// "two" was only ever seen by node A: node B lets its first retry through.
		r, err := send(b.addr, "two@sender.example", "two@example.net", message("greylist two on b"))
		if err != nil || r.code != 250 {
			t.Fatalf("first retry of two on node B after the delay: %v, %v; want 250 (greylisted on node A)", r, err)
		}
		// and greylists a triplet of its own
		r, err = send(b.addr, "three@sender.example", "three@example.net", message("greylist three"))
		if err != nil || r.step != "RCPT" || r.code != 451 {
			t.Fatalf("first sight of three on node B: %v, %v; want RCPT 451", r, err)
		}
		waitDelivered(t, b, "two@example.net", 1)
	})

	t.Run("rate limit across nodes", func(t *testing.T) {
		const n, perNode = 10, 15
		cfg := "[plugins]\nplugins = [\"ratelimit\"]\n" + rateLimitTable(prefix+"rl:", n) + storeTable
		nodes := []*node{startNode(t, "a", cfg), startNode(t, "b", cfg)}
		replies := make([]reply, 2*perNode)
		errs := make([]error, 2*perNode)
		go1 := make(chan struct{})
		var wg sync.WaitGroup
		for i := range replies {
			wg.Go(func() {
				<-go1 // every client starts at once
				replies[i], errs[i] = send(nodes[i%2].addr, "bulk@sender.example", "rl@example.net", message(fmt.Sprintf("rate %d", i)))
			})
		}
		start := time.Now()
		close(go1)
		wg.Wait()
		elapsed := time.Since(start)
		accepted, limited := 0, 0
		for i, r := range replies {
			switch {
			case errs[i] != nil:
				t.Errorf("client %d: %v", i, errs[i])
			case r.code == 250:
				accepted++
			case r.step == "MAIL" && r.code == 451 && strings.Contains(r.text, "Rate limit"):
				limited++
			default:
				t.Errorf("client %d: %v, want 250 or the rate limit's 451", i, r)
			}
		}
		// GCRA: n at once, then one every minute/n (6s).
		most := n + int(elapsed/(time.Minute/n))
		if accepted < n || accepted > most {
			t.Errorf("%d of %d accepted across both nodes in %v, want %d (at most %d)", accepted, len(replies), elapsed, n, most)
		}
		t.Logf("rate limit %d/min: %d accepted, %d limited, across 2 nodes in %v", n, accepted, limited, elapsed)
		got := nodes[0].delivered("rl@example.net") + nodes[1].delivered("rl@example.net")
		for deadline := time.Now().Add(20 * time.Second); got != accepted && time.Now().Before(deadline); {
			<-time.After(50 * time.Millisecond)
			got = nodes[0].delivered("rl@example.net") + nodes[1].delivered("rl@example.net")
		}
		if got != accepted {
			t.Errorf("%d delivered, want the %d accepted", got, accepted)
		}
	})

	t.Run("scan cache", func(t *testing.T) {
		clamd := newClamdCounter(t, testenv.Require(t, testenv.Clamd))
		cfg := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ncache_store = \"redis\"\ncache_redis_prefix = %q\non_error = \"tempfail\"\n%s",
			clamd.addr, prefix+"av:", storeTable)
		a, b := startNode(t, "a", cfg), startNode(t, "b", cfg)
		// Each node asks clamd for its database version at start; until then it caches nothing.
		for deadline := time.Now().Add(15 * time.Second); clamd.versions.Load() < 2; {
			if time.Now().After(deadline) {
				t.Fatalf("clamd saw %d VERSION commands 15s after both nodes started, want 2", clamd.versions.Load())
			}
			<-time.After(20 * time.Millisecond)
		}
		eicar, err := os.ReadFile(filepath.Join("..", "..", "plugins", "clamav", "testdata", "eicar-base64.eml"))
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []*node{a, b, b} {
			r, err := send(n.addr, "av@sender.example", "av@example.net", eicar)
			if err != nil || r.step != "DATA" || r.code != 554 || !strings.Contains(r.text, "Virus found") {
				t.Fatalf("EICAR to node %s: %v, %v; want DATA 554 Virus found", n.name, r, err)
			}
			if got := clamd.scans.Load(); got != 1 {
				t.Fatalf("after message %d (node %s): clamd saw %d scans, want 1 (node B answers from the shared cache)", i+1, n.name, got)
			}
		}
	})
}

// waitDelivered waits until n's Maildir of rcpt has want messages.
func waitDelivered(t *testing.T, n *node, rcpt string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.delivered(rcpt) != want {
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %d messages for %s, want %d", n.name, n.delivered(rcpt), rcpt, want)
		}
		<-time.After(20 * time.Millisecond)
	}
}
