package resolver

// Integration tests against the real authoritative DNS (unbound) of the
// project's test environment: tools/testenv/start.sh. Skipped when it is not
// running (failed under CI=true); see pkg/testenv.

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/miekg/dns"
)

func unboundResolver(t *testing.T, server string) *Resolver {
	t.Helper()
	r, err := New(Config{Servers: []string{server}, Timeout: registryDuration(2 * time.Second)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUnbound(t *testing.T) {
	addr := testenv.Require(t, testenv.DNS)
	keys := testenv.Require(t, testenv.Keys)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, server := range []string{addr, testenv.Lookup(testenv.DNS6)} {
		if server == "" {
			continue
		}
		t.Run(server, func(t *testing.T) {
			r := unboundResolver(t, server)
			t.Run("SPF TXT", func(t *testing.T) {
				got, err := r.LookupTXT(ctx, "pass.example.test")
				if err != nil || len(got) != 1 || !strings.HasPrefix(got[0], "v=spf1 ip4:127.0.0.0/8") {
					t.Fatalf("got %q, %v", got, err)
				}
			})
			t.Run("DKIM key split over 255-byte strings", func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join(keys, "rsa2048.dns"))
				if err != nil {
					t.Fatal(err)
				}
				got, err := r.LookupTXT(ctx, "rsa2048._domainkey.example.test")
				if err != nil || len(got) != 1 || got[0] != strings.TrimSpace(string(want)) {
					t.Fatalf("got %q, %v\nwant %q", got, err, want)
				}
			})
			t.Run("several TXT records", func(t *testing.T) {
				got, err := r.LookupTXT(ctx, "multi.example.test")
				slices.Sort(got)
				if err != nil || !slices.Equal(got, []string{"first record", "second record in two strings"}) {
					t.Fatalf("got %q, %v", got, err)
				}
			})
			t.Run("MX", func(t *testing.T) {
				mxs, err := r.LookupMX(ctx, "example.test")
				if err != nil || len(mxs) != 2 || mxs[0].Host != "mail.example.test." || mxs[0].Pref != 10 || mxs[1].Pref != 20 {
					t.Fatalf("got %v, %v", mxs, err)
				}
			})
			t.Run("IPAddr", func(t *testing.T) {
				got, err := ipStrings(r.LookupIPAddr(ctx, "mail.example.test"))
				if err != nil || !slices.Equal(got, []string{"127.0.0.1", "::1"}) {
					t.Fatalf("got %v, %v", got, err)
				}
			})
			t.Run("CNAME", func(t *testing.T) {
				got, err := ipStrings(r.LookupIPAddr(ctx, "alias.example.test"))
				if err != nil || !slices.Equal(got, []string{"127.0.0.1", "::1"}) {
					t.Fatalf("got %v, %v", got, err)
				}
			})
			t.Run("PTR", func(t *testing.T) {
				got, err := r.LookupAddr(ctx, "127.0.0.1")
				if err != nil || !slices.Equal(got, []string{"mail.example.test."}) {
					t.Fatalf("got %v, %v", got, err)
				}
			})
			t.Run("NXDOMAIN cached with the SOA's negative TTL", func(t *testing.T) {
				_, err := r.LookupTXT(ctx, "nope.example.test")
				if de := dnsErr(t, err); !de.IsNotFound || de.Temporary() {
					t.Fatalf("got %v", err)
				}
				before := r.Stats()
				_, err = r.LookupTXT(ctx, "nope.example.test")
				after := r.Stats()
				if !IsNotFound(err) || after.Exchanges != before.Exchanges || after.Hits != before.Hits+1 {
					t.Fatalf("second lookup: %v; stats before %+v after %+v", err, before, after)
				}
			})
			t.Run("NODATA", func(t *testing.T) {
				if _, err := r.LookupTXT(ctx, "none.example.test"); !IsNotFound(err) {
					t.Fatalf("got %v", err)
				}
			})
			t.Run("outside the test zone: NXDOMAIN, never recursion", func(t *testing.T) {
				if _, err := r.LookupIPAddr(ctx, "www.google.com"); !IsNotFound(err) {
					t.Fatalf("got %v", err)
				}
			})
		})
	}
}

func TestUnboundTTLs(t *testing.T) {
	addr := testenv.Require(t, testenv.DNS)
	clock := newClock()
	r, err := New(Config{Servers: []string{addr}}, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lookup := func(name string) {
		t.Helper()
		if _, err := r.LookupTXT(ctx, name); err != nil && !IsNotFound(err) {
			t.Fatal(err)
		}
	}
	// positive: TTL 300 in the zone
	lookup("pass.example.test")
	clock.Advance(299 * time.Second)
	lookup("pass.example.test")
	if st := r.Stats(); st.Exchanges != 1 {
		t.Fatalf("within the TTL: %d exchanges, want 1", st.Exchanges)
	}
	clock.Advance(time.Second)
	lookup("pass.example.test")
	if st := r.Stats(); st.Exchanges != 2 {
		t.Fatalf("after the TTL: %d exchanges, want 2", st.Exchanges)
	}
	// negative: min(SOA TTL 300, minimum 60) = 60 s
	lookup("gone.example.test")
	clock.Advance(59 * time.Second)
	lookup("gone.example.test")
	if st := r.Stats(); st.Exchanges != 3 {
		t.Fatalf("within the negative TTL: %d exchanges, want 3", st.Exchanges)
	}
	clock.Advance(time.Second)
	lookup("gone.example.test")
	if st := r.Stats(); st.Exchanges != 4 {
		t.Fatalf("after the negative TTL: %d exchanges, want 4", st.Exchanges)
	}
}

func TestUnboundSPF(t *testing.T) {
	r := unboundResolver(t, testenv.Require(t, testenv.DNS))
	tests := []struct {
		ip, sender string
		want       spf.Result
	}{
		{"127.0.0.1", "a@pass.example.test", spf.Pass},
		{"203.0.113.5", "a@pass.example.test", spf.Fail},
		{"203.0.113.5", "a@fail.example.test", spf.Fail},
		{"203.0.113.5", "a@softfail.example.test", spf.SoftFail},
		{"203.0.113.5", "a@neutral.example.test", spf.Neutral},
		{"127.0.0.1", "a@include.example.test", spf.Pass},
		{"192.0.2.2", "a@mx.example.test", spf.Pass},
		{"127.0.0.1", "a@a.example.test", spf.Pass},
		{"127.0.0.1", "a@none.example.test", spf.None},
		{"127.0.0.1", "a@nope.example.test", spf.None},
		{"127.0.0.1", "a@permerror.example.test", spf.PermError},
		{"127.0.0.1", "a@voidlimit.example.test", spf.PermError},
		{"127.0.0.1", "a@twospf.example.test", spf.PermError},
	}
	for _, tc := range tests {
		t.Run(tc.sender+"/"+tc.ip, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := spf.CheckHostWithSender(net.ParseIP(tc.ip), "mail.example.test", tc.sender,
				spf.WithResolver(r), spf.WithContext(ctx))
			if got != tc.want {
				t.Fatalf("spf = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// TestUnboundTCP forces TCP by asking for a record over TCP directly with
// the resolver's transport: unbound answers on both.
func TestUnboundTCP(t *testing.T) {
	addr := testenv.Require(t, testenv.DNS)
	r := unboundResolver(t, addr)
	q := new(dns.Msg)
	q.SetQuestion("rsa2048._domainkey.example.test.", dns.TypeTXT)
	resp, err := r.exchangeOver(context.Background(), "tcp", r.servers[0], q)
	if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("tcp exchange: %v, %v", resp, err)
	}
}
