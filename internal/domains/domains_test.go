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
