package spf

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// testZone has one domain per SPF result, for client 192.0.2.10.
func testZone() *zone {
	z := newZone()
	z.TXT("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("fail.test", "v=spf1 -all")
	z.TXT("softfail.test", "v=spf1 ~all")
	z.TXT("neutral.test", "v=spf1 ?all")
	z.A("none.test", "192.0.2.99") // exists, no TXT
	z.TXT("permerror.test", "v=spf1 ip4:not-an-address -all")
	z.TXT("twospf.test", "v=spf1 -all", "v=spf1 +all")
	z.TXT("temperror.test", "v=spf1 include:slow.test -all").Timeout("slow.test")
	z.TXT("mx.pass.test", "v=spf1 a -all").A("mx.pass.test", "192.0.2.10")
	z.TXT("helofail.test", "v=spf1 -all")
	z.TXT("late-error.test", "v=spf1 +all foo")
	return z
}

var client = netip.MustParseAddr("192.0.2.10")

func newChecker(t *testing.T, cfg Config, r registry.Resolver) *Checker {
	t.Helper()
	c, err := New(cfg, registry.Host{Resolver: r, Hostname: "mx.example.org", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return c
}

func TestEvaluateResults(t *testing.T) {
	tests := []struct {
		name, helo, from string
		want             registry.AuthResult
		identity, domain string
		heloWant         registry.AuthResult // "" when no HELO result is expected
	}{
		{"pass", "mx.pass.test", "a@pass.test", registry.AuthPass, "mailfrom", "pass.test", registry.AuthPass},
		{"fail", "mx.pass.test", "a@fail.test", registry.AuthFail, "mailfrom", "fail.test", registry.AuthPass},
		{"softfail", "mx.pass.test", "a@softfail.test", registry.AuthSoftFail, "mailfrom", "softfail.test", registry.AuthPass},
		{"neutral", "mx.pass.test", "a@neutral.test", registry.AuthNeutral, "mailfrom", "neutral.test", registry.AuthPass},
		{"none (NODATA)", "mx.pass.test", "a@none.test", registry.AuthNone, "mailfrom", "none.test", registry.AuthPass},
		{"none (NXDOMAIN)", "mx.pass.test", "a@nx.test", registry.AuthNone, "mailfrom", "nx.test", registry.AuthPass},
		{"permerror", "mx.pass.test", "a@permerror.test", registry.AuthPermError, "mailfrom", "permerror.test", registry.AuthPass},
		{"permerror two records", "mx.pass.test", "a@twospf.test", registry.AuthPermError, "mailfrom", "twospf.test", registry.AuthPass},
		{"permerror after a match", "mx.pass.test", "a@late-error.test", registry.AuthPermError, "mailfrom", "late-error.test", registry.AuthPass},
		{"temperror", "mx.pass.test", "a@temperror.test", registry.AuthTempError, "mailfrom", "temperror.test", registry.AuthPass},
		{"null sender uses HELO", "mx.pass.test", "", registry.AuthPass, "helo", "mx.pass.test", ""},
		{"null sender HELO fail", "helofail.test", "", registry.AuthFail, "helo", "helofail.test", ""},
		{"empty local part is postmaster", "mx.pass.test", "@pass.test", registry.AuthPass, "mailfrom", "pass.test", registry.AuthPass},
		{"HELO address literal not checked", "[192.0.2.10]", "a@pass.test", registry.AuthPass, "mailfrom", "pass.test", ""},
		{"HELO single label is none", "localhost", "", registry.AuthNone, "helo", "localhost", ""},
		{"malformed domain", "mx.pass.test", "a@bad..test", registry.AuthNone, "mailfrom", "bad..test", registry.AuthPass},
	}
	c := newChecker(t, DefaultConfig(), testZone())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := c.Evaluate(context.Background(), client, tc.helo, tc.from)
			require.Equal(t, tc.want, res.Result, res.Explanation)
			require.Equal(t, tc.identity, res.Identity)
			require.Equal(t, tc.domain, res.Domain)
			require.Equal(t, client.String(), res.IP)
			if tc.heloWant == "" {
				require.Nil(t, res.HELO)
			} else {
				require.NotNil(t, res.HELO)
				require.Equal(t, tc.heloWant, res.HELO.Result)
			}
		})
	}
}

func TestCheckHELODisabled(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CheckHELO = false
	z := testZone()
	res := newChecker(t, cfg, z).Evaluate(context.Background(), client, "mx.pass.test", "a@fail.test")
	require.Equal(t, registry.AuthFail, res.Result)
	require.Nil(t, res.HELO)
	require.Equal(t, 1, z.queries, "only the MAIL FROM identity is looked up")
}

