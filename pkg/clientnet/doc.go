// Package clientnet groups SMTP client addresses into networks and matches
// them against lists of networks, the way Elemta's greylist and ratelimit
// plugins key and exempt their clients: IPv4 clients by their /24 (say),
// IPv6 clients by their /64, IPv4-mapped IPv6 addresses as IPv4.
//
//	net := clientnet.Network(netip.MustParseAddr("192.0.2.77"), 24, 64) // "192.0.2.0/24"
//	p, err := clientnet.ParsePrefix("198.51.100.7")                   // 198.51.100.7/32
//	exempt := clientnet.List{p}
//	if _, ok := exempt.Match(clientIP); ok { ... }
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package clientnet
