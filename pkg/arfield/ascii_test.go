package arfield

import (
	"net/url"
	"strings"
	"testing"
)

func TestASCII(t *testing.T) {
	tests := []struct{ in, token, pvalue string }{
		{"bounce@example.com", "bounce%40example.com", "bounce@example.com"},
		{"\u00e9l\u00e8ve@exemple.fr", "%C3%A9l%C3%A8ve%40exemple.fr", "@exemple.fr"},
		{"a@b\u00fccher.example", "a%40b%C3%BCcher.example", ""},
		{"Schl\u00fcssel ung\u00fcltig", "Schl%C3%BCssel%20ung%C3%BCltig", ""},
		{"\u00e9\u00e9@", "%C3%A9%C3%A9%40", ""},
		{"example.com", "example.com", "example.com"},
	}
	for _, tc := range tests {
		if got := ASCIIToken(tc.in); got != tc.token {
			t.Errorf("ASCIIToken(%q) = %q, want %q", tc.in, got, tc.token)
		}
		if got := ASCIIPValue(tc.in); got != tc.pvalue {
			t.Errorf("ASCIIPValue(%q) = %q, want %q", tc.in, got, tc.pvalue)
		}
	}
}

func FuzzASCII(f *testing.F) {
	for _, s := range []string{"j\u00fcrgen@example.com", "\u00e9\u00a0\xff", "a@b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := ASCIIToken(s)
		if !isASCII(tok) || strings.ContainsAny(tok, " \t\r\n;\"\\()=@") {
			t.Fatalf("ASCIIToken(%q) = %q", s, tok)
		}
		if back, err := url.PathUnescape(tok); err != nil || back != s {
			t.Fatalf("ASCIIToken(%q) = %q decodes to %q, %v", s, tok, back, err)
		}
		if pv := ASCIIPValue(s); !isASCII(pv) || strings.Count(pv, "@") > 1 {
			t.Fatalf("ASCIIPValue(%q) = %q", s, pv)
		}
	})
}
