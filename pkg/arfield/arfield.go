// Package arfield writes and reads the parts of an Authentication-Results
// field (RFC 8601) that the authres and arc plugins share: values that every
// reader splits the same way, and the authserv-id at the start of a field.
//
// It is a package of its own, without the authres plugin's registration, so
// that plugins/arc can use it without linking authres in.
package arfield

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Token returns s as a value (RFC 8601 §2.2: value = token / quoted-string)
// that needs no quoting: a token of letters, digits and the token characters
// # $ & ' * + - . ^ _ { | } ~ and the backquote, every other byte written as %XX
// (RFC 3986 percent-encoding of its UTF-8 bytes; '%' itself becomes %25, so
// url.PathUnescape gives s back and no two values are written alike).
//
// Why not a quoted-string: go-msgauth's authres.Parse and many other readers
// split a field on every ';' and on white space, quoted or not, and keep the
// quotes in the value. A DKIM selector such as
// `a" ; dmarc=pass header.from=bank.com ; x="`, quoted, reads there as a
// clean dmarc=pass, and a quoted MAIL FROM with spaces can set header.d.
// A value with no ';', no white space, no quote, no parenthesis and no
// backslash reads the same under RFC 8601's grammar and under a naive split.
// Letters and digits outside ASCII stay as they are (internationalized
// addresses, RFC 6532); other non-ASCII runes (spaces such as U+00A0,
// format characters such as U+202E) and invalid UTF-8 are encoded.
func Token(s string) string { return encode(s, -1) }

// PValue is Token for a pvalue that may be an address
// ([local-part "@"] domain-name, RFC 8601 §2.2): the last '@' stays as it is
// and separates the encoded local part from the encoded domain.
func PValue(s string) string { return encode(s, strings.LastIndexByte(s, '@')) }

func encode(s string, at int) string {
	clean := true
	for i, r := range s {
		if i != at && !safe(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case i == at:
			b.WriteByte('@')
		case r == utf8.RuneError && size == 1, !safe(r):
			for _, c := range []byte(s[i : i+size]) {
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// safe reports whether r goes out as itself: an RFC 2045 token character
// other than '%' (the escape) and '!' (go-msgauth's Format would quote it),
// or a non-ASCII letter or digit.
func safe(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	case r < utf8.RuneSelf:
		return strings.ContainsRune("#$&'*+-.^_`{|}~", r)
	case r == utf8.RuneError:
		return false
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// SameAuthservID reports whether two authserv-ids name the same server:
// compared case-insensitively, a trailing root dot ignored
// ("MX.Example.ORG." is "mx.example.org").
func SameAuthservID(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// AuthservID returns the authserv-id at the start of an
// Authentication-Results value: after any comments and white space, a
// token or a quoted-string (RFC 8601 §2.2). It does not look further: what
// follows the id, valid or not, does not change whose field it claims to be.
func AuthservID(v string) (string, bool) {
	id, _, ok := authservID(v)
	return id, ok
}

// Split returns the authserv-id at the start of an Authentication-Results
// value and the results after it: the text after the ';' that ends the
// authserv-id and its optional version ("" when nothing follows the id).
// ok is false without an id, or when something other than a version, a
// comment, white space or ';' follows it.
func Split(v string) (id, results string, ok bool) {
	id, end, ok := authservID(v)
	if !ok {
		return "", "", false
	}
	i := skipCFWS(v, end)
	if j := i; j < len(v) && isDigit(v[j]) {
		for j < len(v) && isDigit(v[j]) {
			j++
		}
		i = skipCFWS(v, j)
	}
	switch {
	case i == len(v):
		return id, "", true
	case v[i] == ';':
		return id, v[i+1:], true
	}
	return "", "", false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// authservID reads the id and returns the offset just after it.
func authservID(v string) (string, int, bool) {
	i := skipCFWS(v, 0)
	if i >= len(v) {
		return "", i, false
	}
	if v[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				if j+1 < len(v) {
					j++
					b.WriteByte(v[j])
				}
			case '"':
				return b.String(), j + 1, b.Len() > 0
			default:
				b.WriteByte(v[j])
			}
		}
		return "", len(v), false
	}
	// The id ends where any reader would end it: go-msgauth's Parse cuts at
	// every unicode.IsSpace rune (form feed, NEL, no-break space too), so a
	// forged "ours\f; dkim=pass" must read as ours here as well.
	j := i
	for j < len(v) {
		r, n := utf8.DecodeRuneInString(v[j:])
		if unicode.IsSpace(r) || strings.ContainsRune(";()", r) {
			break
		}
		j += n
	}
	return v[i:j], j, j > i
}

// skipCFWS skips white space and (nested) comments from i.
func skipCFWS(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			if r, n := utf8.DecodeRuneInString(v[i:]); unicode.IsSpace(r) {
				i += n - 1
				continue
			}
			return i
		}
	}
	return i
}
