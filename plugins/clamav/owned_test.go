package clamav

import (
	"slices"
	"testing"
)

// TestOwnedHeaders: with add_headers the host removes X-Virus-* from a
// message whose scan failed; without it, nothing.
func TestOwnedHeaders(t *testing.T) {
	for _, tt := range []struct {
		add  bool
		want []string
	}{{true, []string{"X-Virus-Scanned", "X-Virus-Status"}}, {false, nil}} {
		cfg := DefaultConfig()
		cfg.AddHeaders = tt.add
		if got := cfg.OwnedHeaders(); !slices.Equal(got, tt.want) {
			t.Errorf("add_headers = %v: OwnedHeaders() = %q, want %q", tt.add, got, tt.want)
		}
	}
}
