package authres

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"

	msgauthres "github.com/emersion/go-msgauth/authres"

	"github.com/elemta/elemta/pkg/arfield"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

const fuzzID = "mx.example.org"

// FuzzAuthservID checks the property the forged-field filter rests on:
// whenever go-msgauth's parser (what a downstream reader of the field
// sees) reads our authserv-id from a value (in any case, with or without a
// trailing root dot), AuthservID reads it too, so Forged removes the field. An id AuthservID returns is never empty, and a
// bare one holds no white space, comment or ';'.
func FuzzAuthservID(f *testing.F) {
	for _, s := range []string{
		"mx.example.org; spf=pass smtp.mailfrom=a@b",
		"  (comment (nested) \\) ) mx.example.org; none",
		"\"mx.example.org\"; dkim=pass",
		"\"mx.\\example.org\" 1; none",
		"MX.EXAMPLE.ORG;",
		"mx.example.org",
		"(unterminated mx.example.org; none",
		"mx.example.org\r\n ; arc=pass",
		"\"\"; none",
		"other.example; dkim=pass header.d=mx.example.org",
		"mx.example.org.; dmarc=pass",
		"MX.Example.ORG. 1; dkim=pass",
		"\"mx.example.org.\"; spf=pass",
		"mx.example.org..; none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := arfield.AuthservID(v)
		if ok && id == "" {
			t.Fatalf("ok with an empty id for %q", v)
		}
		if !ok && id != "" {
			t.Fatalf("id %q without ok for %q", id, v)
		}
		if ok && !strings.Contains(v, "\"") && strings.ContainsAny(id, " \t\r\n;()") {
			t.Fatalf("bare id %q holds a delimiter (value %q)", id, v)
		}
		theirs, _, err := msgauthres.Parse(v)
		if err == nil && arfield.SameAuthservID(theirs, fuzzID) && !(ok && arfield.SameAuthservID(id, fuzzID)) {
			t.Fatalf("go-msgauth reads authserv-id %q from %q, AuthservID reads %q (%v): the forged field would stay", theirs, v, id, ok)
		}
		w := &Writer{authservID: fuzzID}
		h := registry.Header{{Name: "Authentication-Results", Value: v}, {Name: "authentication-results", Value: v}}
		rm := w.Forged(h)
		if want := ok && arfield.SameAuthservID(id, fuzzID); (len(rm) == 2) != want || len(rm) != 0 && len(rm) != 2 {
			t.Fatalf("Forged removed %d of 2 identical fields (AuthservID %q, %v)", len(rm), id, ok)
		}
		for i, r := range rm {
			if r.Index != i || r.Name != HeaderName {
				t.Fatalf("removal %d is %+v", i, r)
			}
		}
	})
}

