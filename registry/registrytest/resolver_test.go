package registrytest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

const testZone = `
$ORIGIN example.test.
@       IN SOA  ns hostmaster 1 3600 600 86400 60
@       IN TXT  "v=spf1 ip4:192.0.2.0/24 -all"
@       IN MX   20 backup
@       IN MX   10 mail
mail    IN A    192.0.2.25
mail    IN AAAA 2001:db8::25
alias   IN CNAME mail
s1._domainkey IN TXT "v=DKIM1; k=ed25519; " "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
25.2.0.192.in-addr.arpa. IN PTR mail.example.test.
`

func TestResolverAnswersFromZone(t *testing.T) {
	r := registrytest.NewResolver(t, testZone)
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "example.test")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 ip4:192.0.2.0/24 -all"}) {
		t.Errorf("TXT: %q, %v", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "s1._domainkey.example.test.")
	if err != nil || len(txt) != 1 || !strings.HasPrefix(txt[0], "v=DKIM1; k=ed25519; p=11qY") {
		t.Errorf("TXT split over two strings: %q, %v", txt, err)
	}
	mx, err := r.LookupMX(ctx, "Example.Test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mail.example.test." || mx[0].Pref != 10 || mx[1].Host != "backup.example.test." {
		t.Errorf("MX: %v, %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "alias.example.test")
	if err != nil || len(ips) != 2 || ips[0].String() != "192.0.2.25" || ips[1].String() != "2001:db8::25" {
		t.Errorf("A/AAAA through a CNAME: %v, %v", ips, err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.25")
	if err != nil || !slices.Equal(names, []string{"mail.example.test."}) {
		t.Errorf("PTR: %v, %v", names, err)
	}
	for _, lookup := range []func() error{
		func() error { _, err := r.LookupTXT(ctx, "nowhere.example.test"); return err }, // NXDOMAIN under the SOA
		func() error { _, err := r.LookupTXT(ctx, "mail.example.test"); return err },    // NODATA
		func() error { _, err := r.LookupMX(ctx, "other.test"); return err },            // outside the zone: offline
		func() error { _, err := r.LookupIPAddr(ctx, "example.test"); return err },
		func() error { _, err := r.LookupAddr(ctx, "192.0.2.26"); return err },
	} {
		registrytest.RequireDNSError(t, lookup(), registrytest.NXDOMAIN)
	}
}

func TestResolverEmptyZone(t *testing.T) {
	r := registrytest.NewResolver(t, "")
	_, err := r.LookupTXT(context.Background(), "example.com")
	registrytest.RequireDNSError(t, err, registrytest.NXDOMAIN)
}

func TestResolverFailAndClear(t *testing.T) {
	r := registrytest.NewResolver(t, testZone)
	ctx := context.Background()
	r.Fail("Example.Test.", registrytest.ServFail).Fail("192.0.2.25", registrytest.Timeout)
	_, err := r.LookupTXT(ctx, "example.test")
	registrytest.RequireDNSError(t, err, registrytest.ServFail)
	_, err = r.LookupMX(ctx, "example.test")
	registrytest.RequireDNSError(t, err, registrytest.ServFail)
	_, err = r.LookupAddr(ctx, "192.0.2.25")
	registrytest.RequireDNSError(t, err, registrytest.Timeout)
	if de := err.(*net.DNSError); de.Name != "192.0.2.25" {
		t.Errorf("reverse lookup error names %q, want the address", de.Name)
	}
	if _, err := r.LookupIPAddr(ctx, "mail.example.test"); err != nil {
		t.Errorf("a name without a failure: %v", err)
	}
	r.Fail("example.test", 0)
	if _, err := r.LookupTXT(ctx, "example.test"); err != nil {
		t.Errorf("after Fail(name, 0): %v", err)
	}
}

// TestResolverHang: a hanging name blocks until the caller's context ends,
// and then fails as the caller's deadline or cancel.
func TestResolverHang(t *testing.T) {
	r := registrytest.NewResolver(t, testZone).Fail("example.test", registrytest.Hang)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := r.LookupTXT(ctx, "example.test")
	registrytest.RequireDNSError(t, err, registrytest.Hang)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang under a deadline: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.LookupMX(ctx, "example.test"); done <- err }()
	cancel()
	err = <-done
	registrytest.RequireDNSError(t, err, registrytest.Hang)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("hang cancelled: %v", err)
	}
}

// TestEachDNSFailure: the helper runs one subtest per failure, with the
// failure in place.
func TestEachDNSFailure(t *testing.T) {
	var seen []registrytest.DNSFailure
	registrytest.EachDNSFailure(t, testZone, "mail.example.test", func(t *testing.T, f registrytest.DNSFailure, r *registrytest.Resolver) {
		seen = append(seen, f)
		_, err := r.LookupIPAddr(context.Background(), "mail.example.test")
		registrytest.RequireDNSError(t, err, f)
		if !strings.HasSuffix(t.Name(), "/"+f.String()) {
			t.Errorf("subtest %s for %s", t.Name(), f)
		}
	})
	if !slices.Equal(seen, registrytest.DNSFailures()) {
		t.Fatalf("ran %v", seen)
	}
}

// TestRequireDNSErrorFails: the checker refuses wrapped errors and wrong
// flags (run in a throwaway testing.T stand-in).
func TestRequireDNSErrorFails(t *testing.T) {
	for name, tc := range map[string]struct {
		err error
		f   registrytest.DNSFailure
	}{
		"wrapped":         {errors.Join(&net.DNSError{Err: "no such host", IsNotFound: true}), registrytest.NXDOMAIN},
		"not a DNSError":  {errors.New("no such host"), registrytest.NXDOMAIN},
		"temporary as nx": {&net.DNSError{Err: "x", IsTemporary: true}, registrytest.NXDOMAIN},
		"servfail timing": {&net.DNSError{Err: "x", IsTemporary: true, IsTimeout: true}, registrytest.ServFail},
		"timeout no wrap": {&net.DNSError{Err: "x", IsTemporary: true, IsTimeout: true}, registrytest.Timeout},
		"nx as timeout":   {&net.DNSError{Err: "no such host", IsNotFound: true}, registrytest.Timeout},
	} {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			registrytest.RequireDNSError(ft, tc.err, tc.f)
		}()
		if !ft.failed {
			t.Errorf("%s: RequireDNSError(%v, %s) passed", name, tc.err, tc.f)
		}
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}

// failingServer is a DNS server on 127.0.0.1 that fails each name of
// fails as it says (Timeout and Hang: it never answers) and answers
// NXDOMAIN for any other name.
func failingServer(t *testing.T, fails map[string]registrytest.DNSFailure) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			switch fails[dns.CanonicalName(q.Question[0].Name)] {
			case registrytest.Timeout, registrytest.Hang:
				return
			case registrytest.ServFail:
				m.SetRcode(q, dns.RcodeServerFailure)
			default:
				m.SetRcode(q, dns.RcodeNameError)
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestResolverErrorsMatchProduction: for each failure and each lookup, the
// test resolver's error and the production resolver's (Elemta's resolver
// asking a real server on loopback that fails that way) are both bare
// *net.DNSError with the same flags, the same Err (but for the server's
// address), the same Name, and the same answers to the predicates plugins
// and their libraries use.
func TestResolverErrorsMatchProduction(t *testing.T) {
	cases := []struct {
		f          registrytest.DNSFailure
		name, addr string // a name and an address (for PTR) that fail so
	}{
		{registrytest.NXDOMAIN, "a.nx.test", "192.0.2.1"},
		{registrytest.ServFail, "a.sf.test", "192.0.2.2"},
		{registrytest.Timeout, "a.silent.test", "192.0.2.3"},
		{registrytest.Hang, "b.silent.test", "2001:db8::4"},
	}
	fails := map[string]registrytest.DNSFailure{}
	for _, c := range cases {
		arpa, _ := dns.ReverseAddr(c.addr)
		fails[dns.CanonicalName(c.name)], fails[arpa] = c.f, c.f
	}
	server := failingServer(t, fails)
	prod, err := resolver.New(resolver.Config{Servers: []string{server}, Timeout: registry.Duration(150 * time.Millisecond), Attempts: 1, CacheSize: 1}, resolver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kit := registrytest.NewResolver(t, "")
	type lookup func(r registry.Resolver, ctx context.Context, name string) error
	lookups := map[string]lookup{
		"TXT": func(r registry.Resolver, ctx context.Context, name string) error {
			_, err := r.LookupTXT(ctx, name)
			return err
		},
		"MX": func(r registry.Resolver, ctx context.Context, name string) error {
			_, err := r.LookupMX(ctx, name)
			return err
		},
		"IP": func(r registry.Resolver, ctx context.Context, name string) error {
			_, err := r.LookupIPAddr(ctx, name)
			return err
		},
		"PTR": func(r registry.Resolver, ctx context.Context, addr string) error {
			_, err := r.LookupAddr(ctx, addr)
			return err
		},
	}
	for _, c := range cases {
		kit.Fail(c.name, c.f).Fail(c.addr, c.f)
		for typ, lk := range lookups {
			name := c.name
			if typ == "PTR" {
				name = c.addr // the reverse lookup keys on the address, reports under it
			}
			t.Run(c.f.String()+"/"+typ, func(t *testing.T) {
				ctx := context.Background()
				if c.f == registrytest.Hang {
					// the caller's deadline comes before the resolver's timeout
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 30*time.Millisecond)
					defer cancel()
				}
				got, want := lk(kit, ctx, name), lk(prod, ctx, name)
				compareDNSErrors(t, got, want, server)
				registrytest.RequireDNSError(t, want, c.f) // the checker accepts production's error
			})
		}
	}
}

func compareDNSErrors(t *testing.T, got, want error, server string) {
	t.Helper()
	g, ok1 := got.(*net.DNSError)
	w, ok2 := want.(*net.DNSError)
	if !ok1 || !ok2 {
		t.Fatalf("not both bare *net.DNSError: test %T %v, production %T %v", got, got, want, want)
	}
	if gotErr, wantErr := g.Err, strings.ReplaceAll(w.Err, server, registrytest.FailingServer); gotErr != wantErr {
		t.Errorf("Err: test %q, production %q", gotErr, wantErr)
	}
	if g.Name != w.Name {
		t.Errorf("Name: test %q, production %q", g.Name, w.Name)
	}
	preds := map[string]func(error) bool{
		"IsNotFound":                  func(e error) bool { return e.(*net.DNSError).IsNotFound },
		"IsTemporary":                 func(e error) bool { return e.(*net.DNSError).IsTemporary },
		"IsTimeout":                   func(e error) bool { return e.(*net.DNSError).IsTimeout },
		"Temporary()":                 func(e error) bool { return e.(*net.DNSError).Temporary() },
		"Timeout()":                   func(e error) bool { return e.(*net.DNSError).Timeout() },
		"resolver.IsNotFound":         resolver.IsNotFound,
		"resolver.IsTemporary":        resolver.IsTemporary,
		"is os.ErrDeadlineExceeded":   func(e error) bool { return errors.Is(e, os.ErrDeadlineExceeded) },
		"is context.DeadlineExceeded": func(e error) bool { return errors.Is(e, context.DeadlineExceeded) },
		"is context.Canceled":         func(e error) bool { return errors.Is(e, context.Canceled) },
		"unwraps":                     func(e error) bool { return errors.Unwrap(e) != nil },
	}
	for name, p := range preds {
		if p(got) != p(want) {
			t.Errorf("%s: test %v, production %v (test %q, production %q)", name, p(got), p(want), got, want)
		}
	}
}
