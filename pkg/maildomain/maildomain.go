// Package maildomain puts a mail domain in the one form that mail routing
// compares: lowercased, without the root's trailing dot, and, written in
// UTF-8 (SMTPUTF8 mail, a config file), in its A-label form, so that
// bücher.example and xn--bcher-kva.example are one domain. The conversion
// is IDNA2008 with UTS #46 mapping, as for a lookup (golang.org/x/net/idna's
// Lookup profile): the form DNS publishes records under (RFC 8616) and
// mail without SMTPUTF8 is addressed to.
//
//	d, err := maildomain.Canonical("Bücher.Example.") // "xn--bcher-kva.example"
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version, so within a
// major version no exported name is removed and no behaviour described here
// changes incompatibly. It imports nothing from internal/.
package maildomain

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Canonical returns d lowercased, without a trailing dot and, when it is
// written in UTF-8, as its A-label form. A UTF-8 d that is no valid
// internationalized domain name (a joiner where none may stand, a bad
// bidi label) is an error, with d lowercased. An ASCII d is not checked
// for being a host name.
func Canonical(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if isASCII(d) {
		return strings.ToLower(d), nil
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return strings.ToLower(d), err
	}
	return a, nil
}

// Normalize is Canonical without its error: a UTF-8 name that does not
// convert is only lowercased, so it matches no converted one.
func Normalize(d string) string {
	c, _ := Canonical(d)
	return c
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