// chain returns a zone where limit.test's record has n a: terms whose
// names resolve (to an address other than the client), then -all.
func chain(n int, void bool) *zone {
	z := newZone()
	var terms []string
	for i := range n {
		name := fmt.Sprintf("h%d.limit.test", i)
		terms = append(terms, "a:"+name)
		if !void {
			z.A(name, "198.51.100.1")
		}
	}
	z.TXT("limit.test", "v=spf1 "+strings.Join(terms, " ")+" -all")
	return z
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name      string
		lookup    int
		void      int
		terms     int
		voidTerms bool
		want      registry.AuthResult
	}{
		{"10 lookups at the default limit", 10, 2, 10, false, registry.AuthFail},
		{"11 lookups over the default limit", 10, 2, 11, false, registry.AuthPermError},
		{"3 lookups at limit 3", 3, 2, 3, false, registry.AuthFail},
		{"4 lookups over limit 3", 3, 2, 4, false, registry.AuthPermError},
		{"2 void lookups at the default limit", 10, 2, 2, true, registry.AuthFail},
		{"3 void lookups over the default limit", 10, 2, 3, true, registry.AuthPermError},
		{"0 void lookups allowed", 10, 0, 1, true, registry.AuthPermError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.LookupLimit, cfg.VoidLookupLimit = tc.lookup, tc.void
			c := newChecker(t, cfg, chain(tc.terms, tc.voidTerms))
			res := c.Evaluate(context.Background(), client, "", "a@limit.test")
			require.Equal(t, tc.want, res.Result, res.Explanation)
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name           string
		lookup, void   int
		wantErrContain string
		cache          int // record_cache_size
	}{
		{"defaults", 10, 2, "", DefaultRecordCacheSize},
		{"lookup 1", 1, 2, "", DefaultRecordCacheSize},
		{"lookup 0", 0, 2, "lookup_limit = 0", DefaultRecordCacheSize},
		{"lookup 11", 11, 2, "lookup_limit = 11", DefaultRecordCacheSize},
		{"void 0", 10, 0, "", DefaultRecordCacheSize},
		{"void 10", 10, 10, "", DefaultRecordCacheSize},
		{"void -1", 10, -1, "void_lookup_limit = -1", DefaultRecordCacheSize},
		{"void 11", 10, 11, "void_lookup_limit = 11", DefaultRecordCacheSize},
		{"record cache 0", 10, 2, "", 0},
		{"record cache 100000", 10, 2, "", 100000},
		{"record cache -1", 10, 2, "record_cache_size = -1: must be between 0 and 100000", -1},
		{"record cache 100001", 10, 2, "record_cache_size = 100001: must be between 0 and 100000", 100001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.LookupLimit, cfg.VoidLookupLimit = tc.lookup, tc.void
			cfg.RecordCacheSize = tc.cache
			_, err := New(cfg, registry.Host{Resolver: newZone()})
			if tc.wantErrContain == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErrContain)
			}
		})
	}
}

// blockingResolver answers nothing until its context ends.
type blockingResolver struct{}

