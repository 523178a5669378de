package authres

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
)

// pythonAuthres parses each field ("Authentication-Results: ...", folded
// as written) with Debian's python3-authres and returns its error per
// field ("" when it parsed).
func pythonAuthres(t *testing.T, fields []string) []string {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "authres")
	js, err := json.Marshal(fields)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", `
import json, sys, authres
out = []
for f in json.load(sys.stdin):
    try:
        authres.AuthenticationResultsHeader.parse(f)
        out.append("")
    except Exception as e:
        out.append(str(e) or repr(e))
json.dump(out, sys.stdout)
`)
	cmd.Stdin = strings.NewReader(string(js))
	b, err := cmd.Output()
	require.NoError(t, err)
	var out []string
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// eightFailed is the DKIM result of a message with eight signatures that
// all fail, with the longest reasons the dkim plugin gives.
func eightFailed() *registry.DKIMResult {
	r := &registry.DKIMResult{}
	for i := range 8 {
		r.Signatures = append(r.Signatures, registry.DKIMSignatureResult{
			Domain: fmt.Sprintf("signer%d.subdomain.example.com", i), Selector: fmt.Sprintf("selector-2026-%02d", i),
			Identity: fmt.Sprintf("@signer%d.subdomain.example.com", i), Algorithm: "rsa-sha256", Result: registry.AuthFail,
			Reason: "signature verification failed: crypto/rsa: verification error",
		})
	}
	return r
}

// TestPythonAuthresParsesOurFields: every field this plugin writes,
// including the eight-failed-signatures one and those of SMTPUTF8
// messages, is folded (no line over 78 that white space could shorten,
// none over 998) and parsed by python3-authres.
func TestPythonAuthresParsesOurFields(t *testing.T) {
	env := registry.Envelope{MailFrom: "bounce@example.com", HELO: "mail.example.com"}
	utf8Env := registry.Envelope{MailFrom: "jürgen@example.com", HELO: "mail.example.com"}
	tests := []struct {
		name string
		env  registry.Envelope
		data map[string]any
		want string // a substring of the unfolded value
	}{
		{"eight failed signatures", env, map[string]any{
			"spf":   &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "example.com"},
			"dkim":  eightFailed(),
			"dmarc": &registry.DMARCResult{Result: registry.AuthFail, Domain: "example.com", Policy: "reject", Reason: "no aligned SPF or DKIM pass"},
			"arc":   &registry.ARCResult{Result: registry.AuthFail, Instances: 3, Reason: "ARC-Message-Signature i=3 does not verify"},
		}, "header.s=selector-2026-07"},
		{"UTF-8 sender", utf8Env, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthSoftFail, Identity: "mailfrom", Domain: "example.com"},
			"dkim": &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "example.com", Selector: "s1",
				Identity: "jürgen@example.com", Algorithm: "rsa-sha256", Result: registry.AuthFail, Reason: "Schlüssel ungültig"}}},
			"dmarc": &registry.DMARCResult{Result: registry.AuthPass, Domain: "example.com"},
		}, "smtp.mailfrom=@example.com; dkim=fail reason=Schl%C3%BCssel%20ung%C3%BCltig header.a=rsa-sha256 header.d=example.com header.i=@example.com"},
		{"UTF-8 domain", registry.Envelope{MailFrom: "a@bücher.example"}, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthNone, Identity: "mailfrom", Domain: "bücher.example"},
		}, "mx.example.org; spf=none"},
	}
	var fields []string
	for _, tt := range tests {
		sr, _ := run(t, all, plain, tt.env, tt.data)
		require.Len(t, sr.AddHeaders, 1, tt.name)
		f := sr.AddHeaders[0]
		checkFolded(t, f)
		v := headerfold.Unfold(f.Value)
		assert.Contains(t, v, tt.want, tt.name)
		assert.True(t, !strings.ContainsFunc(v, func(r rune) bool { return r >= 0x80 }), "%s: ASCII: %q", tt.name, v)
		fields = append(fields, f.Name+": "+f.Value)
	}
	assert.Greater(t, len(fields[0]), 998, "the eight-signature field is long enough to need folding")
	for i, err := range pythonAuthres(t, fields) {
		assert.Empty(t, err, "python3-authres on %s:\n%s", tests[i].name, fields[i])
	}
}
