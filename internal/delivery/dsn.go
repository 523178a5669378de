package delivery

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

// BuildDSN returns a delivery status notification (RFC 3464: a
// multipart/report of type delivery-status) telling e's sender that the
// failed recipients did not get the message. The third part holds the
// original message's header (text/rfc822-headers).
//
// When an address or the original header is UTF-8 (an SMTPUTF8 message)
// it is RFC 6533's internationalized DSN: message/global-delivery-status
// with utf-8 address types, message/global-headers, and it is sent with
// SMTPUTF8 (globalDSN).
func BuildDSN(hostname string, e *spool.Entry, failed []Failure, now time.Time) []byte {
	global := globalDSN(e, failed)
	addrType, statusType, headersType := "rfc822", "message/delivery-status", "text/rfc822-headers"
	if global {
		addrType, statusType, headersType = "utf-8", "message/global-delivery-status", "message/global-headers"
	}
	boundary := "=_elemta_dsn_" + e.ID
	date := now.Format(time.RFC1123Z)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", hostname)
	w("To: <%s>", e.Envelope.MailFrom)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", date)
	w("Message-ID: <%s.dsn@%s>", e.ID, hostname)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail system at %s.", hostname)
	w("")
	w("Your message (queue id %s) could not be delivered to the following", e.ID)
	w("recipients:")
	w("")
	for _, f := range failed {
		w("  <%s>: %s", f.Rcpt, oneLine(f.Reply))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: %s", statusType)
	w("")
	w("Reporting-MTA: dns; %s", hostname)
	w("X-Elemta-Queue-ID: %s", e.ID)
	w("Arrival-Date: %s", e.ReceivedAt.Format(time.RFC1123Z))
	for _, f := range failed {
		w("")
		w("Final-Recipient: %s; %s", addrTypeOf(addrType, f.Rcpt), dsnAddress(f.Rcpt))
		w("Action: failed")
		w("Status: %s", f.Status)
		w("Diagnostic-Code: smtp; %s", oneLine(f.Reply))
		w("Last-Attempt-Date: %s", date)
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: %s", headersType)
	w("")
	if m, err := registry.ParseMessage(e.Message, registry.Envelope{}); err == nil {
		hdr := m.HeaderBytes()
		b.Write(hdr)
		if !bytes.HasSuffix(hdr, []byte("\n")) {
			b.WriteString("\r\n")
		}
	}
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// globalDSN reports whether the DSN for e is an internationalized one (RFC
// 6533): its sender, a failed recipient or the original header is UTF-8.
// Only an SMTPUTF8 message can hold any.
func globalDSN(e *spool.Entry, failed []Failure) bool {
	if !e.Envelope.SMTPUTF8 {
		return false
	}
	if !isASCII(e.Envelope.MailFrom) {
		return true
	}
	for _, f := range failed {
		if !isASCII(f.Rcpt) {
			return true
		}
	}
	if m, err := registry.ParseMessage(e.Message, registry.Envelope{}); err == nil {
		return !isASCII(string(m.HeaderBytes()))
	}
	return false
}

// addrTypeOf is the address type of a DSN field: rfc822 for an ASCII
// address even in a global DSN (RFC 6533 §3: utf-8 is for those that need it).
func addrTypeOf(global, addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return global
}

// dsnAddress writes addr for a DSN field: as it is when ASCII (rfc822), as
// RFC 6533 §3's utf-8-addr-unitext otherwise, where '+', '=', '\' and
// controls are written \x{HEX}.
func dsnAddress(addr string) string {
	if isASCII(addr) {
		return addr
	}
	var b strings.Builder
	for _, r := range addr {
		if r < 0x21 || r == '+' || r == '=' || r == '\\' || r == 0x7f {
			fmt.Fprintf(&b, "\\x{%X}", r)
			continue
		}
		b.WriteRune(r)
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
