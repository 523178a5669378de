// Package domains holds sets of mail domains, compared the way mail
// routing compares them: case-insensitively and without a trailing dot.
package domains

import "strings"

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

// Normalize lowercases d and drops a trailing dot.
func Normalize(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

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
