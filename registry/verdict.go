package registry

import (
	"fmt"
	"strings"
)

// Action is what should happen to a message. Actions are ordered by
// severity: when plugins disagree, the most severe wins.
type Action int

// Actions, least severe first.
const (
	Accept Action = iota
	Quarantine
	TempFail
	Reject
)

var actionNames = []string{"accept", "quarantine", "tempfail", "reject"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return actionNames[a]
}

// ParseAction accepts "accept", "quarantine", "tempfail" or "reject".
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (valid: %s)", s, strings.Join(actionNames, ", "))
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Verdict is a decision with the SMTP reply that carries it.
type Verdict struct {
	Action Action
	// Code is the SMTP reply code (550), EnhancedCode the RFC 3463 status
	// ("5.7.1") and Text the human-readable reply. Zero values are filled
	// with the defaults of Action by Reply.
	Code         int
	EnhancedCode string
	Text         string
}

// Verdict constructors for plugin code.
func AcceptVerdict() Verdict { return Verdict{Action: Accept} }

// RejectVerdict is a permanent refusal (5xx).
func RejectVerdict(code int, enhanced, text string) Verdict {
	return Verdict{Action: Reject, Code: code, EnhancedCode: enhanced, Text: text}
}

// TempFailVerdict asks the client to try again later (4xx).
func TempFailVerdict(code int, enhanced, text string) Verdict {
	return Verdict{Action: TempFail, Code: code, EnhancedCode: enhanced, Text: text}
}

// QuarantineVerdict accepts the message into quarantine.
func QuarantineVerdict(text string) Verdict {
	return Verdict{Action: Quarantine, Code: 250, EnhancedCode: "2.0.0", Text: text}
}

var defaultReplies = [...]struct {
	code      int
	enh, text string
}{
	Accept:     {250, "2.0.0", "OK"},
	Quarantine: {250, "2.0.0", "OK"},
	TempFail:   {451, "4.7.1", "Try again later"},
	Reject:     {550, "5.7.1", "Message rejected"},
}

// Reply returns the verdict's SMTP code, enhanced code and text, filling in
// the defaults for its action where the plugin left them empty.
func (v Verdict) Reply() (int, string, string) {
	code, enh, text := v.Code, v.EnhancedCode, v.Text
	def := defaultReplies[Accept]
	if v.Action >= 0 && int(v.Action) < len(defaultReplies) {
		def = defaultReplies[v.Action]
	}
	if code == 0 {
		code = def.code
	}
	if enh == "" {
		enh = def.enh
	}
	if text == "" {
		text = def.text
	}
	return code, enh, text
}

// String formats the verdict as an SMTP reply: "550 5.7.1 Message rejected".
func (v Verdict) String() string {
	code, enh, text := v.Reply()
	return fmt.Sprintf("%s (%d %s %s)", v.Action, code, enh, text)
}
