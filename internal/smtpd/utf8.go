// SMTPUTF8 (RFC 6531, 6532): which addresses and header fields a
// transaction may carry.

package smtpd

import (
	"bytes"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// Replies of the SMTPUTF8 rules.
var (
	// RFC 6531 §3.5: a non-ASCII address outside an SMTPUTF8 transaction.
	errUTF8Sender    = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII sender address needs MAIL FROM ... SMTPUTF8 (RFC 6531)"}
	errUTF8Recipient = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII recipient address needs MAIL FROM ... SMTPUTF8 (RFC 6531)"}
	// RFC 6532 §3.1 permits UTF-8 in header fields only when the message
	// is sent with SMTPUTF8; RFC 6152's 8BITMIME covers the body alone.
	errUTF8Header = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII header field needs MAIL FROM ... SMTPUTF8 (RFC 6532)"}
	// A UTF-8 header section that is not UTF-8.
	errBadUTF8Header = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Header section is not valid UTF-8"}
)

// addressError returns the refusal of addr in a transaction that is
// SMTPUTF8 (utf8) or not, or nil: a non-ASCII address needs SMTPUTF8 and
// must then be valid UTF-8.
func addressError(addr string, utf8Tx bool, notASCII, bad *smtp.SMTPError) error {
	if isASCII(addr) {
		return nil
	}
	if !utf8Tx {
		return notASCII
	}
	if !utf8.ValidString(addr) {
		return bad
	}
	return nil
}

// headerError checks a header section: valid UTF-8 when SMTPUTF8; outside
// SMTPUTF8, ASCII when strict (Config.StrictUTF8Headers), anything
// otherwise.
func headerError(hdr []byte, utf8Tx, strict bool) error {
	if isASCIIBytes(hdr) {
		return nil
	}
	if !utf8Tx {
		if strict {
			return errUTF8Header
		}
		return nil
	}
	if !utf8.Valid(hdr) {
		return errBadUTF8Header
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isASCIIBytes(b []byte) bool {
	return bytes.IndexFunc(b, func(r rune) bool { return r >= 0x80 }) < 0
}
