package resolver

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/elemta/elemta/registry"
	"github.com/miekg/dns"
)

const testSOA = "example.org. 3600 IN SOA ns.example.org. host.example.org. 1 3600 600 86400 30"

func testZone(t testing.TB) *zone {
	return newZone(t, testSOA,
		`example.org. 300 IN TXT "v=spf1 -all"`,
		`multi.example.org. 300 IN TXT "first " "second"`,
		`multi.example.org. 300 IN TXT "other record"`,
		`escaped.example.org. 300 IN TXT "quote\" backslash\\ bell\007 end"`,
		`example.org. 300 IN MX 20 mx2.example.org.`,
		`example.org. 300 IN MX 10 mx1.example.org.`,
		`mx1.example.org. 300 IN A 192.0.2.1`,
		`mx1.example.org. 300 IN AAAA 2001:db8::1`,
		`v4only.example.org. 300 IN A 192.0.2.4`,
		`alias.example.org. 300 IN CNAME target.example.org.`,
		`target.example.org. 300 IN TXT "at the target"`,
		`dangling.example.org. 300 IN CNAME missing.example.org.`,
		`1.2.0.192.in-addr.arpa. 300 IN PTR mx1.example.org.`,
		`1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR mx1.example.org.`,
	)
}

func TestLookups(t *testing.T) {
	srv := newFakeServer(t, testZone(t).handler())
	r := newTestResolver(t, Config{Timeout: registryDuration(2 * time.Second)}, newClock(), srv)
	ctx := context.Background()

	txt := func(name string) func() (any, error) {
		return func() (any, error) { return r.LookupTXT(ctx, name) }
	}
	tests := []struct {
		name     string
		call     func() (any, error)
		want     any
		notFound bool
	}{
		{"TXT", txt("example.org"), []string{"v=spf1 -all"}, false},
		{"TXT fully qualified, mixed case", txt("Example.ORG."), []string{"v=spf1 -all"}, false},
		{"TXT strings of one record joined", txt("multi.example.org"), []string{"first second", "other record"}, false},
		{"TXT escapes undone", txt("escaped.example.org"), []string{"quote\" backslash\\ bell\a end"}, false},
		{"TXT through CNAME", txt("alias.example.org"), []string{"at the target"}, false},
		{"TXT NXDOMAIN", txt("nope.example.org"), nil, true},
		{"TXT NODATA", txt("v4only.example.org"), nil, true},
		{"TXT CNAME to nothing", txt("dangling.example.org"), nil, true},
		{"TXT invalid name", txt("bad..name"), nil, true},
		{"MX sorted by preference", func() (any, error) {
			mxs, err := r.LookupMX(ctx, "example.org")
			var out []string
			for _, mx := range mxs {
				out = append(out, mx.Host+"/"+string(rune('0'+mx.Pref/10)))
			}
			return out, err
		}, []string{"mx1.example.org./1", "mx2.example.org./2"}, false},
		{"IPAddr A and AAAA", func() (any, error) { return ipStrings(r.LookupIPAddr(ctx, "mx1.example.org")) },
			[]string{"192.0.2.1", "2001:db8::1"}, false},
		{"IPAddr A only (AAAA NODATA)", func() (any, error) { return ipStrings(r.LookupIPAddr(ctx, "v4only.example.org")) },
			[]string{"192.0.2.4"}, false},
		{"IPAddr literal", func() (any, error) { return ipStrings(r.LookupIPAddr(ctx, "2001:db8::7")) },
			[]string{"2001:db8::7"}, false},
		{"IPAddr NXDOMAIN", func() (any, error) { return ipStrings(r.LookupIPAddr(ctx, "nope.example.org")) }, []string(nil), true},
		{"Addr IPv4", func() (any, error) { return r.LookupAddr(ctx, "192.0.2.1") }, []string{"mx1.example.org."}, false},
		{"Addr IPv6", func() (any, error) { return r.LookupAddr(ctx, "2001:db8::1") }, []string{"mx1.example.org."}, false},
		{"Addr NXDOMAIN", func() (any, error) { return r.LookupAddr(ctx, "192.0.2.99") }, []string(nil), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if tc.notFound {
				de := dnsErr(t, err)
				if !de.IsNotFound || de.IsTemporary || de.IsTimeout {
					t.Fatalf("error %v: IsNotFound=%v IsTemporary=%v IsTimeout=%v, want not found only",
						err, de.IsNotFound, de.IsTemporary, de.IsTimeout)
				}
				mustContain(t, err.Error(), "no such host")
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !equalAny(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	t.Run("Addr not an address", func(t *testing.T) {
		_, err := r.LookupAddr(ctx, "not-an-ip")
		if de := dnsErr(t, err); de.Err != "unrecognized address" {
			t.Fatalf("got %v", err)
		}
	})
}

func ipStrings(addrs []net.IPAddr, err error) ([]string, error) {
	var out []string
	for _, a := range addrs {
		out = append(out, a.IP.String())
	}
	return out, err
}

func equalAny(a, b any) bool {
	as, ok1 := a.([]string)
	bs, ok2 := b.([]string)
	return ok1 && ok2 && slices.Equal(as, bs)
}

func TestServerFailures(t *testing.T) {
	tests := []struct {
		name        string
		handler     dns.HandlerFunc
		wantTimeout bool
		wantInErr   string
	}{
		{"SERVFAIL", rcodeHandler(dns.RcodeServerFailure), false, "SERVFAIL"},
		{"REFUSED", rcodeHandler(dns.RcodeRefused), false, "REFUSED"},
		{"never answers", silentHandler, true, "i/o timeout"},
		{"answers garbage", func(w dns.ResponseWriter, r *dns.Msg) { _, _ = w.Write([]byte("not a DNS message")) }, true, "i/o timeout"},
		{"answers with the wrong id", func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Id++
			_ = w.WriteMsg(m)
		}, true, "i/o timeout"},
		{"answers another question", func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Question[0].Name = "evil.example."
			_ = w.WriteMsg(m)
		}, true, "i/o timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, tc.handler)
			r := newTestResolver(t, Config{Timeout: registryDuration(150 * time.Millisecond), Attempts: 2}, newClock(), srv)
			start := time.Now()
			_, err := r.LookupTXT(context.Background(), "example.org")
			elapsed := time.Since(start)
			de := dnsErr(t, err)
			if !de.Temporary() || de.IsNotFound {
				t.Fatalf("error %v: Temporary()=%v IsNotFound=%v, want temporary", err, de.Temporary(), de.IsNotFound)
			}
			if de.IsTimeout != tc.wantTimeout {
				t.Errorf("IsTimeout = %v, want %v (%v)", de.IsTimeout, tc.wantTimeout, err)
			}
			mustContain(t, err.Error(), tc.wantInErr)
			mustContain(t, err.Error(), srv.addr)
			if got := srv.udp.Load(); got != 2 {
				t.Errorf("server saw %d queries, want 2 (attempts = 2)", got)
			}
			if elapsed > 2*time.Second {
				t.Errorf("took %v; 2 attempts of 150ms should not", elapsed)
			}
			// failures are not cached: the next lookup asks again
			_, _ = r.LookupTXT(context.Background(), "example.org")
			if got := srv.udp.Load(); got != 4 {
				t.Errorf("after a second lookup the server saw %d queries, want 4", got)
			}
		})
	}
}

func registryDuration(d time.Duration) registry.Duration { return registry.Duration(d) }

func TestFailoverToNextServer(t *testing.T) {
	bad := newFakeServer(t, rcodeHandler(dns.RcodeServerFailure))
	dead := newFakeServer(t, silentHandler)
	good := newFakeServer(t, testZone(t).handler())
	r := newTestResolver(t, Config{Timeout: registryDuration(100 * time.Millisecond)}, newClock(), bad, dead, good)
	got, err := r.LookupTXT(context.Background(), "example.org")
	if err != nil || !slices.Equal(got, []string{"v=spf1 -all"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if bad.queries() != 1 || dead.queries() != 1 || good.queries() != 1 {
		t.Fatalf("queries: bad %d dead %d good %d, want 1 each", bad.queries(), dead.queries(), good.queries())
	}
	// NXDOMAIN is an answer: no further server is asked
	_, err = r.LookupTXT(context.Background(), "nope.example.org")
	if !IsNotFound(err) || good.queries() != 2 {
		t.Fatalf("NXDOMAIN: err %v, good server queries %d", err, good.queries())
	}
}

func TestContextBoundsSlowServer(t *testing.T) {
	srv := newFakeServer(t, silentHandler)
	// per-query timeout far longer than the caller's deadline
	r := newTestResolver(t, Config{Timeout: registryDuration(30 * time.Second)}, newClock(), srv)

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := r.LookupTXT(ctx, "example.org")
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("returned after %v, the context allowed 100ms", elapsed)
		}
		de := dnsErr(t, err)
		if !de.IsTimeout || !de.Temporary() || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v: IsTimeout=%v Temporary=%v Is(DeadlineExceeded)=%v", err, de.IsTimeout, de.Temporary(), errors.Is(err, context.DeadlineExceeded))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		queried := make(chan struct{})
		srv.set(func(w dns.ResponseWriter, r *dns.Msg) { close(queried) })
		errc := make(chan error, 1)
		go func() {
			_, err := r.LookupTXT(ctx, "cancel.example.org")
			errc <- err
		}()
		<-queried // the query is out: now cancel it
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want one that wraps context.Canceled", err)
			}
			mustContain(t, err.Error(), "operation was canceled")
		case <-time.After(5 * time.Second):
			t.Fatal("LookupTXT did not return after its context was canceled")
		}
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := srv.queries()
		if _, err := r.LookupTXT(ctx, "example.org"); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
		if srv.queries() != before {
			t.Fatal("a query was sent for a context that was already done")
		}
	})
}

