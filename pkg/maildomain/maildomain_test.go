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
