package authres

import "strings"

// RFC 8601's grammar, and the parsers that follow it (python3-authres,
// go-msgauth's), are ASCII: a UTF-8 value of an SMTPUTF8 message (RFC
// 6531) would make the whole field unparseable. ASCII forms are written
// instead, losing only what has none:
//
//   - an address with a UTF-8 local part keeps "@domain" (RFC 8601 §2.3:
//     the local-part may be omitted); with a UTF-8 domain (a U-label: no
//     IDNA table is linked to find its A-label) the property is left out;
//   - any other UTF-8 value is left out, and in a reason, free text, each
//     non-ASCII character becomes '?'.

// asciiPValue returns the ASCII form of a property value, or "" (Format
// then writes no property).
func asciiPValue(s string) string {
	if isASCII(s) {
		return s
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 && isASCII(s[at:]) && at < len(s)-1 {
		return s[at:]
	}
	return ""
}

// asciiReason returns s with each non-ASCII character replaced by '?'.
func asciiReason(s string) string {
	if isASCII(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return '?'
		}
		return r
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
