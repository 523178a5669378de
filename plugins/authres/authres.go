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
	"unicode/utf8"

	msgauthres "github.com/emersion/go-msgauth/authres"

	"github.com/elemta/elemta/pkg/arfield"
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
	if err := cfg.Validate(); err != nil {
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
			r.Helo = token(spf.Domain)
		} else {
			r.From = token(spf.Domain)
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
			params := map[string]string{"header.d": token(s.Domain), "header.i": pvalue(s.Identity), "header.s": token(s.Selector), "header.a": token(s.Algorithm)}
			if s.Result != registry.AuthPass {
				params["reason"] = reason(s.Reason)
			}
			out = append(out, &msgauthres.GenericResult{Method: "dkim", Value: msgauthres.ResultValue(s.Result), Params: params})
		}
	}
	if dmarc, ok := registry.Find[*registry.DMARCResult](pc); ok {
		r := &msgauthres.DMARCResult{Value: msgauthres.ResultValue(dmarc.Result), From: token(dmarc.Domain)}
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

// Values go out through arfield: a token (percent-encoded where needed) or
// an address, never a quoted-string, so go-msgauth's Format has nothing to
// quote and every reader, RFC 8601's grammar or a naive split on ';' and
// white space, sees the same results with the same values.
//
// Both are ASCII (arfield.ASCIIPValue, ASCIIToken): RFC 8601 parsers
// reject UTF-8 even where RFC 6532 would allow it.
//
// Each value is one word of the field, and folding keeps a word whole only
// when it fits on a line (RFC 5322 §2.1.1: 998 characters): a value is at
// most maxValue bytes before encoding, so at most three times that after.
// No address, domain or selector is longer (RFC 5321 §4.5.3.1.3: a path of
// 256 octets, a DNS name of 253), so a longer one is left out rather than
// cut; a longer reason, which only informs, is cut.
const maxValue = 300

// pvalue writes an address (smtp.mailfrom, header.i), token an identifier
// (a domain, a selector, an algorithm): "" (the property is left out) when
// longer than maxValue.
func pvalue(s string) string { return bounded(arfield.ASCIIPValue, s) }
func token(s string) string  { return bounded(arfield.ASCIIToken, s) }

func bounded(enc func(string) string, s string) string {
	if len(s) > maxValue {
		return ""
	}
	return enc(s)
}

// reason writes a reason, cut to maxValue bytes (at a UTF-8 boundary).
func reason(s string) string {
	if len(s) > maxValue {
		cut := maxValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return arfield.ASCIIToken(s)
}

// Forged returns a removal for every Authentication-Results field of h
// whose authserv-id is ours (compared case-insensitively, a trailing root
// dot ignored: arfield.SameAuthservID): no one upstream may speak for this
// server (RFC 8601 §5).
func (w *Writer) Forged(h registry.Header) []registry.Removal {
	var out []registry.Removal
	n := 0
	for _, f := range h {
		if !strings.EqualFold(f.Name, HeaderName) {
			continue
		}
		if id, ok := arfield.AuthservID(f.Value); ok && arfield.SameAuthservID(id, w.authservID) {
			out = append(out, registry.Removal{Name: HeaderName, Index: n})
		}
		n++
	}
	return out
}
