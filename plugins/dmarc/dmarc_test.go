package dmarc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// txtZone is an in-process DNS that answers TXT queries only.
type txtZone struct {
	mu   sync.Mutex
	txt  map[string][]string
	errs map[string]error
	// queried records every name asked, in order.
	queried []string
}

func (z *txtZone) LookupTXT(ctx context.Context, name string) ([]string, error) {
	z.mu.Lock()
	z.queried = append(z.queried, name)
	z.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if err := z.errs[name]; err != nil {
		return nil, err
	}
	if v, ok := z.txt[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}
func (z *txtZone) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, fmt.Errorf("unexpected MX lookup")
}
func (z *txtZone) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, fmt.Errorf("unexpected address lookup")
}
func (z *txtZone) LookupAddr(context.Context, string) ([]string, error) {
	return nil, fmt.Errorf("unexpected PTR lookup")
}

func testZone() *txtZone {
	return &txtZone{
		txt: map[string][]string{
			"_dmarc.example.com":   {"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"},
			"_dmarc.strict.com":    {"v=DMARC1; p=reject; adkim=s; aspf=s"},
			"_dmarc.none.com":      {"v=DMARC1; p=none"},
			"_dmarc.pct.com":       {"v=DMARC1; p=reject; pct=50"},
			"_dmarc.pctq.com":      {"v=DMARC1; p=quarantine; pct=50"},
			"_dmarc.pct0.com":      {"v=DMARC1; p=reject; pct=0"},
			"_dmarc.rua.com":       {"v=DMARC1; rua=mailto:x@rua.com"},
			"_dmarc.badsp.com":     {"v=DMARC1; p=reject; sp=bogus; rua=mailto:x@badsp.com"},
			"_dmarc.nop.com":       {"v=DMARC1; adkim=s"},
			"_dmarc.badpct.com":    {"v=DMARC1; p=reject; pct=abc"},
			"_dmarc.two.com":       {"v=DMARC1; p=reject", "v=DMARC1; p=none"},
			"_dmarc.other.com":     {"google-site-verification=x", "v=DMARC1; p=quarantine", "v=DMARC2; p=none"},
			"_dmarc.lower.com":     {"v=dmarc1; p=reject"},
			"_dmarc.example.co.uk": {"v=DMARC1; p=reject"},
		},
		errs: map[string]error{
			"_dmarc.temp.com":     &net.DNSError{Err: "i/o timeout", Name: "_dmarc.temp.com", IsTimeout: true, IsTemporary: true},
			"_dmarc.servfail.com": &net.DNSError{Err: "server misbehaving", Name: "_dmarc.servfail.com", IsTemporary: true},
		},
	}
}

func spfPass(domain string) *registry.SPFResult {
	return &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: domain, IP: "192.0.2.1"}
}

func dkimSig(domain string, r registry.AuthResult) *registry.DKIMResult {
	return &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: domain, Selector: "s", Result: r}}}
}

func message(t *testing.T, from ...string) *registry.Message {
	t.Helper()
	var b strings.Builder
	for _, f := range from {
		b.WriteString("From: " + f + "\r\n")
	}
	b.WriteString("Subject: test\r\n\r\nbody\r\n")
	m, err := registry.ParseMessage([]byte(b.String()), registry.Envelope{})
	require.NoError(t, err)
	return m
}

