package resolver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/miekg/dns"
)

func TestCanonicalName(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	// 3 labels of 63 and one of 61: 4*64 - 2 + 1 (root) = 255 octets on the wire
	max255 := strings.Join([]string{long63, long63, long63, strings.Repeat("b", 61)}, ".")
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Example.ORG", "example.org.", true},
		{"example.org.", "example.org.", true},
		{"a b.example", `a\ b.example.`, true},
		{`A\ B.example.`, `a\ b.example.`, true},
		{`a\032b.example`, `a\ b.example.`, true},
		{`a\\b.example`, `a\\b.example.`, true},
		{`a\.b.example`, `a\.b.example.`, true},
		{`a\046b.example`, `a\.b.example.`, true},
		{"a;b\"(c)@'.example", `a\;b\"\(c\)\@\'.example.`, true},
		{"\u00e9t\u00c9.example", `\195\169t\195\137.example.`, true}, // non-ASCII is never case-folded
		{"tab\there.example", `tab\009here.example.`, true},
		{"nul\x00.example", `nul\000.example.`, true},
		{".", ".", true},
		{long63 + ".example", long63 + ".example.", true},
		{max255, max255 + ".", true},
		{"", "", false},
		{"a..b.example", "", false},
		{".a.example", "", false},
		{long63 + "a.example", "", false},
		{max255 + "b", "", false},
		{max255 + ".b", "", false},
		{`dangling\`, "", false},
	}
	for _, tc := range tests {
		got, ok := canonicalName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("canonicalName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSameName(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"example.org.", "EXAMPLE.org.", true},
		{`a\ b.example.`, `A\ B.EXAMPLE.`, true},
		{"example.org.", "example.org", false},
		{"example.org.", "exampleXorg.", false},
		{"\u212a.", "k.", false}, // the Kelvin sign folds to k in Unicode, not in DNS
	}
	for _, tc := range tests {
		if got := sameName(tc.a, tc.b); got != tc.want {
			t.Errorf("sameName(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestMatchesCanonicalQuestion: a reply's question matches the query's
// whatever presentation form or case either is written in, and still only
// when it is the same name, type and class.
func TestMatchesCanonicalQuestion(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("a b.example.", dns.TypeTXT) // as written by a caller, never printed by miekg/dns
	reply := func(name string, qtype, qclass uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Question[0] = dns.Question{Name: name, Qtype: qtype, Qclass: qclass}
		return m
	}
	tests := []struct {
		name string
		resp *dns.Msg
		ok   bool
	}{
		{"escaped as miekg/dns unpacks it", reply(`a\ b.example.`, dns.TypeTXT, dns.ClassINET), true},
		{"decimal escape, other case", reply(`A\032B.EXAMPLE.`, dns.TypeTXT, dns.ClassINET), true},
		{"other name", reply(`a\ c.example.`, dns.TypeTXT, dns.ClassINET), false},
		{"two labels instead of one", reply(`a.b.example.`, dns.TypeTXT, dns.ClassINET), false},
		{"other type", reply(`a\ b.example.`, dns.TypeA, dns.ClassINET), false},
		{"other class", reply(`a\ b.example.`, dns.TypeTXT, dns.ClassCHAOS), false},
		{"unparsable name", reply(`a..b.`, dns.TypeTXT, dns.ClassINET), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := matches(q, tc.resp); (err == nil) != tc.ok {
				t.Fatalf("matches = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	wrongID := reply(`a\ b.example.`, dns.TypeTXT, dns.ClassINET)
	wrongID.Id++
	if matches(q, wrongID) == nil {
		t.Fatal("a reply with another id matched")
	}
}

// oddLabels are what a hostile sender can put in front of a domain through
// SPF's %{l}, %{s} and %{d} macros (or as a DKIM selector): bytes that
// presentation format escapes, escapes themselves, non-ASCII, and prefixes
// that make the name no domain name at all (valid false).
var oddLabels = []struct {
	label, prefix string
	valid         bool
}{
	{"space", "a b", true},
	{"quoted local part with spaces", `"a b c"`, true},
	{"backslash escape", `a\\b`, true},
	{"escaped dot inside a label", `a\.b`, true},
	{"trailing backslash escapes the dot after it", `a\`, true},
	{"special characters", "a;b(c)@'", true},
	{"tab and NUL", "a\tb\x00", true},
	{"non-ASCII", "\u00e9l\u00e8ve", true},
	{"empty label", "a.", false},
	{"leading dot", ".a", false},
	{"64-octet label", strings.Repeat("x", 64), false},
	{"over 255 octets", strings.Repeat("abcdefgh.", 28) + "abcdefgh", false},
}

// TestOddNamesAnswered: every odd name gets its answer, or its NXDOMAIN, from
// the first reply, with one query; a name that is no domain name is "no such
// host" without a query. Before names were compared in canonical form, the
// reply to "a b.example.org" (whose question reads a\ b.example.org.) was
// thrown away as spoofed and the lookup timed out as a temperror.
func TestOddNamesAnswered(t *testing.T) {
	srv := newFakeServer(t, newZone(t, testSOA,
		// owner names as miekg/dns prints what it unpacks: the fake server
		// compares them with dns.CanonicalName only
		`a\ b.example.org. 300 IN TXT "v=spf1 -all"`,
		`a\;b\(c\)\@\'.example.org. 300 IN TXT "specials"`,
	).handler())
	r := newTestResolver(t, Config{Timeout: registryDuration(5 * time.Second), Attempts: 1}, newClock(), srv)
	want := map[string][]string{
		"a b.example.org":      {"v=spf1 -all"},
		"a;b(c)@'.example.org": {"specials"},
	}
	for _, tc := range oddLabels {
		name := tc.prefix + ".example.org"
		t.Run(tc.label, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			before := srv.queries()
			got, err := r.LookupTXT(ctx, name)
			if w, ok := want[name]; ok {
				if err != nil || !slices.Equal(got, w) {
					t.Fatalf("LookupTXT(%q) = %q, %v; want %q", name, got, err, w)
				}
			} else if de := dnsErr(t, err); !de.IsNotFound || de.Temporary() || de.Name != name {
				t.Fatalf("LookupTXT(%q): %v (IsNotFound %v, Temporary %v, Name %q); want no such host naming it",
					name, err, de.IsNotFound, de.Temporary(), de.Name)
			}
			wantQueries := int64(0)
			if tc.valid {
				wantQueries = 1
			}
			if n := srv.queries() - before; n != wantQueries {
				t.Fatalf("%d queries, want %d", n, wantQueries)
			}
		})
	}
	// the same wire name in any spelling is one cache entry
	before := r.Stats()
	for _, spelling := range []string{`A\ B.example.org.`, `a\032b.EXAMPLE.org`} {
		if got, err := r.LookupTXT(context.Background(), spelling); err != nil || !slices.Equal(got, want["a b.example.org"]) {
			t.Fatalf("LookupTXT(%q) = %q, %v", spelling, got, err)
		}
	}
	if after := r.Stats(); after.Exchanges != before.Exchanges || after.Hits != before.Hits+2 {
		t.Fatalf("other spellings were not cache hits: before %+v after %+v", before, after)
	}
}

