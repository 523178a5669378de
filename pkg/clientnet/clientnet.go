package clientnet

import (
	"fmt"
	"net/netip"
)

// Network returns the client network of ip: its first v4 bits for an IPv4
// address (IPv4-mapped IPv6 included), its first v6 bits otherwise, as a
// CIDR ("192.0.2.0/24").
func Network(ip netip.Addr, v4, v6 int) string {
	ip = ip.Unmap()
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// ParsePrefix accepts a CIDR ("192.0.2.0/24", host bits are cleared) or a
// single address ("192.0.2.7", a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// List is a list of networks.
type List []netip.Prefix

// Match returns the first network of l that holds ip.
func (l List) Match(ip netip.Addr) (netip.Prefix, bool) {
	ip = ip.Unmap()
	for _, p := range l {
		if p.Contains(ip) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
