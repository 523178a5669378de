// Submission fix-ups (RFC 6409 §8): Date and Message-ID for an
// authenticated client's message that lacks them.

package smtpd

import (
	"time"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

// submissionFields returns the Date and Message-ID fields (with CRLF) to
// add to msg, sent by an authenticated client, or nil. id is the queue
// id, unique on this host, so the Message-ID is <id@hostname>.
func (s *session) submissionFields(msg *registry.Message, env registry.Envelope, id string) []byte {
	if !s.be.cfg.AddDateMessageID || env.AuthUser == "" {
		return nil
	}
	var out []byte
	if !hasField(msg.Header, "Date") {
		out = append(out, headerfold.Field("Date", s.be.srv.now().Format(time.RFC1123Z), headerfold.CRLF)+"\r\n"...)
	}
	if !hasField(msg.Header, "Message-ID") {
		out = append(out, headerfold.Field("Message-ID", "<"+id+"@"+s.be.cfg.Hostname+">", headerfold.CRLF)+"\r\n"...)
	}
	return out
}

func hasField(h registry.Header, name string) bool {
	return len(h.Values(name)) > 0
}
