// Delivery at reception: the end of DATA for a message that is written
// straight into local mailboxes instead of the spool.

package smtpd

import (
	"io"

	"github.com/elemta/elemta/internal/spool"
	"github.com/emersion/go-smtp"
)

// LocalDelivery delivers a message into local mailboxes at the end of DATA
// (delivery.Worker's DeliversNow and DeliverNow).
type LocalDelivery interface {
	// DeliversNow reports whether a message for rcpts may be delivered now
	// rather than spooled.
	DeliversNow(rcpts []string) bool
	// DeliverNow writes e's copies (msg its content) durably, or, when one
	// cannot be written, spools e for the recipients not yet delivered
	// (spooled true). A nil error means the message is delivered or
	// spooled, so it may be acknowledged; otherwise it is neither.
	DeliverNow(e *spool.Entry, msg io.WriterTo) (spooled bool, err error)
}

// deliverNow ends a transaction whose message is delivered at reception:
// 250 once it is delivered (or spooled, when a copy failed), 451 when it
// is neither.
func (s *session) deliverNow(e *spool.Entry, msg io.WriterTo) error {
	e.ReceivedAt = s.be.srv.now() // part of the copies' names: the spooled fallback keeps it
	spooled, err := s.be.cfg.Local.DeliverNow(e, msg)
	if err != nil {
		s.log.Error("delivery at reception failed, and so did the spool write", "id", e.ID, "err", err)
		s.be.tempFailed.Add(1)
		return errSpool
	}
	s.be.accepted.Add(1)
	how := "delivered"
	if spooled {
		how = "queued"
	}
	s.log.Info(how, "id", e.ID, "from", e.Envelope.MailFrom, "rcpts", len(e.Envelope.RcptTo), "at_reception", true)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + e.ID}
}
