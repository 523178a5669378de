package maildomain

import "testing"

func TestCanonical(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{"example.test", "example.test", false},
		{"Example.TEST.", "example.test", false},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"BÜCHER.Example.", "xn--bcher-kva.example", false}, // UTS #46 maps case
		{"xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"XN--BCHER-KVA.EXAMPLE.", "xn--bcher-kva.example", false},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah", false},
		{"under_score.test", "under_score.test", false}, // ASCII: not checked
		{"A\u200dB.example", "a\u200db.example", true},  // a joiner where none may stand
	} {
		got, err := Canonical(tt.in)
		if got != tt.want || (err != nil) != tt.bad {
			t.Errorf("Canonical(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.bad)
		}
		if n := Normalize(tt.in); n != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, n, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, domain string
		want            bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "EXAMPLE.com.", true},
		{"example.com", "sub.example.com", false},
		{".example.com", "sub.example.com", true},
		{".example.com", "example.com", false},
		{".example.com", "badexample.com", false},
		{"bücher.example", "xn--bcher-kva.example", true},
		{".bücher.example", "mail.xn--bcher-kva.example", true},
		{".xn--bcher-kva.example", "mail.bücher.example", true},
		{"bücher.example", "buecher.example", false},
	} {
		if got := Match(tt.pattern, tt.domain); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.domain, got, tt.want)
		}
	}
}
