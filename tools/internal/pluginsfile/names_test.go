package pluginsfile

import (
	"errors"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/pluginname"
)

// TestNamesFollowTheRegistryRule: a plugins.yaml name that Register would
// refuse (9x used to pass here and then panic at startup) is an error at
// its line, for entries and for variants, with pluginname's reason.
func TestNamesFollowTheRegistryRule(t *testing.T) {
	builtins := []string{"contentfilter", "9x", "-x", "plugins", "x9"}
	for _, tc := range []struct {
		doc  string
		line int    // 0: the file parses
		name string // the name whose pluginname.Check the message carries
	}{
		{"plugins:\n  - name: contentfilter\n  - name: 9x\n", 3, "9x"},
		{"plugins:\n  - name: -x\n", 2, "-x"},
		{"plugins:\n  - name: plugins\n", 2, "plugins"},
		{"plugins:\n  - name: contentfilter\nvariants:\n  9x: [contentfilter]\n", 4, "9x"},
		{"plugins:\n  - name: contentfilter\nvariants:\n  enabled: [contentfilter]\n", 4, "enabled"},
		{"plugins:\n  - name: x9\nvariants:\n  v2: [x9]\n", 0, ""},
	} {
		_, err := Parse("plugins.yaml", []byte(tc.doc), builtins)
		if tc.line == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.doc, err)
			}
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("%q: error %v, want an *Error", tc.doc, err)
		}
		if pe.Line != tc.line {
			t.Errorf("%q: error at line %d, want %d: %v", tc.doc, pe.Line, tc.line, pe)
		}
		if want := pluginname.Check(tc.name).Error(); !strings.Contains(pe.Msg, want) {
			t.Errorf("%q: message %q does not give pluginname's reason %q", tc.doc, pe.Msg, want)
		}
	}
}
