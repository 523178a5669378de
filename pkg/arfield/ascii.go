package arfield

import "strings"

// RFC 8601's grammar, and the parsers that follow it (python3-authres,
// go-msgauth's), are ASCII: a UTF-8 value of an SMTPUTF8 message (RFC
// 6531) makes the whole field unparseable there. ASCIIPValue and
// ASCIIToken are PValue and Token with ASCII results, what the authres
// and arc plugins write:
//
//   - an address with a UTF-8 local part keeps "@domain" (RFC 8601 §2.3:
//     the local-part may be omitted); with a UTF-8 domain (a U-label: no
//     IDNA table is linked to find its A-label) the value is "" and
//     go-msgauth's Format leaves the property out;
//   - in a token the non-ASCII letters Token keeps are percent-encoded
//     like every other byte it encodes, so url.PathUnescape still gives
//     the value back.

// ASCIIPValue is PValue for an ASCII-only reader (see above).
func ASCIIPValue(s string) string {
	if isASCII(s) {
		return PValue(s)
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 && at < len(s)-1 && isASCII(s[at:]) {
		return PValue(s[at:])
	}
	return ""
}

// ASCIIToken is Token for an ASCII-only reader (see above).
func ASCIIToken(s string) string {
	tok := Token(s)
	if isASCII(tok) {
		return tok
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(tok) * 2)
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < 0x80 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
