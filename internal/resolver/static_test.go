package resolver

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStaticZone(t *testing.T) {
	// The network knows example.org; the static file overrides one name there.
	srv := newFakeServer(t, newZone(t, testSOA,
		`override.example.org. 300 IN TXT "from the network"`,
		`example.org. 300 IN TXT "v=spf1 -all"`,
		`demo.test. 300 IN TXT "network must not be asked for demo.test"`,
	).handler())
	r := newTestResolver(t, Config{Static: "testdata/static.zone"}, newClock(), srv)
	ctx := context.Background()

	tests := []struct {
		name     string
		lookup   func() ([]string, error)
		want     []string
		notFound bool
		network  bool // answered by the fake server
	}{
		{"static TXT wins", txtOf(r, "override.example.org"), []string{"from the static file"}, false, false},
		{"other names go to the network", txtOf(r, "example.org"), []string{"v=spf1 -all"}, false, true},
		{"authoritative apex", txtOf(r, "DEMO.test."), []string{"v=spf1 ip4:192.0.2.0/24 -all"}, false, false},
		{"split TXT strings joined", txtOf(r, "s1._domainkey.demo.test"), []string{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, false, false},
		{"NXDOMAIN inside the authoritative zone", txtOf(r, "nope.demo.test"), nil, true, false},
		{"empty non-terminal is NODATA", txtOf(r, "_domainkey.demo.test"), nil, true, false},
		{"NODATA for an owned name", txtOf(r, "mail.demo.test"), nil, true, false},
		{"MX", func() ([]string, error) {
			mxs, err := r.LookupMX(ctx, "demo.test")
			var out []string
			for _, mx := range mxs {
				out = append(out, mx.Host)
			}
			return out, err
		}, []string{"mail.demo.test."}, false, false},
		{"IPAddr through a static CNAME", func() ([]string, error) { return ipStrings(r.LookupIPAddr(ctx, "www.demo.test")) },
			[]string{"192.0.2.25", "2001:db8::25"}, false, false},
		{"static CNAME into an override", txtOf(r, "out.demo.test"), []string{"from the static file"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.queries()
			got, err := tc.lookup()
			if tc.notFound {
				if de := dnsErr(t, err); !de.IsNotFound {
					t.Fatalf("error %v, want not found", err)
				}
			} else if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if asked := srv.queries() > before; asked != tc.network {
				t.Fatalf("network asked = %v, want %v", asked, tc.network)
			}
		})
	}
}

func txtOf(r *Resolver, name string) func() ([]string, error) {
	return func() ([]string, error) { return r.LookupTXT(context.Background(), name) }
}

func TestStaticOnlyOffline(t *testing.T) {
	r, err := New(Config{Static: "testdata/static.zone", Offline: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if got, err := r.LookupTXT(ctx, "demo.test"); err != nil || len(got) != 1 {
		t.Fatalf("static answer: %v, %v", got, err)
	}
	start := time.Now()
	_, err = r.LookupTXT(ctx, "www.example.com")
	if de := dnsErr(t, err); !de.IsNotFound {
		t.Fatalf("unknown name offline: %v, want NXDOMAIN", err)
	}
	if time.Since(start) > 50*time.Millisecond {
		t.Fatal("offline NXDOMAIN was not immediate")
	}
	if st := r.Stats(); st.Exchanges != 0 || st.Static == 0 {
		t.Fatalf("stats %+v: want static answers and no exchanges", st)
	}
}

func TestStaticErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"syntax error names file and line", "testdata/bad.zone", []string{"testdata/bad.zone", "line: 3", "dns: static zone"}},
		{"missing file", "testdata/missing.zone", []string{"testdata/missing.zone", "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Static: tc.path, Offline: true}, Options{})
			if err == nil {
				t.Fatal("New accepted the file")
			}
			for _, w := range tc.want {
				mustContain(t, err.Error(), w)
			}
		})
	}
}

