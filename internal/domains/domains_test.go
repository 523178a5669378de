package domains

import "testing"

func TestSet(t *testing.T) {
	s := NewSet([]string{"Example.TEST.", "other.test"})
	for addr, want := range map[string]bool{
		"a@example.test":     true,
		"a@EXAMPLE.test.":    true,
		"a@other.test":       true,
		"a@sub.example.test": false, // subdomains are not included
		"a@example.testx":    false,
		"postmaster":         false,
		"a@b@example.test":   true, // the domain follows the last '@'
	} {
		if got := s.HasAddress(addr); got != want {
			t.Errorf("HasAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestInternationalized: a domain written in UTF-8 and its A-label are one
// domain, in a set and as an address's; one that is no IDN stays apart.
func TestInternationalized(t *testing.T) {
	for in, want := range map[string]string{
		"bücher.example":         "xn--bcher-kva.example",
		"BÜCHER.Example.":        "xn--bcher-kva.example", // UTS #46 maps case
		"xn--bcher-kva.example":  "xn--bcher-kva.example",
		"XN--BCHER-KVA.EXAMPLE.": "xn--bcher-kva.example",
		"例え.テスト":                 "xn--r8jz45g.xn--zckzah",
		"example.test":           "example.test",
		"a\u200db.example":       "a\u200db.example", // a joiner where none may stand: not converted
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	if Valid("a\u200db.example") == nil || Valid("bücher.example") != nil || Valid("under_score.test") != nil {
		t.Error("Valid: want an error for the joiner only")
	}
	s := NewSet([]string{"bücher.example", "xn--r8jz45g.xn--zckzah"})
	for addr, want := range map[string]bool{
		"a@xn--bcher-kva.example": true,
		"a@Bücher.example":        true,
		"a@例え.テスト":                true,
		"a@buecher.example":       false,
	} {
		if got := s.HasAddress(addr); got != want {
			t.Errorf("HasAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}