func TestTruncatedFallsBackToTCP(t *testing.T) {
	z := testZone(t)
	srv := newFakeServer(t, nil)
	srv.set(func(w dns.ResponseWriter, r *dns.Msg) {
		if w.LocalAddr().Network() == "udp" {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		z.handler()(w, r)
	})
	r := newTestResolver(t, Config{}, newClock(), srv)
	got, err := r.LookupTXT(context.Background(), "multi.example.org")
	if err != nil || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	if srv.udp.Load() != 1 || srv.tcp.Load() != 1 {
		t.Fatalf("udp %d tcp %d, want 1 and 1", srv.udp.Load(), srv.tcp.Load())
	}
}

func TestLargeAnswerOverTCP(t *testing.T) {
	// 40 TXT records of 200 bytes: too big for UDP, so the real server
	// library truncates and the resolver must retry over TCP.
	var recs []string
	long := make([]byte, 200)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	for range 40 {
		recs = append(recs, `big.example.org. 300 IN TXT "`+string(long)+`"`)
	}
	z := newZone(t, "", recs...)
	srv := newFakeServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = z.rrs["big.example.org."]
		if w.LocalAddr().Network() == "udp" {
			m.Truncate(dns.MinMsgSize) // what a server does for a 512-byte client; also sets TC
		}
		_ = w.WriteMsg(m)
	})
	r := newTestResolver(t, Config{}, newClock(), srv)
	got, err := r.LookupTXT(context.Background(), "big.example.org")
	if err != nil || len(got) != 40 || got[0] != string(long) {
		t.Fatalf("got %d records, %v", len(got), err)
	}
	if srv.tcp.Load() != 1 {
		t.Fatalf("tcp queries %d, want 1", srv.tcp.Load())
	}
}

