package resolver

import (
	"context"
	"strconv"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkLookupTXT compares a cached answer with a full exchange with an
// in-process server on loopback (a distinct name every iteration, so the
// cache never answers) and with a static-zone answer.
func BenchmarkLookupTXT(b *testing.B) {
	txt := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + ` 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	}
	ctx := context.Background()

	b.Run("cached", func(b *testing.B) {
		srv := newFakeServer(b, txt)
		r := newTestResolver(b, Config{}, nil, srv)
		if _, err := r.LookupTXT(ctx, "example.org"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupTXT(ctx, "example.org"); err != nil {
				b.Fatal(err)
			}
		}
		if srv.queries() != 1 {
			b.Fatalf("%d queries: the cache did not answer", srv.queries())
		}
	})
	b.Run("uncached", func(b *testing.B) {
		srv := newFakeServer(b, txt)
		r := newTestResolver(b, Config{}, nil, srv)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := r.LookupTXT(ctx, "n"+strconv.Itoa(i)+".example.org"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("static", func(b *testing.B) {
		r, err := New(Config{Static: "testdata/static.zone", Offline: true}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupTXT(ctx, "demo.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
