// Package mailbox turns a recipient address into the name of its local
// Maildir. The receiver (internal/smtpd) refuses at RCPT what this package
// refuses, so the delivery (internal/delivery) never has to bounce a
// recipient it accepted for want of a directory name.
//
// One mailbox is one Maildir: <root>/<domain>/<local-part>, with
//
//   - the domain lowercased, its root dot dropped and, written in UTF-8,
//     in its A-label form (pkg/maildomain, as internal/domains compares
//     local domains): user@bücher.example and
//     user@xn--bcher-kva.example share <root>/xn--bcher-kva.example/user,
//     as they are one local domain. A UTF-8 domain that is no valid
//     internationalized domain name is refused;
//   - the local part compared byte for byte after ASCII case folding: A-Z
//     become a-z, every other byte is kept, so "Jürgen" and "jürgen" share
//     a Maildir and "JÜRGEN" does not (no Unicode case folding), and a
//     local part in NFD is not the same mailbox as its NFC form (no
//     Unicode normalization: either would move existing Maildirs whose
//     name has a non-ASCII capital or an NFD form). RFC 5321 §2.4 lets the
//     receiving host decide; case-insensitive ASCII is what every common
//     MTA does;
//   - a local part or domain that could not be a directory name, or could
//     escape the root, refused: empty, ".", "..", starting with ".", longer
//     than 255 bytes (NAME_MAX), holding a control character, a space,
//     '/', '\' or '"', or not valid UTF-8.
package mailbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/elemta/elemta/pkg/maildomain"
)

// MaxName is the longest local part or domain a Maildir can be named
// after: NAME_MAX of Linux file systems.
const MaxName = 255

// ErrBadAddress is why an address names no Maildir.
var ErrBadAddress = errors.New("bad destination mailbox address syntax")

// Key returns the normalized local part and domain of addr (see the
// package documentation), or ErrBadAddress, wrapped with the reason.
func Key(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", errors.Join(ErrBadAddress, errors.New("want local-part@domain"))
	}
	if !utf8.ValidString(addr) { // before strings.ToLower, which would make it valid
		return "", "", errors.Join(ErrBadAddress, errors.New("not valid UTF-8"))
	}
	local = foldASCII(addr[:at])
	if domain, err = maildomain.Canonical(addr[at+1:]); err != nil { // as internal/domains compares it
		return "", "", errors.Join(ErrBadAddress, fmt.Errorf("domain is not a valid internationalized domain name: %w", err))
	}
	for _, part := range []struct{ what, s string }{{"local part", local}, {"domain", domain}} {
		if why := badName(part.s); why != "" {
			return "", "", errors.Join(ErrBadAddress, errors.New(part.what+" "+why))
		}
	}
	return local, domain, nil
}

// Normalize returns addr as Key normalizes it: local@domain.
func Normalize(addr string) (string, error) {
	local, domain, err := Key(addr)
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

// Path returns the Maildir of addr under root.
func Path(root, addr string) (string, error) {
	local, domain, err := Key(addr)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, domain, local), nil
}

// badName says why s cannot name a directory, or "".
func badName(s string) string {
	switch {
	case s == "" || s == "." || s == "..":
		return "is empty, . or .."
	case strings.HasPrefix(s, "."):
		return "starts with a dot"
	case len(s) > MaxName:
		return "is longer than 255 bytes"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x21 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == '\\' || r == '"'
	}):
		return "holds a space, a control character, '/', '\\' or '\"'"
	}
	return ""
}

// foldASCII lowercases the ASCII letters of s and keeps every other byte.
func foldASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}
