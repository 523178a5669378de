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

// TestInternationalized: a domain listed in UTF-8 and its A-label are one
// domain in a set (pkg/maildomain tests the conversion); one that is no
// IDN is not Valid.
func TestInternationalized(t *testing.T) {
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
