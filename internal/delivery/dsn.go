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
func BuildDSN(hostname string, e *spool.Entry, failed []Failure, now time.Time) []byte {
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
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", hostname)
	w("X-Elemta-Queue-ID: %s", e.ID)
	w("Arrival-Date: %s", e.ReceivedAt.Format(time.RFC1123Z))
	for _, f := range failed {
		w("")
		w("Final-Recipient: rfc822; %s", f.Rcpt)
		w("Action: failed")
		w("Status: %s", f.Status)
		w("Diagnostic-Code: smtp; %s", oneLine(f.Reply))
		w("Last-Attempt-Date: %s", date)
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
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
