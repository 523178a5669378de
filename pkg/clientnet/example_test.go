package clientnet_test

import (
	"fmt"
	"net/netip"

	"github.com/elemta/elemta/pkg/clientnet"
)

func Example() {
	client := netip.MustParseAddr("::ffff:192.0.2.77") // IPv4-mapped: treated as IPv4
	fmt.Println(clientnet.Network(client, 24, 64))
	fmt.Println(clientnet.Network(netip.MustParseAddr("2001:db8::1:2:3:4"), 24, 64))

	p, err := clientnet.ParsePrefix("192.0.2.0/24")
	if err != nil {
		panic(err)
	}
	exempt := clientnet.List{p}
	match, ok := exempt.Match(client)
	fmt.Println(match, ok)
	// Output:
	// 192.0.2.0/24
	// 2001:db8::/64
	// 192.0.2.0/24 true
}
