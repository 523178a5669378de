// Package domains holds sets of mail domains, compared the way mail
// routing compares them (pkg/maildomain): case-insensitively, without a
// trailing dot, and an internationalized domain in its A-label form
// whichever way it is written.
package domains

import (
	"strings"

	"github.com/elemta/elemta/pkg/maildomain"
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

// Normalize is maildomain.Normalize: lowercased, no trailing dot, a UTF-8
// domain in its A-label form (bücher.example is xn--bcher-kva.example), so
// the two spellings of one domain are one local domain and one Maildir. A
// UTF-8 name that is no valid internationalized domain name is only
// lowercased: it matches nothing converted, and Valid says why.
func Normalize(d string) string { return maildomain.Normalize(d) }

// Valid reports why d, a domain in UTF-8, is no internationalized domain
// name, or nil. An ASCII d is not checked.
func Valid(d string) error {
	_, err := maildomain.Canonical(d)
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
