// Package domains holds sets of mail domains, compared the way mail
// routing compares them: case-insensitively, without a trailing dot, and
// an internationalized domain in its A-label form whichever way it is
// written.
package domains

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Set is a set of domains.
type Set map[string]bool

// NewSet returns the set of the given domains.
func NewSet(domains []string) Set {
	s := make(Set, len(domains))
	for _, d := range domains {
		s[Normalize(d)] = true
	}
	return s
}

// Normalize lowercases d and drops a trailing dot. A domain written in
// UTF-8 (SMTPUTF8 mail, a config) becomes its A-label form, bücher.example
// xn--bcher-kva.example, by IDNA2008 with UTS #46 mapping as for a lookup
// (golang.org/x/net/idna): so the two spellings of one domain are one
// local domain and one Maildir. A UTF-8 name that is no valid
// internationalized domain name is only lowercased: it stays UTF-8,
// matches nothing converted, and Valid says why.
func Normalize(d string) string {
	d = strings.TrimSuffix(d, ".")
	if isASCII(d) {
		return strings.ToLower(d)
	}
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		return a
	}
	return strings.ToLower(d)
}

// Valid reports why d, a domain in UTF-8, is no internationalized domain
// name (its A-label conversion's error), or nil. An ASCII d is not
// checked.
func Valid(d string) error {
	d = strings.TrimSuffix(d, ".")
	if isASCII(d) {
		return nil
	}
	_, err := idna.Lookup.ToASCII(d)
	return err
}

// Of returns the normalized domain of an address ("" when it has no '@').
func Of(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return Normalize(addr[at+1:])
}

// HasAddress reports whether addr's domain is in s.
func (s Set) HasAddress(addr string) bool { return s[Of(addr)] }

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
