package resolver

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// staticZone holds the records of the [dns] static file. Its answers win
// over the cache and the network:
//   - a name that owns records in the file is answered from the file only:
//     the records of the asked type, a CNAME to follow, or NODATA;
//   - a name under the owner of a SOA record in the file (the file is
//     authoritative there) that owns no records is NXDOMAIN, or NODATA when
//     names below it exist (an empty non-terminal such as _domainkey.x);
//   - any other name is not the file's business and goes to the network
//     (or is NXDOMAIN when the resolver is offline).
type staticZone struct {
	rrs   map[string][]dns.RR // canonical owner name -> records
	empty map[string]bool     // empty non-terminals inside authoritative zones
	apex  []string            // owners of SOA records
}

// loadStatic parses an RFC 1035 master file. Relative names are relative to
// the root unless the file sets $ORIGIN; $INCLUDE is refused. Parse errors
// name the file and line.
func loadStatic(path string) (*staticZone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: static zone: %w", err)
	}
	defer f.Close()
	z, err := parseStatic(f, path)
	if err != nil {
		return nil, fmt.Errorf("dns: static zone: %w", err)
	}
	return z, nil
}

func parseStatic(r io.Reader, filename string) (*staticZone, error) {
	z := &staticZone{rrs: map[string][]dns.RR{}, empty: map[string]bool{}}
	zp := dns.NewZoneParser(r, ".", filename)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		h.Name = dns.CanonicalName(h.Name)
		z.rrs[h.Name] = append(z.rrs[h.Name], rr)
		if h.Rrtype == dns.TypeSOA {
			z.apex = append(z.apex, h.Name)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, err // *dns.ParseError: "file: dns: bad ...: "token" at line: L:C"
	}
	for name := range z.rrs {
		for off, end := 0, false; !end; {
			off, end = dns.NextLabel(name, off)
			if end {
				break
			}
			parent := name[off:]
			if _, ok := z.rrs[parent]; !ok && z.authoritative(parent) {
				z.empty[parent] = true
			}
		}
	}
	return z, nil
}

// authoritative reports whether name is at or under a SOA owner of the file.
func (z *staticZone) authoritative(name string) bool {
	for _, apex := range z.apex {
		if dns.IsSubDomain(apex, name) {
			return true
		}
	}
	return false
}

// lookup answers name/qtype from the file. ok is false when the file has
// nothing to say about name. A non-empty cname means: the file maps name to
// cname, continue with that name.
func (z *staticZone) lookup(name string, qtype uint16) (res *result, cname string, ok bool) {
	if z == nil {
		return nil, "", false
	}
	rrs, owned := z.rrs[name]
	if !owned {
		if z.empty[name] {
			return &result{rcode: dns.RcodeSuccess, server: "static"}, "", true
		}
		if z.authoritative(name) {
			return &result{rcode: dns.RcodeNameError, server: "static"}, "", true
		}
		return nil, "", false
	}
	var match []dns.RR
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case qtype:
			match = append(match, rr)
		case dns.TypeCNAME:
			cname = dns.CanonicalName(rr.(*dns.CNAME).Target)
		}
	}
	if len(match) > 0 || qtype == dns.TypeCNAME || cname == "" {
		return &result{rrs: match, rcode: dns.RcodeSuccess, server: "static"}, "", true
	}
	return nil, cname, true
}

// String describes the zone for logs: how many names and which apexes.
func (z *staticZone) String() string {
	if z == nil {
		return "no static zone"
	}
	return fmt.Sprintf("%d names, authoritative for [%s]", len(z.rrs), strings.Join(z.apex, " "))
}
