package pluginhost

import (
	"fmt"

	"github.com/elemta/elemta/registry"
)

// ownedHeaders returns the field names a registry.HeaderOwner config
// declares, refusing one that is not a field name (RFC 5322 §3.6.8:
// printable ASCII but ':'), which could never match a field to remove.
func ownedHeaders(ho registry.HeaderOwner) ([]string, error) {
	names := ho.OwnedHeaders()
	for _, n := range names {
		if !isFieldName(n) {
			return nil, fmt.Errorf("OwnedHeaders: %q is not a header field name", n)
		}
	}
	return names, nil
}

func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// failureRemovals is what a failed call of inst removes from the message:
// every field of each name it owns (see registry.HeaderOwner).
func (inst *instance) failureRemovals() []registry.Removal {
	if len(inst.settings.OwnedHeaders) == 0 {
		return nil
	}
	out := make([]registry.Removal, len(inst.settings.OwnedHeaders))
	for i, n := range inst.settings.OwnedHeaders {
		out[i] = registry.Removal{Name: n, Index: -1}
	}
	return out
}
