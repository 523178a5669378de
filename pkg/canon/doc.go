// Package canon implements DKIM's header and body canonicalization
// algorithms (RFC 6376 §3.4), "simple" and "relaxed", as ARC (RFC 8617
// §4.1.1 and §4.1.2) uses them too. go-msgauth keeps its own unexported;
// Elemta's arc plugin signs and verifies with this package, and a
// third-party plugin that hashes message parts the DKIM way can too.
//
// Input may use CRLF or bare LF line ends; output always uses CRLF.
//
//	h, b, err := canon.Parse("relaxed/simple") // a c= tag
//	if err != nil { ... }
//	field := canon.Header(h, []byte("Subject:  Hello\r\n  world \r\n"))
//	// "subject:Hello world\r\n"
//	body := canon.BodyBytes(b, msgBody)
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package canon
