package authres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	msgauthres "github.com/emersion/go-msgauth/authres"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

const fuzzID = "mx.example.org"

// FuzzAuthservID checks the property the forged-field filter rests on:
// whenever go-msgauth's parser (what a downstream reader of the field
// sees) reads our authserv-id from a value, AuthservID reads it too, so
// Forged removes the field. An id AuthservID returns is never empty, and a
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
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := AuthservID(v)
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
		if err == nil && strings.EqualFold(theirs, fuzzID) && !(ok && strings.EqualFold(id, fuzzID)) {
			t.Fatalf("go-msgauth reads authserv-id %q from %q, AuthservID reads %q (%v): the forged field would stay", theirs, v, id, ok)
		}
		w := &Writer{authservID: fuzzID}
		h := registry.Header{{Name: "Authentication-Results", Value: v}, {Name: "authentication-results", Value: v}}
		rm := w.Forged(h)
		if want := ok && strings.EqualFold(id, fuzzID); (len(rm) == 2) != want || len(rm) != 0 && len(rm) != 2 {
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
		if id, ok := AuthservID(value); !ok || id != fuzzID {
			t.Fatalf("AuthservID of our own field is %q, %v: %q", id, ok, value)
		}
		// go-msgauth's Parse splits on every ';' and space, quoted or not,
		// so it cannot be the reader here; rfcResults follows RFC 8601's
		// quoted-strings and comments.
		parts, err := rfcResults(value)
		if err != nil {
			t.Fatalf("%v:\n%s", err, value)
		}
		if len(parts) != written+1 || parts[0] != fuzzID {
			t.Fatalf("reader sees %d parts (authserv-id %q), %d results written:\n%s", len(parts), parts[0], written, value)
		}
		methods := []string{"spf", "dkim", "dkim", "dmarc", "arc"}
		for i, p := range parts[1:] {
			if m, _, _ := strings.Cut(strings.TrimSpace(p), "="); m != methods[i] {
				t.Fatalf("result %d is %q, want %s:\n%s", i, m, methods[i], value)
			}
		}
		// A plain domain goes out as it is (go-msgauth reads it back too).
		if pvalueOK(domain) {
			_, got, err := msgauthres.Parse("x; dkim=pass header.d=" + pvalue(domain))
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

// pvalueOK reports whether s goes out unchanged and unquoted: its value
// as read must then be s itself.
func pvalueOK(s string) bool {
	return s != "" && pvalue(s) == s && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_@", r))
	})
}