// FuzzHeader feeds hostile values (a MAIL FROM, DNS-derived reasons,
// signature tags) into the field the plugin writes and checks that a
// reader sees exactly the results written, under our authserv-id: no
// value can end a result early, add one, or break the field.
func FuzzHeader(f *testing.F) {
	f.Add("bounce@example.com", "example.com", "s1", "@example.com", "rsa-sha256", "body hash mismatch", "not aligned", "reject", byte(0))
	f.Add(`"x\"; dkim=pass header.d=evil"@evil.example`, "evil.example", `s"; spf=pass`, `\`, "a;b", "reason\r\nX-Injected: 1", `\"`, "none;", byte(1))
	f.Add("a@b", "d", "s", "i", "a", "\\", "\\\\\"", "\"", byte(2))
	f.Add("", "", "", "", "", "", "", "", byte(3))
	f.Add("(comment)@x", "x (y)", "=", "==", "a=b", ")(", "\x00\x7f\x1b[31m", "p=reject; sp=none", byte(4))
	results := []registry.AuthResult{registry.AuthPass, registry.AuthFail, registry.AuthSoftFail, registry.AuthNeutral,
		registry.AuthNone, registry.AuthTempError, registry.AuthPermError, registry.AuthPolicy}
	f.Fuzz(func(t *testing.T, mailFrom, domain, selector, identity, algo, reasonText, dmarcReason, policy string, pick byte) {
		res := func(shift int) registry.AuthResult { return results[(int(pick)>>shift)%len(results)] }
		msg, err := registry.ParseMessage([]byte("From: a@example.com\r\n\r\nbody\r\n"), registry.Envelope{MailFrom: mailFrom})
		if err != nil {
			t.Fatal(err)
		}
		pc := registry.NewProcessingContext(msg, nil)
		identityKind := "mailfrom"
		if pick&1 == 1 {
			identityKind = "helo"
		}
		pc.AddResult(&registry.Result{Data: &registry.SPFResult{Result: res(0), Identity: identityKind, Domain: domain, Explanation: reasonText}})
		pc.AddResult(&registry.Result{Data: &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{
			{Domain: domain, Selector: selector, Identity: identity, Algorithm: algo, Result: res(1), Reason: reasonText},
			{Domain: selector, Selector: domain, Identity: mailFrom, Algorithm: algo, Result: res(2), Reason: dmarcReason},
		}}})
		pc.AddResult(&registry.Result{Data: &registry.DMARCResult{Result: res(3), Domain: domain, Policy: policy, Reason: dmarcReason}})
		pc.AddResult(&registry.Result{Data: &registry.ARCResult{Result: res(4), OldestPass: int(pick), Reason: reasonText}})
		const written = 5

		w := &Writer{authservID: fuzzID}
		out, err := w.HandleStage(context.Background(), registry.PostReception, pc)
		if err != nil || len(out.AddHeaders) != 1 {
			t.Fatalf("HandleStage: %v, %+v", err, out)
		}
		value := headerfold.Unfold(out.AddHeaders[0].Value)
		if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("control character in %q", value)
		}
		if id, ok := arfield.AuthservID(value); !ok || id != fuzzID {
			t.Fatalf("AuthservID of our own field is %q, %v: %q", id, ok, value)
		}
		// RFC 8601's grammar (quoted-strings, comments) and a naive
		// split on ';' and white space (go-msgauth's Parse, many others)
		// must see the same thing: exactly the results written, each with
		// exactly the values written.
		parts, err := rfcResults(value)
		if err != nil {
			t.Fatalf("%v:\n%s", err, value)
		}
		if len(parts) != written+1 || parts[0] != fuzzID {
			t.Fatalf("reader sees %d parts (authserv-id %q), %d results written:\n%s", len(parts), parts[0], written, value)
		}
		want := intended(t, w.Results(pc))
		if len(want) != written {
			t.Fatalf("%d results intended, %d written", len(want), written)
		}
		naive := naiveResults(value)
		if len(naive) != len(want) {
			t.Fatalf("naive split sees %d results, %d written:\n%s", len(naive), len(want), value)
		}
		for i := range want {
			if fmt.Sprint(naive[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("result %d reads\n%v\nwritten\n%v\nin %s", i, naive[i], want[i], value)
			}
		}
		id, got, err := msgauthres.Parse(value)
		if err != nil || id != fuzzID || len(got) != len(want) {
			t.Fatalf("go-msgauth: %q, %d results, %v; %d written:\n%s", id, len(got), err, len(want), value)
		}
		for i, r := range got {
			if g := fromMsgauth(r); fmt.Sprint(g) != fmt.Sprint(want[i].subset(g)) {
				t.Fatalf("go-msgauth reads result %d as\n%v\nwritten\n%v\nin %s", i, g, want[i], value)
			}
		}
		// A plain domain goes out as it is (go-msgauth reads it back too).
		if plainOK(domain) {
			_, got, err := msgauthres.Parse("x; dkim=pass header.d=" + token(domain))
			if err != nil || got[0].(*msgauthres.DKIMResult).Domain != domain {
				t.Fatalf("header.d=%s does not read back: %v", domain, err)
			}
			if !strings.Contains(value, " header.d="+domain+" ") && !strings.Contains(value, " header.d="+domain+";") {
				t.Fatalf("header.d=%s not written as it is:\n%s", domain, value)
			}
		}
	})
}

