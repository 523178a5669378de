package dmarc

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
)

// FuzzParseRecord checks the DMARC record parser on any DNS text: a record
// it accepts has a valid p (none, quarantine, reject; RFC 7489 §6.6.3 step
// 6 turns an invalid one into none only when rua holds a URI), a valid or
// empty sp and a pct within 0..100; white space around tags and values
// changes nothing; and writing the record out again parses to the same
// record.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; fo=1:d:s; rf=afrf; ri=3600; rua=mailto:a@example.com,mailto:b@example.net!10m; ruf=mailto:f@example.com",
		"v=DMARC1; p=none",
		"v=DMARC1; p=bogus; rua=mailto:r@example.com",
		"v=DMARC1; sp=bogus; p=reject; rua=mailto:r@example.com",
		"v=DMARC1; rua=mailto:r@example.com",
		"v=DMARC1; p=bogus; rua=nouri",
		"p=reject; v=DMARC1",
		"v=DMARC1;p=reject;pct=101",
		"v=DMARC1; p=reject; pct=-1; ri=-5",
		"v=DMARC1 ; p = quarantine ; ; rua = mailto:x@y ;",
		"v=DMARC1; p=reject; p=none",
		"v=DMARC1; p=reject; novalue",
		"v=dmarc1; p=REJECT",
		"v=DMARC1; p=reject; fo=x; rf=iodef; adkim=q",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := parseRecord(txt)
		spaced, err2 := parseRecord(spaceOut(txt))
		if (err == nil) != (err2 == nil) || err == nil && !reflect.DeepEqual(rec, spaced) {
			t.Fatalf("white space changes the record:\n%q: %+v, %v\nspaced: %+v, %v", txt, rec, err, spaced, err2)
		}
		if err != nil {
			return
		}
		switch rec.Policy {
		case msgdmarc.PolicyNone, msgdmarc.PolicyQuarantine, msgdmarc.PolicyReject:
		default:
			t.Fatalf("policy %q accepted from %q", rec.Policy, txt)
		}
		switch rec.SubdomainPolicy {
		case "", msgdmarc.PolicyNone, msgdmarc.PolicyQuarantine, msgdmarc.PolicyReject:
		default:
			t.Fatalf("subdomain policy %q accepted from %q", rec.SubdomainPolicy, txt)
		}
		if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
			t.Fatalf("pct=%d accepted from %q", *rec.Percent, txt)
		}
		if rec.Policy != msgdmarc.PolicyNone && !strings.Contains(strings.ToLower(txt), string(rec.Policy)) {
			t.Fatalf("policy %q from a record without it: %q", rec.Policy, txt)
		}
		again, err := parseRecord(format(rec))
		if err != nil {
			t.Fatalf("%q (from %q) does not parse: %v", format(rec), txt, err)
		}
		if !reflect.DeepEqual(rec, again) {
			t.Fatalf("round trip changed the record:\n%q -> %+v\n%q -> %+v", txt, rec, format(rec), again)
		}
	})
}

// spaceOut adds white space around every tag's name, '=' and value.
func spaceOut(txt string) string {
	parts := strings.Split(txt, ";")
	for i, p := range parts {
		if k, v, ok := strings.Cut(p, "="); ok {
			parts[i] = " " + k + "\t= " + v + " "
		}
	}
	return strings.Join(parts, ";")
}

// format writes a record as DNS text.
func format(r *msgdmarc.Record) string {
	var b strings.Builder
	b.WriteString("v=DMARC1; p=" + string(r.Policy))
	if r.SubdomainPolicy != "" {
		b.WriteString("; sp=" + string(r.SubdomainPolicy))
	}
	if r.DKIMAlignment != "" {
		b.WriteString("; adkim=" + string(r.DKIMAlignment))
	}
	if r.SPFAlignment != "" {
		b.WriteString("; aspf=" + string(r.SPFAlignment))
	}
	if r.Percent != nil {
		b.WriteString("; pct=" + strconv.Itoa(*r.Percent))
	}
	if r.FailureOptions != 0 {
		var fo []string
		for _, o := range []struct {
			bit msgdmarc.FailureOptions
			s   string
		}{{msgdmarc.FailureAll, "0"}, {msgdmarc.FailureAny, "1"}, {msgdmarc.FailureDKIM, "d"}, {msgdmarc.FailureSPF, "s"}} {
			if r.FailureOptions&o.bit != 0 {
				fo = append(fo, o.s)
			}
		}
		b.WriteString("; fo=" + strings.Join(fo, ":"))
	}
	if len(r.ReportFormat) > 0 {
		rf := make([]string, len(r.ReportFormat))
		for i, f := range r.ReportFormat {
			rf[i] = string(f)
		}
		b.WriteString("; rf=" + strings.Join(rf, ":"))
	}
	if r.ReportInterval != 0 {
		fmt.Fprintf(&b, "; ri=%d", int64(r.ReportInterval.Seconds()))
	}
	if len(r.ReportURIAggregate) > 0 {
		b.WriteString("; rua=" + strings.Join(r.ReportURIAggregate, ","))
	}
	if len(r.ReportURIFailure) > 0 {
		b.WriteString("; ruf=" + strings.Join(r.ReportURIFailure, ","))
	}
	return b.String()
}
