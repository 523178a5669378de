package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionMismatch(t *testing.T) {
	tests := []struct {
		registered, module, want string
	}{
		{"1.2.0", "v1.2.0", ""},
		{"v1.2.0", "v1.2.0", ""},
		{"1.2", "v1.2.0", ""},
		{"1.2.0", "v1.3.0", "registers version 1.2.0 but its module is tagged v1.3.0"},
		{"1.2.0", "(devel)", ""},
		{"1.2.0", "v0.0.0-20240101000000-abcdefabcdef", ""},
		{"", "v1.3.0", ""},
		{"one", "v1.3.0", `registered version "one" is not a semantic version; the module is at v1.3.0`},
		{"2.0.0", "v2.0.0+incompatible", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, versionMismatch(tt.registered, tt.module), "%+v", tt)
	}
}

func TestVersionDist(t *testing.T) {
	distName, distVersion, coreRevision = "acme", "2.1.0", "0123abcd"
	t.Cleanup(func() { distName, distVersion, coreRevision = "", "", "" })
	var out bytes.Buffer
	a := &app{stdout: &out, stderr: &out}
	require.Equal(t, ExitAccept, a.version(nil))
	assert.Contains(t, out.String(), "acme 2.1.0 (elemta ")
	assert.Contains(t, out.String(), "  revision 0123abcd\n")

	out.Reset()
	require.Equal(t, ExitAccept, a.version([]string{"--json"}))
	var v versionJSON
	require.NoError(t, json.Unmarshal(out.Bytes(), &v), out.String())
	assert.Equal(t, "acme", v.Dist)
	assert.Equal(t, "2.1.0", v.DistVersion)
	assert.Equal(t, "0123abcd", v.Revision)
	assert.NotEmpty(t, v.Go)

	out.Reset()
	assert.Equal(t, ExitError, a.version([]string{"extra"}))
}
