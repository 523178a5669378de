package clientnet

import (
	"net/netip"
	"testing"
)

func TestNetwork(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		v4, v6 int
		want   string
	}{
		{"192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"192.0.2.77", 32, 64, "192.0.2.77/32"},
		{"2001:db8:a:b:c:d:e:f", 24, 64, "2001:db8:a:b::/64"},
		{"2001:db8:a:b:c:d:e:f", 24, 48, "2001:db8:a::/48"},
	} {
		if got := Network(netip.MustParseAddr(tc.ip), tc.v4, tc.v6); got != tc.want {
			t.Errorf("Network(%s, %d, %d) = %s, want %s", tc.ip, tc.v4, tc.v6, got, tc.want)
		}
	}
}

func TestParsePrefixAndMatch(t *testing.T) {
	var l List
	for _, s := range []string{"192.0.2.9/24", "198.51.100.7", "::1"} {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		l = append(l, p)
	}
	if l[0].String() != "192.0.2.0/24" || l[1].String() != "198.51.100.7/32" || l[2].String() != "::1/128" {
		t.Fatalf("parsed %v", l)
	}
	for ip, want := range map[string]string{
		"192.0.2.200": "192.0.2.0/24", "::ffff:198.51.100.7": "198.51.100.7/32", "::1": "::1/128", "198.51.100.8": "",
	} {
		p, ok := l.Match(netip.MustParseAddr(ip))
		if got := map[bool]string{true: p.String(), false: ""}[ok]; got != want {
			t.Errorf("Match(%s) = %q, want %q", ip, got, want)
		}
	}
	for _, bad := range []string{"", "192.0.2.0/33", "example.org", "10.0.0.0/8/8"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) succeeded", bad)
		}
	}
}
