package resolver

import (
	"bufio"
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
// the root unless the file sets $ORIGIN; $INCLUDE and $GENERATE are refused.
// Parse errors name the file and line.
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
	lr := &lineReader{br: bufio.NewReader(r), line: 1}
	zp := dns.NewZoneParser(lr, ".", filename)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if lr.generate {
			return nil, errGenerate(filename, lr.line)
		}
		h := rr.Header()
		if emptyRdata(rr) {
			// miekg/dns accepts a record without data (RFC 2136's dynamic
			// update form: "x IN A \# 0", "x IN TXT ( )", "x IN A " at the
			// end of the file); in a zone it is a typo that would serve
			// an empty answer.
			return nil, fmt.Errorf("%s: line %d: %s %s record without data", filename, lr.line,
				h.Name, dns.Type(h.Rrtype))
		}
		if h.Class != dns.ClassINET {
			continue
		}
		name, ok := canonicalName(h.Name)
		if !ok {
			return nil, fmt.Errorf("%s: line %d: bad owner name %q", filename, lr.line, h.Name)
		}
		h.Name = name
		if c, ok := rr.(*dns.CNAME); ok {
			if c.Target, ok = canonicalName(c.Target); !ok {
				return nil, fmt.Errorf("%s: line %d: %s CNAME: bad target", filename, lr.line, h.Name)
			}
		}
		z.rrs[h.Name] = append(z.rrs[h.Name], rr)
		if h.Rrtype == dns.TypeSOA {
			z.apex = append(z.apex, h.Name)
		}
	}
	if err := zp.Err(); err != nil {
		if lr.generate {
			// miekg/dns's error would name a line of the generated text
			return nil, errGenerate(filename, lr.line)
		}
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
			cname = rr.(*dns.CNAME).Target // canonical since parseStatic
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

// emptyRdata reports whether rr carries no data at all: every field after
// the header is its type's zero value.
func emptyRdata(rr dns.RR) bool {
	var zero dns.RR
	if newRR, ok := dns.TypeToRR[rr.Header().Rrtype]; ok {
		zero = newRR()
	} else {
		zero = new(dns.RFC3597)
	}
	*zero.Header() = *rr.Header()
	return dns.IsDuplicate(rr, zero)
}

// errGenerate refuses $GENERATE: up to 65536 records a line, in a file that
// overrides a few names; and miekg/dns's errors inside it name a line of the
// generated text, not of the file.
const generateDirective = "$GENERATE"

func errGenerate(filename string, line int) error {
	return fmt.Errorf("%s: line %d: $GENERATE is not supported in the static zone", filename, line)
}

// lineReader feeds the zone parser byte by byte (it uses io.ByteReader when
// the reader has it, and reads no further ahead than the token it needs) and
// knows the line of the last byte read: when the parser returns a record,
// the line where that record ends. It also knows whether that line is a
// $GENERATE directive: the parser reads the whole directive, then makes
// its records without reading on.
type lineReader struct {
	br       *bufio.Reader
	line     int    // line of the last byte read, from 1
	eol      bool   // the last byte read was a newline
	start    []byte // the first bytes of the line, up to len("$GENERATE")
	generate bool   // the line starts with $GENERATE (any case)
}

func (l *lineReader) ReadByte() (byte, error) {
	c, err := l.br.ReadByte()
	if err != nil {
		return c, err
	}
	if l.eol {
		l.line++
		l.start, l.generate = l.start[:0], false
	}
	l.eol = c == '\n'
	if len(l.start) < len(generateDirective) {
		l.start = append(l.start, c)
		l.generate = len(l.start) == len(generateDirective) && strings.EqualFold(string(l.start), generateDirective)
	}
	return c, nil
}

func (l *lineReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := l.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		p[n] = c
		n++
		if l.br.Buffered() == 0 {
			break // never block for more than the caller needs
		}
	}
	return n, nil
}

var _ io.ByteReader = (*lineReader)(nil)
