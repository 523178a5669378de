package milter

import (
	"fmt"

	"github.com/d--j/go-milter"

	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/registry"
)

// maxReplyText bounds the text of a reply the MTA is given (a plugin's
// text is the client's business only as far as it fits on a line or two).
const maxReplyText = 900

// verdictReply is the milter reply for a reject or tempfail verdict: the
// same code, enhanced code and text `elemta serve` answers (the plugin's
// codes when they fit the action's class, the action's defaults
// otherwise), as an SMFIR_REPLYCODE.
func verdictReply(v registry.Verdict) *milter.Response {
	se := smtpd.VerdictError(v)
	text := se.Message
	if len(text) > maxReplyText {
		text = text[:maxReplyText]
	}
	ec := se.EnhancedCode
	resp, err := milter.RejectWithCodeAndReason(uint16(se.Code), fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], text))
	if err != nil { // cannot happen for a 4xx/5xx code and a bounded text; never turn it into an accept
		if v.Action == registry.TempFail {
			return milter.RespTempFail
		}
		return milter.RespReject
	}
	return resp
}

// Fixed replies of the milter's own.
var (
	// replyLocalError is the tempfail of default_action = "tempfail".
	replyLocalError = mustReply(451, "4.3.0 Local error in processing, try again later")
	// replyTooBig refuses a message over max_message_size or a header over max_header_size.
	replyTooBig = mustReply(552, "5.3.4 Message too big for the system")
	// replyTooManyRcpts refuses the recipients past max_recipients.
	replyTooManyRcpts = mustReply(452, "4.5.3 Too many recipients")
	// replyMalformed refuses a message whose header cannot be parsed.
	replyMalformed = func(err error) *milter.Response {
		r, e := milter.RejectWithCodeAndReason(554, "5.6.0 Malformed message: "+err.Error())
		if e != nil {
			return milter.RespReject
		}
		return r
	}
)

func mustReply(code uint16, text string) *milter.Response {
	r, err := milter.RejectWithCodeAndReason(code, text)
	if err != nil {
		panic(err)
	}
	return r
}
