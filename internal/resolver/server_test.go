package resolver

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeServer is an in-process DNS server on 127.0.0.1:0 (UDP and TCP on the
// same port) whose behaviour each test chooses. It counts the queries it
// receives per transport.
type fakeServer struct {
	addr    string
	handler atomic.Value // dns.HandlerFunc
	udp     atomic.Int64
	tcp     atomic.Int64
	done    chan struct{} // closed at cleanup: blocked handlers return
}

func newFakeServer(t testing.TB, h dns.HandlerFunc) *fakeServer {
	t.Helper()
	fs := &fakeServer{done: make(chan struct{})}
	fs.handler.Store(h)
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			t.Fatalf("listen tcp on the udp port: %v", err)
		}
	}
	fs.addr = pc.LocalAddr().String()
	serve := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if w.LocalAddr().Network() == "tcp" {
			fs.tcp.Add(1)
		} else {
			fs.udp.Add(1)
		}
		fs.handler.Load().(dns.HandlerFunc)(w, r)
	})
	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	us := &dns.Server{PacketConn: pc, Handler: serve, NotifyStartedFunc: func() { close(udpStarted) }}
	ts := &dns.Server{Listener: ln, Handler: serve, NotifyStartedFunc: func() { close(tcpStarted) }}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	<-udpStarted
	<-tcpStarted
	t.Cleanup(func() {
		close(fs.done)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = us.ShutdownContext(ctx)
		_ = ts.ShutdownContext(ctx)
	})
	return fs
}

func (fs *fakeServer) set(h dns.HandlerFunc) { fs.handler.Store(h) }
func (fs *fakeServer) queries() int64        { return fs.udp.Load() + fs.tcp.Load() }

// zone is a tiny authoritative data set for the fake server: records in
// master-file syntax, an optional SOA for negative answers.
type zone struct {
	rrs map[string][]dns.RR // canonical name -> records
	soa dns.RR
}

func newZone(t testing.TB, soa string, records ...string) *zone {
	t.Helper()
	z := &zone{rrs: map[string][]dns.RR{}}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		name := dns.CanonicalName(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
	if soa != "" {
		rr, err := dns.NewRR(soa)
		if err != nil {
			t.Fatalf("bad test SOA %q: %v", soa, err)
		}
		z.soa = rr
	}
	return z
}

// handler answers like a recursive resolver would: CNAME chains followed in
// the answer section, NXDOMAIN/NODATA with the SOA in the authority section.
func (z *zone) handler() dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		name := dns.CanonicalName(q.Name)
		for hop := 0; hop < 10; hop++ {
			rrs, ok := z.rrs[name]
			if !ok {
				if hop == 0 || len(m.Answer) > 0 {
					m.Rcode = dns.RcodeNameError
				}
				break
			}
			next := ""
			for _, rr := range rrs {
				switch rr.Header().Rrtype {
				case q.Qtype:
					m.Answer = append(m.Answer, rr)
				case dns.TypeCNAME:
					m.Answer = append(m.Answer, rr)
					next = dns.CanonicalName(rr.(*dns.CNAME).Target)
				}
			}
			if next == "" || q.Qtype == dns.TypeCNAME {
				break
			}
			name = next
		}
		if (m.Rcode == dns.RcodeNameError || len(m.Answer) == 0) && z.soa != nil {
			m.Ns = append(m.Ns, z.soa)
		}
		_ = w.WriteMsg(m)
	}
}

// rcodeHandler answers every query with rcode and nothing else.
func rcodeHandler(rcode int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		_ = w.WriteMsg(m)
	}
}

// silentHandler never answers: the query just goes unanswered.
func silentHandler(w dns.ResponseWriter, r *dns.Msg) {}

// manualClock is a clock that moves only when told to.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *manualClock {
	return &manualClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
}
func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestResolver builds a resolver for the fake servers with the test clock.
func newTestResolver(t testing.TB, cfg Config, clock *manualClock, servers ...*fakeServer) *Resolver {
	t.Helper()
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, s.addr)
	}
	opts := Options{ResolvConf: "/nonexistent/resolv.conf"}
	if clock != nil {
		opts.Now = clock.Now
	}
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func dnsErr(t testing.TB, err error) *net.DNSError {
	t.Helper()
	de, ok := err.(*net.DNSError) // a bare *net.DNSError, as blitiri/spf and go-msgauth assert
	if !ok {
		t.Fatalf("error %v (%T) is not a bare *net.DNSError", err, err)
	}
	return de
}

func mustContain(t testing.TB, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%q does not contain %q", s, sub)
	}
}
