package dmarc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestPolicyLookupFailures: with the kit's static-zone resolver, a spoof
// of example.test (p=reject) is rejected when DNS answers, passes as "no
// policy" when the policy record does not exist, and is tempfailed, never
// delivered, when the lookup fails with SERVFAIL or a timeout.
func TestPolicyLookupFailures(t *testing.T) {
	const zone = `
$ORIGIN example.test.
@      IN SOA ns hostmaster 1 3600 600 86400 60
_dmarc IN TXT "v=DMARC1; p=reject"
`
	spoof := "From: ceo@example.test\r\n"
	sr, res := runStage(t, enforcing, registrytest.NewResolver(t, zone), spoof, spfPass("evil.test"))
	require.Equal(t, registry.AuthFail, res.Result, res.Reason)
	require.Equal(t, registry.Reject, sr.Verdict.Action)

	registrytest.EachDNSFailure(t, zone, "_dmarc.example.test", func(t *testing.T, f registrytest.DNSFailure, r *registrytest.Resolver) {
		sr, res := runStage(t, enforcing, r, spoof, spfPass("evil.test"))
		switch f {
		case registrytest.NXDOMAIN:
			require.Equal(t, registry.AuthNone, res.Result, res.Reason)
			require.Equal(t, registry.Accept, sr.Verdict.Action)
		default:
			require.Equal(t, registry.AuthTempError, res.Result, res.Reason)
			require.Equal(t, registry.TempFail, sr.Verdict.Action)
			code, enh, _ := sr.Verdict.Reply()
			require.Equal(t, 451, code)
			require.Equal(t, "4.4.3", enh)
		}
	})
}
