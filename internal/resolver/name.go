package resolver

import (
	"strings"

	"github.com/miekg/dns"
)

// maxNameWire is the longest domain name on the wire, root label included
// (RFC 1035 §2.3.4).
const maxNameWire = 255

// canonicalName returns name in the one form the resolver uses for it
// everywhere: the cache key, the question it sends, and every comparison
// with a reply. The name is read in presentation format, as miekg/dns and
// master files write it (`\.` and `\DDD` are escapes; any other byte,
// a space or a non-ASCII one, is itself), packed to its wire labels,
// lowercased (ASCII only, RFC 4343) and printed again as miekg/dns prints
// the names of a reply, fully qualified. So "A B.example", "a\ b.example."
// and "a\032b.example" are one name, and the question of a reply to it
// prints exactly as the question sent.
//
// ok is false when name is no domain name: empty, an empty label, a label
// longer than 63 octets, more than 255 octets on the wire, a dangling
// backslash.
func canonicalName(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	if plainName(name) { // the usual case: no packing and unpacking
		if name[len(name)-1] == '.' {
			return name, true
		}
		return name + ".", true
	}
	return packedName(name)
}

// plainName reports whether name is already in canonical form but for the
// root dot: lowercase letters, digits, '-' and '_' in labels of 1 to 63
// octets, at most 253 octets without the root dot (255 on the wire).
func plainName(name string) bool {
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > maxNameWire-2 {
		return false
	}
	label := 0
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		if label++; label > 63 {
			return false
		}
	}
	return label > 0
}

// packedName is canonicalName for any name: through the wire form.
func packedName(name string) (string, bool) {
	var buf [maxNameWire + 1]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil || n > maxNameWire || n == 0 {
		return "", false
	}
	wire := buf[:n]
	for i, c := range wire {
		// Length octets are at most 63, below 'A': folding every octet
		// in 'A'..'Z' touches only letters.
		if 'A' <= c && c <= 'Z' {
			wire[i] = c + 'a' - 'A'
		}
	}
	s, _, err := dns.UnpackDomainName(wire, 0)
	if err != nil {
		return "", false
	}
	return s, true
}

// sameName reports whether a and b, two names in the presentation form
// miekg/dns gives the names it unpacks (or canonicalName returns), are the
// same domain name. That form escapes every byte outside printable ASCII,
// so an ASCII case-insensitive comparison is DNS's own (RFC 4343); a
// Unicode one (strings.EqualFold) would fold more than DNS does.
func sameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