// TestUnboundOddNames: the real DNS answers every odd name with NXDOMAIN at
// once (every name outside the test data is NXDOMAIN there), and the
// resolver takes that answer: one exchange, no timeout, no temperror.
func TestUnboundOddNames(t *testing.T) {
	addr := testenv.Require(t, testenv.DNS)
	for _, server := range []string{addr, testenv.Lookup(testenv.DNS6)} {
		if server == "" {
			continue
		}
		t.Run(server, func(t *testing.T) {
			// The timeout is far longer than the test's deadline: a reply
			// thrown away shows as a failed test, not a slow one.
			r, err := New(Config{Servers: []string{server}, Timeout: registryDuration(30 * time.Second), Attempts: 1}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range oddLabels {
				for _, suffix := range []string{".example.test", "._spf.example.test"} {
					name := tc.prefix + suffix
					t.Run(tc.label+suffix, func(t *testing.T) {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						defer cancel()
						before := r.Stats().Exchanges
						_, err := r.LookupTXT(ctx, name)
						de := dnsErr(t, err)
						if !de.IsNotFound || de.Temporary() || de.Name != name {
							t.Fatalf("LookupTXT(%q): %v (IsNotFound %v, Temporary %v); want no such host naming it",
								name, err, de.IsNotFound, de.Temporary())
						}
						want := uint64(0)
						if tc.valid {
							want = 1
						}
						if n := r.Stats().Exchanges - before; n != want {
							t.Fatalf("%d exchanges, want %d", n, want)
						}
					})
				}
			}
		})
	}
}

// The plain-name fast path gives what the wire round trip gives, and
// takes only names the round trip leaves as they are.
func FuzzPlainName(f *testing.F) {
	for _, s := range []string{"example.test", "example.test.", "_dmarc.example.test", "a-b.c_d.e", "Example.test", "a..b", ".", "a",
		strings.Repeat("a", 63) + ".b", strings.Repeat("a", 64) + ".b", strings.Repeat("abcdefgh.", 28) + "a", "a b.test", `a\.b`, "ü.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !plainName(name) {
			return
		}
		got, ok := canonicalName(name)
		want, wok := packedName(name)
		if got != want || ok != wok {
			t.Fatalf("canonicalName(%q) = %q, %v; the wire round trip gives %q, %v", name, got, ok, want, wok)
		}
	})
}
