package contentfilter

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/elemta/elemta/registry"
)

// A sender's copies of the fields add_header matches write are removed from
// every message checked, matched or not, so a forged verdict never passes
// for ours; the same names go to the host for failed checks (HeaderOwner).
func TestForgedVerdictFieldsRemoved(t *testing.T) {
	f := newFilter(t, `[plugins]
plugins = ["contentfilter"]
[[plugins.contentfilter.header_rules]]
name = "spammy"
header = "Subject"
pattern = "(?i)viagra"
action = "add_header"
add_header = "X-Spam-Flag: YES"
`)
	assert.Equal(t, []string{"X-Elemta-Content-Filter", "X-Spam-Flag"}, f.owned)
	want := []registry.Removal{{Name: "X-Elemta-Content-Filter", Index: -1}, {Name: "X-Spam-Flag", Index: -1}}

	forged := "X-Spam-Flag: NO\r\nx-elemta-content-filter: clean\r\nFrom: a@example.com\r\nSubject: hello\r\n\r\nhi\r\n"
	res := run(t, f, forged)
	assert.Equal(t, registry.Accept, res.Verdict.Action)
	assert.Equal(t, want, res.RemoveHeaders, "no rule matched: the forged fields still go")

	res = run(t, f, "X-Spam-Flag: NO\r\nFrom: a@example.com\r\nSubject: cheap viagra\r\n\r\nhi\r\n")
	assert.Equal(t, []registry.Removal{{Name: "X-Spam-Flag", Index: -1}}, res.RemoveHeaders)
	assert.Equal(t, []registry.Field{{Name: "X-Spam-Flag", Value: "YES"}}, res.AddHeaders)

	assert.Empty(t, run(t, f, "From: a@example.com\r\nSubject: hello\r\n\r\nhi\r\n").RemoveHeaders, "nothing to remove")
}
