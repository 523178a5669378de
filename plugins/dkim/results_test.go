package dkim

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// TestSignatureResults: a pass is reported only for the d= the verifier
// verified, and only when its verifications line up with the fields.
func TestSignatureResults(t *testing.T) {
	field := func(d string) registry.HeaderField {
		return registry.HeaderField{Name: "DKIM-Signature", Value: "v=1; a=rsa-sha256; d=" + d + "; s=s1; h=from; bh=x; b=y"}
	}
	pass := func(d string) verification { return verification{Domain: d} }
	tests := []struct {
		name   string
		fields []registry.HeaderField
		verifs []verification
		max    int
		want   []registry.AuthResult
	}{
		{"pass", []registry.HeaderField{field("example.test")}, []verification{pass("example.test")}, 10,
			[]registry.AuthResult{registry.AuthPass}},
		{"pass, case and white space differ", []registry.HeaderField{field("Exam ple.TEST")}, []verification{pass("example.test")}, 10,
			[]registry.AuthResult{registry.AuthPass}},
		{"verified for another domain", []registry.HeaderField{field("victim.test")}, []verification{pass("attacker.test")}, 10,
			[]registry.AuthResult{registry.AuthPermError}},
		{"a failure keeps its result", []registry.HeaderField{field("victim.test")}, []verification{{Domain: "attacker.test", Err: errors.New("bad signature")}}, 10,
			[]registry.AuthResult{registry.AuthFail}},
		{"fewer verifications than fields", []registry.HeaderField{field("victim.test"), field("attacker.test")}, []verification{pass("attacker.test")}, 10,
			[]registry.AuthResult{registry.AuthPermError, registry.AuthPermError}},
		{"past max_signatures", []registry.HeaderField{field("a.test"), field("b.test")}, []verification{pass("a.test")}, 1,
			[]registry.AuthResult{registry.AuthPass, registry.AuthPolicy}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []registry.AuthResult
			for _, s := range signatureResults(tc.fields, tc.verifs, tc.max) {
				got = append(got, s.Result)
			}
			require.Equal(t, tc.want, got)
		})
	}
}