func TestCacheTTL(t *testing.T) {
	tests := []struct {
		name       string
		record     string
		cfg        Config
		stillFresh time.Duration // the cached answer is served at this age
		expired    time.Duration // and refetched at this age
	}{
		{"record TTL", `ttl.example.org. 60 IN TXT "x"`, Config{}, 59 * time.Second, 60 * time.Second},
		{"min_ttl raises", `ttl.example.org. 5 IN TXT "x"`, Config{MinTTL: registryDuration(time.Minute)}, 59 * time.Second, 60 * time.Second},
		{"max_ttl lowers", `ttl.example.org. 86400 IN TXT "x"`, Config{MaxTTL: registryDuration(10 * time.Second)}, 9 * time.Second, 10 * time.Second},
		{"NXDOMAIN: min(SOA TTL, minimum)", "", Config{}, 29 * time.Second, 30 * time.Second},
		{"NXDOMAIN without SOA: negative_ttl", "-", Config{NegativeTTL: registryDuration(45 * time.Second)}, 44 * time.Second, 45 * time.Second},
		{"NODATA: SOA minimum", `ttl.example.org. 300 IN A 192.0.2.1`, Config{}, 29 * time.Second, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var z *zone
			switch tc.record {
			case "":
				z = newZone(t, testSOA)
			case "-":
				z = newZone(t, "")
			default:
				z = newZone(t, testSOA, tc.record)
			}
			srv := newFakeServer(t, z.handler())
			clock := newClock()
			r := newTestResolver(t, tc.cfg, clock, srv)
			lookup := func() {
				t.Helper()
				_, err := r.LookupTXT(context.Background(), "ttl.example.org")
				if err != nil && !IsNotFound(err) {
					t.Fatalf("lookup: %v", err)
				}
			}
			lookup()
			clock.Advance(tc.stillFresh)
			lookup()
			if srv.queries() != 1 {
				t.Fatalf("at age %v the server saw %d queries, want 1 (cached)", tc.stillFresh, srv.queries())
			}
			clock.Advance(tc.expired - tc.stillFresh)
			lookup()
			if srv.queries() != 2 {
				t.Fatalf("at age %v the server saw %d queries, want 2 (expired)", tc.expired, srv.queries())
			}
			st := r.Stats()
			if st.Hits != 1 || st.Misses != 2 || st.Expired != 1 {
				t.Fatalf("stats %+v, want 1 hit, 2 misses, 1 expired", st)
			}
		})
	}
}