func newChecker(t *testing.T, cfg Config, z registry.Resolver, sample int) *Checker {
	t.Helper()
	c, err := New(cfg, registry.Host{Resolver: z, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	c.SetSampler(func() int { return sample })
	return c
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name         string
		from         []string
		spf          *registry.SPFResult
		dkim         *registry.DKIMResult
		sample       int
		want         registry.AuthResult
		policy       string
		domain       string
		policyDomain string
		spfAligned   bool
		dkimAligned  bool
	}{
		// Alignment (RFC 7489 §3.1).
		{name: "spf exact, relaxed", from: []string{"a@example.com"}, spf: spfPass("example.com"),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "spf subdomain, relaxed", from: []string{"a@example.com"}, spf: spfPass("bounce.example.com"),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "spf parent of From, relaxed", from: []string{"a@news.example.com"}, spf: spfPass("example.com"),
			want: registry.AuthPass, policy: "quarantine", domain: "news.example.com", policyDomain: "example.com", spfAligned: true},
		{name: "spf exact, strict", from: []string{"a@strict.com"}, spf: spfPass("strict.com"),
			want: registry.AuthPass, policy: "reject", domain: "strict.com", policyDomain: "strict.com", spfAligned: true},
		{name: "spf subdomain, strict", from: []string{"a@strict.com"}, spf: spfPass("bounce.strict.com"),
			want: registry.AuthFail, policy: "reject", domain: "strict.com", policyDomain: "strict.com"},
		{name: "spf case-insensitive", from: []string{"a@EXAMPLE.com"}, spf: spfPass("Example.COM."),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "spf softfail never aligns", from: []string{"a@example.com"},
			spf:  &registry.SPFResult{Result: registry.AuthSoftFail, Domain: "example.com"},
			want: registry.AuthFail, policy: "reject", domain: "example.com", policyDomain: "example.com"},
		{name: "spf pass for an unrelated domain", from: []string{"a@example.com"}, spf: spfPass("example.org"),
			want: registry.AuthFail, policy: "reject", domain: "example.com", policyDomain: "example.com"},
		{name: "spf pass across a public suffix is not aligned", from: []string{"a@x.example.co.uk"}, spf: spfPass("other.co.uk"),
			want: registry.AuthFail, policy: "reject", domain: "x.example.co.uk", policyDomain: "example.co.uk"},
		{name: "spf pass under a multi-label public suffix", from: []string{"a@x.example.co.uk"}, spf: spfPass("example.co.uk"),
			want: registry.AuthPass, policy: "reject", domain: "x.example.co.uk", policyDomain: "example.co.uk", spfAligned: true},
		{name: "dkim exact", from: []string{"a@example.com"}, dkim: dkimSig("example.com", registry.AuthPass),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", dkimAligned: true},
		{name: "dkim subdomain, relaxed", from: []string{"a@example.com"}, dkim: dkimSig("mail.example.com", registry.AuthPass),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", dkimAligned: true},
		{name: "dkim subdomain, strict", from: []string{"a@strict.com"}, dkim: dkimSig("mail.strict.com", registry.AuthPass),
			want: registry.AuthFail, policy: "reject", domain: "strict.com", policyDomain: "strict.com"},
		{name: "dkim exact, strict", from: []string{"a@strict.com"}, dkim: dkimSig("strict.com", registry.AuthPass),
			want: registry.AuthPass, policy: "reject", domain: "strict.com", policyDomain: "strict.com", dkimAligned: true},
		{name: "dkim failing signature never aligns", from: []string{"a@example.com"}, dkim: dkimSig("example.com", registry.AuthFail),
			want: registry.AuthFail, policy: "reject", domain: "example.com", policyDomain: "example.com"},
		{name: "dkim one aligned pass among several", from: []string{"a@example.com"},
			dkim: &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{
				{Domain: "esp.net", Result: registry.AuthPass}, {Domain: "example.com", Result: registry.AuthFail}, {Domain: "example.com", Result: registry.AuthPass}}},
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", dkimAligned: true},
		{name: "both aligned", from: []string{"a@example.com"}, spf: spfPass("example.com"), dkim: dkimSig("example.com", registry.AuthPass),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true, dkimAligned: true},
		{name: "no spf or dkim results", from: []string{"a@example.com"},
			want: registry.AuthFail, policy: "reject", domain: "example.com", policyDomain: "example.com"},

		// Policy discovery and p/sp (§6.6.3).
		{name: "subdomain falls back to the organizational domain's sp", from: []string{"a@sub.example.com"},
			want: registry.AuthFail, policy: "quarantine", domain: "sub.example.com", policyDomain: "example.com"},
		{name: "subdomain without sp uses p", from: []string{"a@deep.sub.strict.com"},
			want: registry.AuthFail, policy: "reject", domain: "deep.sub.strict.com", policyDomain: "strict.com"},
		{name: "p=none", from: []string{"a@none.com"}, want: registry.AuthFail, policy: "none", domain: "none.com", policyDomain: "none.com"},
		{name: "record without p but with rua is p=none", from: []string{"a@rua.com"},
			want: registry.AuthFail, policy: "none", domain: "rua.com", policyDomain: "rua.com"},
		{name: "invalid sp with rua is p=none", from: []string{"a@badsp.com"},
			want: registry.AuthFail, policy: "none", domain: "badsp.com", policyDomain: "badsp.com"},
		{name: "record without p or rua is discarded", from: []string{"a@nop.com"}, want: registry.AuthNone, domain: "nop.com"},
		{name: "non-DMARC TXT records ignored", from: []string{"a@other.com"},
			want: registry.AuthFail, policy: "quarantine", domain: "other.com", policyDomain: "other.com"},
		{name: "v=dmarc1 is not DMARC1", from: []string{"a@lower.com"}, want: registry.AuthNone, domain: "lower.com"},
		{name: "two records: no policy", from: []string{"a@two.com"}, want: registry.AuthNone, domain: "two.com"},
		{name: "no record anywhere", from: []string{"a@nodmarc.org"}, want: registry.AuthNone, domain: "nodmarc.org"},
		{name: "no record, public suffix From", from: []string{"a@co.uk"}, want: registry.AuthNone, domain: "co.uk"},
		{name: "pass without policy is none", from: []string{"a@nodmarc.org"}, spf: spfPass("nodmarc.org"), want: registry.AuthNone, domain: "nodmarc.org"},

		// Errors.
		{name: "unparsable record is permerror", from: []string{"a@badpct.com"}, want: registry.AuthPermError, domain: "badpct.com", policyDomain: "badpct.com"},
		{name: "timeout is temperror", from: []string{"a@temp.com"}, want: registry.AuthTempError, domain: "temp.com"},
		{name: "servfail is temperror", from: []string{"a@servfail.com"}, want: registry.AuthTempError, domain: "servfail.com"},

		// pct sampling (§6.6.4).
		{name: "pct=50 sampled", from: []string{"a@pct.com"}, sample: 49, want: registry.AuthFail, policy: "reject", domain: "pct.com", policyDomain: "pct.com"},
		{name: "pct=50 not sampled: reject becomes quarantine", from: []string{"a@pct.com"}, sample: 50, want: registry.AuthFail, policy: "quarantine", domain: "pct.com", policyDomain: "pct.com"},
		{name: "pct=50 not sampled: quarantine becomes none", from: []string{"a@pctq.com"}, sample: 99, want: registry.AuthFail, policy: "none", domain: "pctq.com", policyDomain: "pctq.com"},
		{name: "pct=0 never sampled", from: []string{"a@pct0.com"}, sample: 0, want: registry.AuthFail, policy: "quarantine", domain: "pct0.com", policyDomain: "pct0.com"},
		{name: "pct does not touch a pass", from: []string{"a@pct.com"}, spf: spfPass("pct.com"), sample: 99, want: registry.AuthPass, policy: "reject", domain: "pct.com", policyDomain: "pct.com", spfAligned: true},

		// From fields (§6.6.1).
		{name: "no From field", want: registry.AuthNone},
		{name: "display name and angle address", from: []string{`"Example, Inc." <a@example.com>`}, spf: spfPass("example.com"),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "unparsable display name, address still found", from: []string{`Bad "quote <a@example.com>`}, spf: spfPass("example.com"),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "From without address", from: []string{"undisclosed"}, want: registry.AuthPermError},
		{name: "two addresses, one domain", from: []string{"a@example.com, b@example.com"}, spf: spfPass("example.com"),
			want: registry.AuthPass, policy: "reject", domain: "example.com", policyDomain: "example.com", spfAligned: true},
		{name: "two domains: the failing one decides", from: []string{"a@example.com, b@strict.com"}, spf: spfPass("example.com"),
			want: registry.AuthFail, policy: "reject", domain: "strict.com", policyDomain: "strict.com"},
		{name: "two domains: strictest failing policy", from: []string{"a@none.com, b@example.com"},
			want: registry.AuthFail, policy: "reject", domain: "example.com", policyDomain: "example.com"},
		{name: "two From fields are evaluated like two addresses", from: []string{"a@example.com", "b@none.com"}, spf: spfPass("example.com"),
			want: registry.AuthFail, policy: "none", domain: "none.com", policyDomain: "none.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(t, DefaultConfig(), testZone(), tc.sample)
			res := c.Evaluate(context.Background(), message(t, tc.from...), tc.spf, tc.dkim)
			require.Equal(t, tc.want, res.Result, res.Reason)
			require.Equal(t, tc.policy, res.Policy, "policy")
			require.Equal(t, tc.domain, res.Domain, "domain")
			require.Equal(t, tc.policyDomain, res.PolicyDomain, "policy domain")
			require.Equal(t, tc.spfAligned, res.SPFAligned, "spf aligned")
			require.Equal(t, tc.dkimAligned, res.DKIMAligned, "dkim aligned")
		})
	}
}

func TestLookupOrder(t *testing.T) {
	z := testZone()
	newChecker(t, DefaultConfig(), z, 0).Evaluate(context.Background(), message(t, "a@x.sub.example.com"), nil, nil)
	require.Equal(t, []string{"_dmarc.x.sub.example.com", "_dmarc.example.com"}, z.queried)
}

// TestMaxFromDomains: up to the limit every domain is evaluated; one more
// is permerror and, with enforce, on_unparseable_from (reject), unless an
// evaluated domain failed, which stays a failure.
func TestMaxFromDomains(t *testing.T) {
	tests := []struct {
		limit, domains int
		tld            string // example.com fails (sp=quarantine), nodmarc.org has no policy
		want           registry.AuthResult
		action         registry.Action
	}{
		{1, 1, "nodmarc.org", registry.AuthNone, registry.Accept},
		{1, 2, "nodmarc.org", registry.AuthPermError, registry.Reject},
		{5, 5, "nodmarc.org", registry.AuthNone, registry.Accept},
		{5, 6, "nodmarc.org", registry.AuthPermError, registry.Reject},
		{5, 5, "example.com", registry.AuthFail, registry.Quarantine},
		{5, 6, "example.com", registry.AuthFail, registry.Reject},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d of %d under %s", tc.domains, tc.limit, tc.tld), func(t *testing.T) {
			var addrs []string
			for i := range tc.domains {
				addrs = append(addrs, fmt.Sprintf("a@d%d.%s", i, tc.tld))
			}
			cfg := DefaultConfig()
			cfg.Enforce = true
			cfg.MaxFromDomains = tc.limit
			c := newChecker(t, cfg, testZone(), 0)
			o := c.evaluate(context.Background(), message(t, strings.Join(addrs, ", ")), nil, nil)
			require.Equal(t, tc.want, o.res.Result, o.res.Reason)
			require.Equal(t, tc.action, c.verdict(o).Action)
		})
	}
	for _, bad := range []int{0, 101} {
		cfg := DefaultConfig()
		cfg.MaxFromDomains = bad
		_, err := New(cfg, registry.Host{})
		require.ErrorContains(t, err, "max_from_domains")
	}
}

