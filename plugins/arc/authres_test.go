package arc

import (
	"strings"
	"testing"

	"github.com/elemta/elemta/registry"
)

func TestMergeAuthres(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"ours, merged", []string{"mx.example.org; spf=pass smtp.mailfrom=example.com", "mx.example.org; dkim=none"},
			"mx.example.org; spf=pass smtp.mailfrom=example.com; dkim=none"},
		{"other servers left out", []string{"relay.example.net; spf=fail", "mx.example.org; dkim=none", "mx.example.org.evil; dmarc=pass"},
			"mx.example.org; dkim=none"},
		{"case and a trailing root dot", []string{"MX.Example.ORG.; spf=pass", "mx.example.org. 1; dkim=none"},
			"mx.example.org; spf=pass; dkim=none"},
		{"comment, version, folding", []string{"(ours)\r\n mx.example.org 1 ;\r\n\tspf=pass"},
			"mx.example.org; spf=pass"},
		{"quoted id holding ';'", []string{`"mx.example.org;x"; dmarc=pass`, `"mx.example.org"; dkim=none`},
			"mx.example.org; dkim=none"},
		{"garbage after the id", []string{"mx.example.org dmarc=pass; dkim=pass"}, ""},
		{"ours without results", []string{"mx.example.org"}, "mx.example.org"},
		{"none of ours", []string{"relay.example.net; spf=pass"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeAuthres("mx.example.org", tc.values); got != tc.want {
				t.Fatalf("mergeAuthres = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAuthresForHostileValues: without an Authentication-Results from an
// earlier plugin, the ARC-Authentication-Results is built from the
// session's results, whose values the sender chose (DKIM d= and i=, the
// From domain). They go out as authres writes them: a naive reader
// splitting on ';' and white space sees the results written, no more.
func TestAuthresForHostileValues(t *testing.T) {
	p := &Plugin{authservID: "mx.example.org"}
	pc := registry.NewProcessingContext(parse(t, []byte(testMsg), registry.Envelope{}), nil)
	pc.AddResult(&registry.Result{Plugin: "dkim", Data: &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{
		Domain: `a" ; dmarc=pass header.from=bank.com ; x="`, Identity: `"x header.d=bank.com"@evil.example`, Result: registry.AuthFail,
	}}}})
	pc.AddResult(&registry.Result{Plugin: "dmarc", Data: &registry.DMARCResult{Result: registry.AuthFail, Domain: "bank.com"}})
	got := p.authresFor(pc)
	want := "mx.example.org; dkim=fail header.d=a%22%20%3B%20dmarc%3Dpass%20header.from%3Dbank.com%20%3B%20x%3D%22 " +
		"header.i=%22x%20header.d%3Dbank.com%22@evil.example; dmarc=fail header.from=bank.com"
	if got != want {
		t.Fatalf("authresFor =\n%q\nwant\n%q", got, want)
	}
	for _, part := range strings.Split(got, ";")[1:] {
		words := strings.Fields(part)
		if strings.HasPrefix(words[0], "dmarc=") && words[0] != "dmarc=fail" {
			t.Fatalf("a naive reader sees %s in %q", words[0], got)
		}
		for _, w := range words[1:] {
			if w == "header.d=bank.com" {
				t.Fatalf("a naive reader sees %s in %q", w, got)
			}
		}
	}
}
