// Package authres writes one Authentication-Results header (RFC 8601) per
// message from the SPF, DKIM, DMARC and ARC results recorded in the
// processing context, and removes incoming Authentication-Results fields
// that claim this server's authserv-id (RFC 8601 §5). It registers itself as
// the "authres" plugin.
package authres

import (
	"cmp"
	"context"
	"strconv"
	"strings"
	"unicode"

	msgauthres "github.com/emersion/go-msgauth/authres"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

// HeaderName is the field this plugin writes and filters.
const HeaderName = "Authentication-Results"

// Writer is the loaded authres plugin.
type Writer struct {
	authservID string
}

// New builds the plugin; the authserv-id defaults to host.Hostname.
func New(cfg Config, host registry.Host) (*Writer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	id := cfg.AuthservID
	if id == "" {
		id = cmp.Or(host.AuthservID, host.Hostname)
	}
	return &Writer{authservID: id}, nil
}

// HandleStage implements registry.StageHandler.
func (w *Writer) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	results := w.Results(pc)
	// Format leaves a space after a result without properties.
	value := strings.TrimRight(msgauthres.Format(w.authservID, results), " ")
	removals := w.Forged(pc.Message.Header)
	details := "authres: " + strconv.Itoa(len(results)) + " results"
	if len(removals) > 0 {
		details += ", removed " + strconv.Itoa(len(removals)) + " forged " + HeaderName
	}
	return &registry.Result{
		AddHeaders:    []registry.Field{{Name: HeaderName, Value: headerfold.Value(HeaderName, value, headerfold.EOL(pc.Message.Raw))}},
		RemoveHeaders: removals,
		Details:       details,
	}, nil
}

// Results turns the authentication results found in pc into
// Authentication-Results entries: spf, one dkim per signature (dkim=none
// when the message had none), dmarc, arc; each only when its plugin ran.
func (w *Writer) Results(pc *registry.ProcessingContext) []msgauthres.Result {
	var out []msgauthres.Result
	if spf, ok := registry.Find[*registry.SPFResult](pc); ok {
		r := &msgauthres.SPFResult{Value: msgauthres.ResultValue(spf.Result)}
		if spf.Identity == "helo" {
			r.Helo = pvalue(spf.Domain)
		} else {
			r.From = pvalue(spf.Domain)
			if mf := pc.Message.Envelope.MailFrom; mf != "" {
				r.From = pvalue(mf)
			}
		}
		if spf.Result == registry.AuthTempError || spf.Result == registry.AuthPermError {
			r.Reason = reason(spf.Explanation)
		}
		out = append(out, r)
	}
	if dkim, ok := registry.Find[*registry.DKIMResult](pc); ok {
		if len(dkim.Signatures) == 0 {
			out = append(out, &msgauthres.DKIMResult{Value: msgauthres.ResultNone})
		}
		for _, s := range dkim.Signatures {
			// GenericResult: go-msgauth's DKIMResult has no header.s or header.a.
			params := map[string]string{"header.d": pvalue(s.Domain), "header.i": pvalue(s.Identity), "header.s": pvalue(s.Selector), "header.a": pvalue(s.Algorithm)}
			if s.Result != registry.AuthPass {
				params["reason"] = reason(s.Reason)
			}
			out = append(out, &msgauthres.GenericResult{Method: "dkim", Value: msgauthres.ResultValue(s.Result), Params: params})
		}
	}
	if dmarc, ok := registry.Find[*registry.DMARCResult](pc); ok {
		r := &msgauthres.DMARCResult{Value: msgauthres.ResultValue(dmarc.Result), From: pvalue(dmarc.Domain)}
		if dmarc.Result != registry.AuthPass && dmarc.Result != registry.AuthNone {
			r.Reason = dmarc.Reason
			if dmarc.Policy != "" {
				r.Reason = strings.TrimPrefix(r.Reason+"; p="+dmarc.Policy, "; ")
			}
			r.Reason = reason(r.Reason)
		}
		out = append(out, r)
	}
	if arc, ok := registry.Find[*registry.ARCResult](pc); ok {
		// GenericResult: go-msgauth v0.7.0's Format does not know *ARCResult.
		params := map[string]string{}
		if arc.OldestPass > 0 {
			params["header.oldest-pass"] = strconv.Itoa(arc.OldestPass)
		}
		if arc.Result != registry.AuthPass {
			params["reason"] = reason(arc.Reason)
		}
		out = append(out, &msgauthres.GenericResult{Method: "arc", Value: msgauthres.ResultValue(arc.Result), Params: params})
	}
	return out
}

// go-msgauth's Format quotes a value that needs it but neither escapes a
// backslash inside the quotes nor drops line breaks, so a MAIL FROM such as
// "x\"; dkim=pass ..."@evil.example or a DNS record holding CR LF could
// add results or fields of its own. reason and pvalue prepare values for
// it: control characters become spaces, and a backslash is doubled when
// Format will quote the value (always for a reason: '\' is a tspecial; for
// a pvalue unless it is address-like and left bare).
func reason(s string) string {
	return strings.ReplaceAll(noCTL(asciiReason(s)), `\`, `\\`)
}

func pvalue(s string) string {
	s = noCTL(asciiPValue(s))
	for _, ch := range s {
		if !unicode.IsLetter(ch) && !unicode.IsDigit(ch) && !strings.ContainsRune("#$%&'*+,./-@[]\\^_`{|}~", ch) {
			return strings.ReplaceAll(s, `\`, `\\`)
		}
	}
	return s
}

func noCTL(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Forged returns a removal for every Authentication-Results field of h
// whose authserv-id is ours (compared case-insensitively): no one upstream
// may speak for this server (RFC 8601 §5).
func (w *Writer) Forged(h registry.Header) []registry.Removal {
	var out []registry.Removal
	n := 0
	for _, f := range h {
		if !strings.EqualFold(f.Name, HeaderName) {
			continue
		}
		if id, ok := AuthservID(f.Value); ok && strings.EqualFold(id, w.authservID) {
			out = append(out, registry.Removal{Name: HeaderName, Index: n})
		}
		n++
	}
	return out
}

// AuthservID returns the authserv-id at the start of an
// Authentication-Results value: after any comments and white space, a
// token or a quoted-string (RFC 8601 §2.2).
func AuthservID(v string) (string, bool) {
	i := skipCFWS(v, 0)
	if i >= len(v) {
		return "", false
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
				return b.String(), b.Len() > 0
			default:
				b.WriteByte(v[j])
			}
		}
		return "", false
	}
	j := i
	for j < len(v) && !strings.ContainsRune(" \t\r\n;()", rune(v[j])) {
		j++
	}
	return v[i:j], j > i
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
			return i
		}
	}
	return i
}