// rfcResults splits an Authentication-Results value at the ';' outside
// quoted-strings and comments (RFC 8601 §2.2, RFC 5322 §3.2); it fails on
// an unterminated quoted-string or comment.
func rfcResults(v string) ([]string, error) {
	var (
		parts []string
		start int
		quote bool
		depth int
	)
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && (quote || depth > 0):
			i++
		case quote:
			quote = c != '"'
		case c == '"' && depth == 0:
			quote = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			parts = append(parts, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if quote || depth > 0 {
		return nil, fmt.Errorf("unterminated quoted-string or comment")
	}
	return append(parts, strings.TrimSpace(v[start:])), nil
}

// plainOK reports whether s goes out unchanged and unquoted: its value
// as read must then be s itself.
func plainOK(s string) bool {
	return s != "" && token(s) == s && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_@", r))
	})
}

// result is one method=value with its properties, as a reader sees it.
type result struct {
	method, value string
	params        map[string]string // only the non-empty ones
}

// subset keeps the properties of r that g has a field for.
func (r result) subset(g result) result {
	out := result{method: r.method, value: r.value, params: map[string]string{}}
	for k := range g.params {
		out.params[k] = r.params[k]
	}
	return out
}

// intended describes the results the plugin passes to go-msgauth's Format.
func intended(t *testing.T, rs []msgauthres.Result) []result {
	var out []result
	for _, r := range rs {
		var x result
		switch r := r.(type) {
		case *msgauthres.SPFResult:
			x = result{"spf", string(r.Value), map[string]string{"reason": r.Reason, "smtp.mailfrom": r.From, "smtp.helo": r.Helo}}
		case *msgauthres.DKIMResult:
			x = result{"dkim", string(r.Value), map[string]string{"reason": r.Reason, "header.d": r.Domain, "header.i": r.Identifier}}
		case *msgauthres.DMARCResult:
			x = result{"dmarc", string(r.Value), map[string]string{"reason": r.Reason, "header.from": r.From}}
		case *msgauthres.GenericResult:
			x = result{r.Method, string(r.Value), maps.Clone(r.Params)}
		default:
			t.Fatalf("unexpected result type %T", r)
		}
		maps.DeleteFunc(x.params, func(_, v string) bool { return v == "" })
		out = append(out, x)
	}
	return out
}

// fromMsgauth describes a result as go-msgauth's Parse returns it: only
// the properties its types keep, the non-empty ones.
func fromMsgauth(r msgauthres.Result) result {
	var x result
	switch r := r.(type) {
	case *msgauthres.SPFResult:
		x = result{"spf", string(r.Value), map[string]string{"reason": r.Reason, "smtp.mailfrom": r.From, "smtp.helo": r.Helo}}
	case *msgauthres.DKIMResult:
		x = result{"dkim", string(r.Value), map[string]string{"reason": r.Reason, "header.d": r.Domain, "header.i": r.Identifier}}
	case *msgauthres.DMARCResult:
		x = result{"dmarc", string(r.Value), map[string]string{"reason": r.Reason, "header.from": r.From}}
	case *msgauthres.ARCResult:
		x = result{"arc", string(r.Value), map[string]string{}}
		if r.OldestPass > 0 {
			x.params["header.oldest-pass"] = strconv.Itoa(r.OldestPass)
		}
	case *msgauthres.GenericResult:
		x = result{r.Method, string(r.Value), maps.Clone(r.Params)}
	default:
		x = result{method: fmt.Sprintf("%T", r)}
	}
	maps.DeleteFunc(x.params, func(_, v string) bool { return v == "" })
	return x
}

// naiveResults reads a field the naive way: split on every ';', then on
// white space, then each word at its first '='.
func naiveResults(v string) []result {
	var out []result
	for _, part := range strings.Split(v, ";")[1:] {
		words := strings.Fields(part)
		if len(words) == 0 {
			continue
		}
		m, val, _ := strings.Cut(words[0], "=")
		x := result{m, val, map[string]string{}}
		for _, w := range words[1:] {
			k, v, ok := strings.Cut(w, "=")
			if _, dup := x.params[k]; dup || !ok {
				v = "<a word of its own or twice: " + w + ">" // never equal to a value written
			}
			x.params[k] = v
		}
		out = append(out, x)
	}
	return out
}