func TestNegativeAnswerFromCacheIsNotFound(t *testing.T) {
	srv := newFakeServer(t, newZone(t, testSOA).handler())
	r := newTestResolver(t, Config{}, newClock(), srv)
	for i := range 3 {
		_, err := r.LookupTXT(context.Background(), "nope.example.org")
		if de := dnsErr(t, err); !de.IsNotFound {
			t.Fatalf("lookup %d: %v is not IsNotFound", i, err)
		}
	}
	if srv.queries() != 1 {
		t.Fatalf("server saw %d queries, want 1", srv.queries())
	}
}

func TestCacheBounded(t *testing.T) {
	srv := newFakeServer(t, newZone(t, testSOA,
		`a.example.org. 300 IN TXT "a"`, `b.example.org. 300 IN TXT "b"`, `c.example.org. 300 IN TXT "c"`).handler())
	r := newTestResolver(t, Config{CacheSize: 2}, newClock(), srv)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently used
		if _, err := r.LookupTXT(ctx, n+".example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.Entries != 2 || st.Evictions != 1 || st.Hits != 1 {
		t.Fatalf("stats %+v, want 2 entries, 1 eviction, 1 hit", st)
	}
	before := srv.queries()
	_, _ = r.LookupTXT(ctx, "a.example.org")
	if srv.queries() != before {
		t.Fatal("a (recently used) was evicted")
	}
	_, _ = r.LookupTXT(ctx, "b.example.org")
	if srv.queries() != before+1 {
		t.Fatal("b (least recently used) was not evicted")
	}
}

func TestConcurrentLookupsCoalesced(t *testing.T) {
	z := testZone(t)
	arrived := make(chan struct{}, 100)
	release := make(chan struct{})
	srv := newFakeServer(t, nil)
	srv.set(func(w dns.ResponseWriter, r *dns.Msg) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-srv.done:
			return
		}
		z.handler()(w, r)
	})
	r := newTestResolver(t, Config{Timeout: registryDuration(10 * time.Second)}, newClock(), srv)
	const n = 20
	joined := make(chan struct{}, n)
	r.testHookJoin = func() { joined <- struct{}{} }

	var wg sync.WaitGroup
	results := make([][]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = r.LookupTXT(context.Background(), "example.org") })
	}
	<-arrived // the first caller's query reached the server
	for range n - 1 {
		<-joined // every other caller joined it
	}
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !slices.Equal(results[i], []string{"v=spf1 -all"}) {
			t.Fatalf("caller %d: %v, %v", i, results[i], errs[i])
		}
	}
	if q := srv.queries(); q != 1 {
		t.Fatalf("server saw %d queries for %d concurrent identical lookups, want 1", q, n)
	}
	if st := r.Stats(); st.Coalesced != n-1 {
		t.Fatalf("Coalesced = %d, want %d", st.Coalesced, n-1)
	}
}