func TestStaticCNAMELoop(t *testing.T) {
	z, err := parseStatic(strings.NewReader("a.loop.test. 60 IN CNAME b.loop.test.\nb.loop.test. 60 IN CNAME a.loop.test.\n"), "loop.zone")
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{static: z, offline: true, cache: newCache(1), now: time.Now}
	_, err = r.LookupTXT(context.Background(), "a.loop.test")
	if de, ok := err.(*net.DNSError); !ok || !strings.Contains(de.Err, "CNAME") {
		t.Fatalf("CNAME loop: %v", err)
	}
}

// TestStaticEmptyRdata: miekg/dns takes a record without data (RFC 2136's
// form for dynamic updates); in the static file it is a typo, refused with
// the file and the line where the record ends.
func TestStaticEmptyRdata(t *testing.T) {
	const head = "$ORIGIN demo.test.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 60\n"
	tests := []struct {
		name, zone, want string
	}{
		{"A at the end of the file", head + "mail 300 IN A ", "empty.zone: line 3: mail.demo.test. A record without data"},
		{"A in RFC 3597 form", head + "mail IN A \\# 0\nwww IN A 192.0.2.1\n", "empty.zone: line 3: mail.demo.test. A record without data"},
		{"TXT in parentheses", head + "\n; comment\n_spf IN TXT (\n)\nwww IN A 192.0.2.1\n", "empty.zone: line 6: _spf.demo.test. TXT record without data"},
		{"SOA in RFC 3597 form", "x.test. IN SOA \\# 0\n", "empty.zone: line 1: x.test. SOA record without data"},
		{"unknown type", "x.test. IN TYPE65000 \\# 0\n", "empty.zone: line 1: x.test. TYPE65000 record without data"},
		{"other class", "x.test. CH TXT ( )\n", "empty.zone: line 1: x.test. TXT record without data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStatic(strings.NewReader(tc.zone), "empty.zone")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// records whose data is present but empty-looking are kept
	z, err := parseStatic(strings.NewReader(head+"a IN TXT \"\"\nb IN A 0.0.0.0\nc IN MX 0 .\n"), "ok.zone")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.demo.test.", "b.demo.test.", "c.demo.test."} {
		if len(z.rrs[name]) != 1 {
			t.Errorf("%s: %v", name, z.rrs[name])
		}
	}
}

// TestStaticOddNames: owner names and CNAME targets are kept in the
// resolver's canonical form, so a name written with escapes in the file is
// found however the caller writes it.
func TestStaticOddNames(t *testing.T) {
	z, err := parseStatic(strings.NewReader(`$ORIGIN demo.test.
@ 300 IN SOA ns hostmaster 1 3600 600 86400 60
A\032B IN TXT "spaced"
alias IN CNAME x\ Y
x\ y IN TXT "target"
\195\169 IN TXT "non-ascii"
`), "odd.zone")
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{static: z, offline: true, cache: newCache(1), now: time.Now}
	tests := []struct{ name, want string }{
		{"a b.demo.test", "spaced"},
		{`a\ B.demo.test.`, "spaced"},
		{"alias.demo.test", "target"},
		{"\u00e9.demo.test", "non-ascii"},
	}
	for _, tc := range tests {
		got, err := r.LookupTXT(context.Background(), tc.name)
		if err != nil || !slices.Equal(got, []string{tc.want}) {
			t.Errorf("LookupTXT(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestStaticGenerateRefused: $GENERATE would make up to 65536 records a
// line, and miekg/dns's errors inside it name a line of the generated text
// (line 26 of a one-line file); it is refused, naming the file's line.
func TestStaticGenerateRefused(t *testing.T) {
	tests := []struct{ zone, want string }{
		{"$GENERATE 1-700 00000 A 100.0.0.$0", "gen.zone: line 1: $GENERATE is not supported in the static zone"},
		{"a.test. IN A 192.0.2.1\n$generate 1-10 host$.test. A 192.0.2.$\n", "gen.zone: line 2: $GENERATE is not supported in the static zone"},
	}
	for _, tc := range tests {
		_, err := parseStatic(strings.NewReader(tc.zone), "gen.zone")
		if err == nil || err.Error() != tc.want {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
