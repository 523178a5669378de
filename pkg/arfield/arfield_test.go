package arfield

import (
	"net/url"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	tests := []struct{ in, token, pvalue string }{
		{"example.com", "example.com", "example.com"},
		{"rsa-sha256", "rsa-sha256", "rsa-sha256"},
		{"bounce@example.com", "bounce%40example.com", "bounce@example.com"},
		{"@example.com", "%40example.com", "@example.com"},
		{"a@b@example.com", "a%40b%40example.com", "a%40b@example.com"},
		{"not aligned; p=reject", "not%20aligned%3B%20p%3Dreject", "not%20aligned%3B%20p%3Dreject"},
		{`a" ; dmarc=pass header.from=bank.com ; x="`, "a%22%20%3B%20dmarc%3Dpass%20header.from%3Dbank.com%20%3B%20x%3D%22", "a%22%20%3B%20dmarc%3Dpass%20header.from%3Dbank.com%20%3B%20x%3D%22"},
		{`"a b"@evil.example`, "%22a%20b%22%40evil.example", "%22a%20b%22@evil.example"},
		{"100%", "100%25", "100%25"},
		{`a\b(c)`, "a%5Cb%28c%29", "a%5Cb%28c%29"},
		{"bad\r\nX-Injected: 1", "bad%0D%0AX-Injected%3A%201", "bad%0D%0AX-Injected%3A%201"},
		{"!", "%21", "%21"},
		{"\u00e9l\u00e8ve@exemple.fr", "\u00e9l\u00e8ve%40exemple.fr", "\u00e9l\u00e8ve@exemple.fr"},
		{"a\u00a0b\u202ec", "a%C2%A0b%E2%80%AEc", "a%C2%A0b%E2%80%AEc"},
		{"x\xffy", "x%FFy", "x%FFy"},
		{"#$&'*+-.^_`{|}~", "#$&'*+-.^_`{|}~", "#$&'*+-.^_`{|}~"},
		{"", "", ""},
	}
	for _, tc := range tests {
		if got := Token(tc.in); got != tc.token {
			t.Errorf("Token(%q) = %q, want %q", tc.in, got, tc.token)
		}
		if got := PValue(tc.in); got != tc.pvalue {
			t.Errorf("PValue(%q) = %q, want %q", tc.in, got, tc.pvalue)
		}
		if back, err := url.PathUnescape(Token(tc.in)); err != nil || back != tc.in {
			t.Errorf("PathUnescape(Token(%q)) = %q, %v", tc.in, back, err)
		}
		if strings.ContainsAny(Token(tc.in), " \t\r\n;\"\\()=@") {
			t.Errorf("Token(%q) = %q holds a delimiter", tc.in, Token(tc.in))
		}
	}
}

func TestSameAuthservID(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"mx.example.org", "mx.example.org", true},
		{"MX.Example.ORG", "mx.example.org", true},
		{"mx.example.org.", "mx.example.org", true},
		{"mx.example.org", "MX.EXAMPLE.ORG.", true},
		{"mx.example.org..", "mx.example.org", false},
		{"mx.example.org.evil", "mx.example.org", false},
		{"x.mx.example.org", "mx.example.org", false},
		{"", "mx.example.org", false},
	}
	for _, tc := range tests {
		if got := SameAuthservID(tc.a, tc.b); got != tc.want {
			t.Errorf("SameAuthservID(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestAuthservID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"mx.example.org; spf=pass", "mx.example.org", true},
		{"mx.example.org 1; spf=pass", "mx.example.org", true},
		{"  (comment (nested)) mx.example.org;", "mx.example.org", true},
		{`"mx.example.org"; none`, "mx.example.org", true},
		{`"mx.\"q\""; none`, `mx."q"`, true},
		{"mx.example.org", "mx.example.org", true},
		{"mx.example.org garbage; none", "mx.example.org", true},
		{"; spf=pass", "", false},
		{"", "", false},
		{"(only a comment)", "", false},
		{`"unterminated; none`, "", false},
	}
	for _, tc := range tests {
		got, ok := AuthservID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("AuthservID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in, id, results string
		ok              bool
	}{
		{"mx.example.org; spf=pass; dkim=none", "mx.example.org", " spf=pass; dkim=none", true},
		{"mx.example.org 1 (v1); spf=pass", "mx.example.org", " spf=pass", true},
		{`"mx;x" ; none`, "mx;x", " none", true},
		{"(c) mx.example.org", "mx.example.org", "", true},
		{"mx.example.org garbage; none", "", "", false},
		{"mx.example.org 1x; none", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		id, results, ok := Split(tc.in)
		if id != tc.id || results != tc.results || ok != tc.ok {
			t.Errorf("Split(%q) = %q, %q, %v; want %q, %q, %v", tc.in, id, results, ok, tc.id, tc.results, tc.ok)
		}
	}
}

// FuzzToken: whatever the input, Token and PValue hold no byte a reader
// splits or unquotes on, keep at most one '@' (PValue) or none (Token), and
// decode back to the input.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"example.com", "a b@c", `a" ; dmarc=pass ; x="`, "100%", "\u00e9\u00a0\xff", "@@@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, enc := range []func(string) string{Token, PValue} {
			out := enc(s)
			if strings.ContainsAny(out, " \t\r\n;\"\\()=,:<>?/[]!") || strings.ContainsFunc(out, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("%q encodes to %q, which holds a delimiter", s, out)
			}
			if len(strings.Fields(out)) > 1 {
				t.Fatalf("%q encodes to %q, which splits on white space", s, out)
			}
			if back, err := url.PathUnescape(out); err != nil || back != s {
				t.Fatalf("%q encodes to %q, which decodes to %q, %v", s, out, back, err)
			}
		}
		if strings.Contains(Token(s), "@") || strings.Count(PValue(s), "@") > 1 {
			t.Fatalf("'@' in Token %q or twice in PValue %q", Token(s), PValue(s))
		}
	})
}
