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