func TestCheckDMARC(t *testing.T) {
	c := newChecker(t, DefaultConfig(), testZone(), 0)
	res, err := c.CheckDMARC(context.Background(), message(t, "a@example.com"))
	require.NoError(t, err)
	require.Equal(t, registry.AuthFail, res.Result)
	_, err = c.CheckDMARC(context.Background(), nil)
	require.Error(t, err)

	// With the session's ProcessingContext in ctx, the SPF result aligns.
	msg := message(t, "a@example.com")
	pc := registry.NewProcessingContext(msg, nil)
	ctx := registry.WithProcessingContext(context.Background(), pc)
	pc.AddResult(&registry.Result{Plugin: "spf", Data: &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "example.com"}})
	res, err = c.CheckDMARC(ctx, msg)
	require.NoError(t, err)
	require.Equal(t, registry.AuthPass, res.Result)
	require.True(t, res.SPFAligned)
}

// TestFromDomainsBound: a message with thousands of From domains is not
// read past the limit (each new domain is compared with every one found,
// so reading them all costs quadratic time).
func TestFromDomainsBound(t *testing.T) {
	tests := []struct {
		name          string
		fields, addrs int // From fields, addresses per field
	}{
		{"many fields", 20000, 1},
		{"one field, many addresses", 1, 20000},
		{"many fields, many addresses", 200, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var from []string
			n := 0
			for range tc.fields {
				var addrs []string
				for range tc.addrs {
					addrs = append(addrs, fmt.Sprintf("a@d%d.example.org", n))
					n++
				}
				from = append(from, strings.Join(addrs, ", "))
			}
			msg := message(t, from...)
			a := authorDomains(msg.Header, 5)
			require.Len(t, a.domains, 5)
			require.Contains(t, a.problem, "max_from_domains")
			res := newChecker(t, DefaultConfig(), testZone(), 0).Evaluate(context.Background(), msg, nil, nil)
			require.Equal(t, registry.AuthPermError, res.Result, res.Reason)
			require.Contains(t, res.Reason, "max_from_domains")
		})
	}
}

