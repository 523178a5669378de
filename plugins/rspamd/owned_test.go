package rspamd

import (
	"slices"
	"testing"
)

// TestOwnedHeaders: with spam_headers the host removes X-Spam* from a
// message whose scan failed; without it, nothing.
func TestOwnedHeaders(t *testing.T) {
	for _, tt := range []struct {
		add  bool
		want []string
	}{{true, []string{"X-Spam", "X-Spam-Score", "X-Spam-Action"}}, {false, nil}} {
		cfg := DefaultConfig()
		cfg.SpamHeaders = tt.add
		if got := cfg.OwnedHeaders(); !slices.Equal(got, tt.want) {
			t.Errorf("spam_headers = %v: OwnedHeaders() = %q, want %q", tt.add, got, tt.want)
		}
	}
}