func (blockingResolver) LookupTXT(ctx context.Context, _ string) ([]string, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("lookup: %w", ctx.Err())
}
func (blockingResolver) LookupMX(ctx context.Context, _ string) ([]*net.MX, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (blockingResolver) LookupIPAddr(ctx context.Context, _ string) ([]net.IPAddr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (blockingResolver) LookupAddr(ctx context.Context, _ string) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCancelledContextIsTempError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := newChecker(t, DefaultConfig(), blockingResolver{}).Evaluate(ctx, client, "", "a@pass.test")
	require.Equal(t, registry.AuthTempError, res.Result)
}

func TestCheckSPF(t *testing.T) {
	c := newChecker(t, DefaultConfig(), testZone())
	tests := []struct {
		ip, domain string
		want       registry.AuthResult
		identity   string
	}{
		{"192.0.2.10", "pass.test", registry.AuthPass, "helo"},
		{"192.0.2.10", "someone@fail.test", registry.AuthFail, "mailfrom"},
		{"::ffff:192.0.2.10", "pass.test", registry.AuthPass, "helo"},
	}
	for _, tc := range tests {
		res, err := c.CheckSPF(context.Background(), tc.ip, tc.domain)
		require.NoError(t, err)
		require.Equal(t, tc.want, res.Result, tc.domain)
		require.Equal(t, tc.identity, res.Identity)
	}
	_, err := c.CheckSPF(context.Background(), "not-an-ip", "pass.test")
	require.ErrorContains(t, err, "client address")
}

func TestValidateRecord(t *testing.T) {
	tests := []struct {
		rec   string
		valid bool
	}{
		{"v=spf1", true},
		{"v=spf1 -all", true},
		{"v=spf1 a mx ptr a/24 mx//64 a:example.com/24//64 include:_spf.example.com ~all", true},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.%{l1r+-}._spf.%{d} -all", true},
		{"v=spf1 redirect=_spf.example.com", true},
		{"v=spf1 -all exp=explain._spf.%{d}", true},
		{"v=spf1 a:foo.example.com. -all", true},
		{"v=spf1 foo=bar -all", true},
		{"v=spf1 -all foo", false},
		{"v=spf1 ip4:192.0.2.0/032", false},
		{"v=spf1 ip4:192.0.2.0/33", false},
		{"v=spf1 ip6:2001:db8::/129", false},
		{"v=spf1 ip4:2001:db8::", false},
		{"v=spf1 a:foo-bar -all", false},
		{"v=spf1 a:111.222.33.44", false},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", false},
		{"v=spf1 exp=a.example.com exp=b.example.com -all", false},
		{"v=spf1 redirect=", false},
		{"v=spf1 exists:%{q}.example.com", false},
		{"v=spf1 exists:%{c}.example.com", false},
		{"v=spf1 a:%", false},
		{"v=spf1 -all \x01", false},
		{"v=spf1 a:caf\xc3\xa9.example.com", false},
	}
	for _, tc := range tests {
		err := validateRecord(tc.rec)
		if tc.valid {
			require.NoError(t, err, tc.rec)
		} else {
			require.ErrorIs(t, err, ErrInvalidRecord, tc.rec)
		}
	}
}

// Record syntax is checked once per text: an invalid record stays
// permerror when it comes again, and a record fixed in DNS passes at once.
func TestRecordCache(t *testing.T) {
	for _, size := range []int{0, 1, DefaultRecordCacheSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			z := newZone().TXT("broken.test", "v=spf1 ip4:192.0.2.1 foo:bar -all")
			cfg := DefaultConfig()
			cfg.RecordCacheSize = size
			c, err := New(cfg, registry.Host{Resolver: z, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			for range 2 {
				res, err := c.CheckSPF(context.Background(), "192.0.2.1", "a@broken.test")
				require.NoError(t, err)
				require.Equal(t, registry.AuthPermError, res.Result, res.Explanation)
			}
			z.set("broken.test").txt = []string{"v=spf1 ip4:192.0.2.1 -all"}
			res, err := c.CheckSPF(context.Background(), "192.0.2.1", "a@broken.test")
			require.NoError(t, err)
			require.Equal(t, registry.AuthPass, res.Result, res.Explanation)
			require.Equal(t, min(size, 2), c.records.Len())
		})
	}
}

// An internationalized MAIL FROM domain in UTF-8 is checked at its
// A-label, where its record is published (RFC 8616 §4); one that does not
// convert is "none", with no lookup.
func TestInternationalizedDomain(t *testing.T) {
	z := newZone().TXT("xn--exmple-cua.test", "v=spf1 ip4:192.0.2.0/24 -all")
	c := newChecker(t, DefaultConfig(), z)
	for _, tc := range []struct {
		from   string
		ip     string
		want   registry.AuthResult
		domain string
	}{
		{"anna@exämple.test", "192.0.2.10", registry.AuthPass, "xn--exmple-cua.test"},
		{"anna@EXÄMPLE.test", "192.0.2.10", registry.AuthPass, "xn--exmple-cua.test"},
		{"anna@exämple.test", "198.51.100.1", registry.AuthFail, "xn--exmple-cua.test"},
		{"anna@xn--exmple-cua.test", "192.0.2.10", registry.AuthPass, "xn--exmple-cua.test"},
		{"anna@ex\u200dample.test", "192.0.2.10", registry.AuthNone, "ex\u200dample.test"},
	} {
		t.Run(tc.from, func(t *testing.T) {
			res := c.Evaluate(context.Background(), netip.MustParseAddr(tc.ip), "", tc.from)
			require.Equal(t, tc.want, res.Result, res.Explanation)
			require.Equal(t, tc.domain, res.Domain)
		})
	}
}
