package spf

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// TestInstancesReuseTheirOwnResult: with two instances, each reuses at
// PhaseMessage the result it found at MAIL FROM, not the first
// instance's: spf checks MAIL FROM only, spf/strict HELO too.
func TestInstancesReuseTheirOwnResult(t *testing.T) {
	z := testZone()
	m := stage(t, "[plugins]\nplugins = [\"spf\", \"spf/strict\"]\n[plugins.spf]\ncheck_helo = false\n[plugins.\"spf/strict\"]\ncheck_helo = true\n", z)
	pc := envelopeContext(t, registry.PhaseMail, "192.0.2.10", "mx.pass.test", "a@pass.test")
	for _, phase := range []registry.Phase{registry.PhaseMail, registry.PhaseMessage} {
		pc.Phase = phase
		_, err := m.ExecuteStage(context.Background(), registry.PreReception, pc)
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		instance string
		helo     bool
	}{{"spf", false}, {"spf/strict", true}} {
		r, ok := pc.Result(tc.instance)
		require.True(t, ok, tc.instance)
		require.Equal(t, "spf: pass (checked at MAIL FROM)", r.Details, tc.instance)
		res, ok := r.Data.(*registry.SPFResult)
		require.True(t, ok, tc.instance)
		require.Equal(t, registry.AuthPass, res.Result)
		require.Equal(t, tc.helo, res.HELO != nil, "%s: its own result, HELO checked: %v", tc.instance, tc.helo)
	}
	require.Equal(t, 4, z.queries, "MAIL FROM: TXT for each; HELO: TXT and A for spf/strict alone")
}
