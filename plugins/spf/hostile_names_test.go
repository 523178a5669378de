package spf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pkg/testenv/dnstest"
	"github.com/elemta/elemta/registry"
)

// TestStageHostileLocalPart: a victim's record that puts the sender's local
// part into a name (%{l}, %{s}) must give its real result whatever bytes the
// sender chose: the production resolver asks the test DNS (unbound) for the
// macro's name and takes its NXDOMAIN. Before the resolver compared names in
// canonical form, MAIL FROM:<"a b"@victim> made that lookup time out, and
// the fail a temperror, accepted by the default on_temperror.
func TestStageHostileLocalPart(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	// The victims' records come from a static file; every other name, the
	// macro-expanded ones included, from unbound (NXDOMAIN for them).
	zone := filepath.Join(t.TempDir(), "victims.zone")
	require.NoError(t, os.WriteFile(zone, []byte(`$TTL 300
lvictim.example.test.   IN TXT "v=spf1 exists:%{l}._spf.example.test -all"
svictim.example.test.   IN TXT "v=spf1 exists:%{s}._spf.example.test -all"
trusted._spf.example.test. IN A 127.0.0.2
`), 0o600))
	res := dnstest.StaticResolverFor(t, []string{dns}, zone, 2*time.Second)
	m := stage(t, "[plugins]\nplugins = [\"spf\"]\n[plugins.spf]\non_fail = \"reject\"\non_temperror = \"accept\"\n", res)

	tests := []struct {
		from   string
		want   registry.AuthResult
		action registry.Action
	}{
		{"trusted@lvictim.example.test", registry.AuthPass, registry.Accept},
		{"a@lvictim.example.test", registry.AuthFail, registry.Reject},
		{`"a b"@lvictim.example.test`, registry.AuthFail, registry.Reject},
		{`"a b"@svictim.example.test`, registry.AuthFail, registry.Reject},
		{`"a;b(c)"@lvictim.example.test`, registry.AuthFail, registry.Reject},
		{`"a\\b"@lvictim.example.test`, registry.AuthFail, registry.Reject},
		{"\u00e9l\u00e8ve@lvictim.example.test", registry.AuthFail, registry.Reject},
		{`"a..b"@lvictim.example.test`, registry.AuthFail, registry.Reject},
	}
	for _, tc := range tests {
		t.Run(tc.from, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pc := envelopeContext(t, registry.PhaseMail, "203.0.113.5", "mail.example.test", tc.from)
			sr, err := m.ExecuteStage(ctx, registry.PreReception, pc)
			require.NoError(t, err)
			require.NoError(t, sr.Results[0].Err)
			got, ok := registry.Find[*registry.SPFResult](pc)
			require.True(t, ok)
			require.Equal(t, tc.want, got.Result, got.Explanation)
			require.Equal(t, tc.action, sr.Verdict.Action)
		})
	}
}