func TestCoalescedCallerLeavingEarly(t *testing.T) {
	z := testZone(t)
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := newFakeServer(t, nil)
	srv.set(func(w dns.ResponseWriter, r *dns.Msg) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-srv.done:
			return
		}
		z.handler()(w, r)
	})
	r := newTestResolver(t, Config{Timeout: registryDuration(10 * time.Second)}, newClock(), srv)
	joined := make(chan struct{}, 1)
	r.testHookJoin = func() { joined <- struct{}{} }

	// A starts the query, B joins it, A gives up: B still gets the answer.
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { _, err := r.LookupTXT(ctxA, "example.org"); errA <- err }()
	<-arrived
	resB := make(chan []string, 1)
	go func() { got, _ := r.LookupTXT(context.Background(), "example.org"); resB <- got }()
	<-joined
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("A: %v", err)
	}
	close(release)
	if got := <-resB; !slices.Equal(got, []string{"v=spf1 -all"}) {
		t.Fatalf("B got %v", got)
	}
	if srv.queries() != 1 {
		t.Fatalf("server saw %d queries, want 1", srv.queries())
	}
}

func TestSoleCallerLeavingCancelsQuery(t *testing.T) {
	arrived := make(chan struct{}, 10)
	srv := newFakeServer(t, func(w dns.ResponseWriter, r *dns.Msg) { arrived <- struct{}{} })
	r := newTestResolver(t, Config{Timeout: registryDuration(30 * time.Second)}, newClock(), srv)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := r.LookupTXT(ctx, "example.org"); errc <- err }()
	<-arrived
	cancel()
	<-errc
	// The query in flight was dropped: a new caller sends a new query at
	// once instead of joining the abandoned one for 30 s.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _, _ = r.LookupTXT(ctx2, "example.org") }()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the second caller joined the abandoned query instead of asking again")
	}
	cancel2()
}

func TestNoServersNeverHangs(t *testing.T) {
	r, err := New(Config{Offline: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	for _, f := range []func() error{
		func() error { _, err := r.LookupTXT(ctx, "example.com"); return err },
		func() error { _, err := r.LookupMX(ctx, "example.com"); return err },
		func() error { _, err := r.LookupIPAddr(ctx, "example.com"); return err },
		func() error { _, err := r.LookupAddr(ctx, "192.0.2.1"); return err },
	} {
		if err := f(); !IsNotFound(err) {
			t.Fatalf("offline lookup: %v, want not found", err)
		}
	}
	if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
		t.Fatalf("offline lookups took %v", elapsed)
	}
	if st := r.Stats(); st.Exchanges != 0 {
		t.Fatalf("offline resolver sent %d queries", st.Exchanges)
	}
}

func TestUnchasedCNAME(t *testing.T) {
	// An authoritative-only server answers a CNAME without the target's
	// records (unbound's local data does this): the resolver asks for the
	// target itself, and both answers are cached.
	z := newZone(t, testSOA,
		`alias.example.org. 300 IN CNAME target.example.org.`,
		`target.example.org. 300 IN A 192.0.2.9`,
	)
	srv := newFakeServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Answer = z.rrs[dns.CanonicalName(r.Question[0].Name)]
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	clock := newClock()
	r := newTestResolver(t, Config{}, clock, srv)
	for range 2 {
		got, err := ipStrings(r.LookupIPAddr(context.Background(), "alias.example.org"))
		if err != nil || !slices.Equal(got, []string{"192.0.2.9"}) {
			t.Fatalf("got %v, %v", got, err)
		}
	}
	// A and AAAA of alias (each a bare CNAME), A and AAAA of target (AAAA
	// is NODATA), once each: the second round came from the cache
	if q := srv.queries(); q != 4 {
		t.Fatalf("server saw %d queries, want 4", q)
	}
	clock.Advance(300 * time.Second)
	_, _ = r.LookupIPAddr(context.Background(), "alias.example.org")
	if q := srv.queries(); q != 8 {
		t.Fatalf("after the CNAME's TTL the server saw %d queries, want 8", q)
	}
}

func TestResultsDoNotAliasTheCache(t *testing.T) {
	srv := newFakeServer(t, testZone(t).handler())
	r := newTestResolver(t, Config{}, newClock(), srv)
	ctx := context.Background()
	first, err := r.LookupIPAddr(ctx, "mx1.example.org")
	if err != nil {
		t.Fatal(err)
	}
	first[0].IP[0] = 10 // a caller scribbling on its result
	second, err := r.LookupIPAddr(ctx, "mx1.example.org")
	if err != nil || second[0].IP.String() != "192.0.2.1" {
		t.Fatalf("cached answer changed by a caller: %v, %v", second, err)
	}
	if srv.queries() != 2 { // A and AAAA once each
		t.Fatalf("server saw %d queries, want 2", srv.queries())
	}
}
