package spf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// zone is an in-process DNS for tests: the SPF suites define their own
// DNS data, so a fake built from it is the faithful way to run them.
// It tells NXDOMAIN (the name has no records) from NODATA (the name has
// records of other types), follows CNAMEs (detecting loops), and answers
// TIMEOUT and SERVFAIL markers with the errors Go's resolver gives.
type zone struct {
	mu      sync.Mutex
	names   map[string]*rrset
	queries int // every lookup, for limit tests
}

type rrset struct {
	txt     []string
	spf     []string
	noTXT   bool // "TXT: NONE": never copy SPF records to TXT
	ips     []net.IP
	mx      []*net.MX
	ptr     []string
	cname   string
	timeout bool
	// answered lists the types that still answer despite timeout: the
	// suites' TIMEOUT marker only hits types not listed before it.
	answered map[string]bool
	servfail bool
}

func newZone() *zone { return &zone{names: map[string]*rrset{}} }

func canon(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (z *zone) set(name string) *rrset {
	name = canon(name)
	if z.names[name] == nil {
		z.names[name] = &rrset{}
	}
	return z.names[name]
}

// TXT adds one TXT record (the strings of one record given joined).
func (z *zone) TXT(name string, txt ...string) *zone {
	z.set(name).txt = append(z.set(name).txt, txt...)
	return z
}

// A adds A/AAAA records.
func (z *zone) A(name string, ips ...string) *zone {
	for _, ip := range ips {
		z.set(name).ips = append(z.set(name).ips, net.ParseIP(ip))
	}
	return z
}

func (z *zone) MX(name string, pref uint16, host string) *zone {
	z.set(name).mx = append(z.set(name).mx, &net.MX{Host: host, Pref: pref})
	return z
}

func (z *zone) PTR(ip string, names ...string) *zone {
	a, _ := netip.ParseAddr(ip)
	z.set(reverseName(a)).ptr = append(z.set(reverseName(a)).ptr, names...)
	return z
}

func (z *zone) Timeout(name string) *zone  { z.set(name).timeout = true; return z }
func (z *zone) ServFail(name string) *zone { z.set(name).servfail = true; return z }

// lookup resolves name for the query type typ, following CNAMEs, and
// returns its records.
func (z *zone) lookup(ctx context.Context, typ, name string) (*rrset, error) {
	z.mu.Lock()
	z.queries++
	z.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	orig := name
	seen := map[string]bool{}
	for {
		name = canon(name)
		rs, ok := z.names[name]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: orig, IsNotFound: true}
		}
		if rs.timeout && !rs.answered[typ] {
			return nil, &net.DNSError{Err: "i/o timeout", Name: orig, IsTimeout: true, IsTemporary: true}
		}
		if rs.servfail {
			return nil, &net.DNSError{Err: "server misbehaving", Name: orig, IsTemporary: true}
		}
		if rs.cname == "" {
			return rs, nil
		}
		if seen[name] {
			return nil, &net.DNSError{Err: "CNAME loop", Name: orig, IsTemporary: true}
		}
		seen[name] = true
		name = rs.cname
	}
}

// nodata is Go's answer for a name without records of the asked type.
func nodata(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (z *zone) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rs, err := z.lookup(ctx, "TXT", name)
	if err != nil {
		return nil, err
	}
	txt := rs.txt
	if len(txt) == 0 && !rs.noTXT {
		txt = rs.spf // the suites' SPF-type records stand for TXT ones
	}
	if len(txt) == 0 {
		return nil, nodata(name)
	}
	return append([]string(nil), txt...), nil
}

func (z *zone) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rs, err := z.lookup(ctx, "MX", name)
	if err != nil {
		return nil, err
	}
	if len(rs.mx) == 0 {
		return nil, nodata(name)
	}
	return rs.mx, nil
}

func (z *zone) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	rs, err := z.lookup(ctx, "A", host)
	if err != nil {
		return nil, err
	}
	if len(rs.ips) == 0 {
		return nil, nodata(host)
	}
	out := make([]net.IPAddr, len(rs.ips))
	for i, ip := range rs.ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}

func (z *zone) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rs, err := z.lookup(ctx, "PTR", reverseName(a))
	if err != nil {
		return nil, err
	}
	if len(rs.ptr) == 0 {
		return nil, nodata(addr)
	}
	out := make([]string, len(rs.ptr))
	for i, n := range rs.ptr {
		out[i] = strings.TrimSuffix(n, ".") + "."
	}
	return out, nil
}

// reverseName is the in-addr.arpa / ip6.arpa name of a.
func reverseName(a netip.Addr) string {
	a = a.Unmap()
	var b strings.Builder
	if a.Is4() {
		o := a.As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.in-addr.arpa", o[3], o[2], o[1], o[0])
		return b.String()
	}
	o := a.As16()
	for i := 15; i >= 0; i-- {
		fmt.Fprintf(&b, "%x.%x.", o[i]&0xf, o[i]>>4)
	}
	b.WriteString("ip6.arpa")
	return b.String()
}