// Parsed records are kept by their text: a record that changes is read
// afresh at once, and record_cache_size bounds what is kept (0: nothing).
func TestRecordCache(t *testing.T) {
	for _, size := range []int{0, 1, DefaultRecordCacheSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			z := testZone()
			cfg := DefaultConfig()
			cfg.RecordCacheSize = size
			c := newChecker(t, cfg, z, 0)
			eval := func(domain string) string {
				o := c.evaluate(context.Background(), message(t, "a@"+domain), nil, nil)
				require.NotNil(t, o.res)
				return o.res.Policy
			}
			require.Equal(t, "none", eval("none.com"))
			require.Equal(t, "none", eval("none.com"))
			z.txt["_dmarc.none.com"] = []string{"v=DMARC1; p=reject"}
			require.Equal(t, "reject", eval("none.com"), "a changed record is a new text")
			require.Equal(t, "quarantine", eval("other.com"))
			require.Equal(t, "reject", eval("none.com"))
			require.Equal(t, min(size, 3), c.records.Len(), "three texts seen")
		})
	}
}

// An internationalized From domain in UTF-8 (SMTPUTF8 mail) is evaluated
// at its A-label: the policy published there applies, DKIM's d= (always
// A-labels) and an SPF domain in either form align with it.
func TestInternationalizedFromDomain(t *testing.T) {
	z := testZone()
	z.txt["_dmarc.xn--exmple-cua.test"] = []string{"v=DMARC1; p=reject"}
	c := newChecker(t, DefaultConfig(), z, 0)
	for _, tc := range []struct {
		name string
		spf  *registry.SPFResult
		dkim *registry.DKIMResult
		want registry.AuthResult
	}{
		{"dkim d= A-label", nil, dkimSig("xn--exmple-cua.test", registry.AuthPass), registry.AuthPass},
		{"spf domain in UTF-8", spfPass("exämple.test"), nil, registry.AuthPass},
		{"spf domain A-label", spfPass("xn--exmple-cua.test"), nil, registry.AuthPass},
		{"nothing aligned", spfPass("example.com"), dkimSig("example.com", registry.AuthPass), registry.AuthFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := c.evaluate(context.Background(), message(t, "Anna <anna@exämple.test>"), tc.spf, tc.dkim)
			require.Empty(t, o.fromText)
			require.Equal(t, tc.want, o.res.Result, o.res.Reason)
			require.Equal(t, "xn--exmple-cua.test", o.res.Domain)
			require.Equal(t, "reject", o.res.Policy)
		})
	}
}
