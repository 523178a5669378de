package authres

import (
	"context"
	"strings"
	"testing"

	msgauthres "github.com/emersion/go-msgauth/authres"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// fake stands in for the spf, dkim, dmarc and arc plugins: it records as
// its Data the value stored in the context under its name.
type fake struct{ name string }

func (f fake) HandleStage(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	v, _ := pc.Get("fake." + f.name)
	return &registry.Result{Data: v}, nil
}

func init() {
	for name, produces := range map[string]any{"spf": (*registry.SPFResult)(nil), "dkim": (*registry.DKIMResult)(nil),
		"dmarc": (*registry.DMARCResult)(nil), "arc": (*registry.ARCResult)(nil)} {
		registry.Register(registry.Module[struct{}, fake]{
			Name: name, Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
			Produces: []any{produces},
			New:      func(struct{}, registry.Host) (fake, error) { return fake{name}, nil },
		})
	}
}

func run(t *testing.T, toml string, raw string, env registry.Envelope, data map[string]any) (*pluginhost.StageResult, *registry.Message) {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(toml))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Hostname: "mx.example.org"}))
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	msg, err := registry.ParseMessage([]byte(raw), env)
	require.NoError(t, err)
	pc := registry.NewProcessingContext(msg, nil)
	for k, v := range data {
		pc.Set("fake."+k, v)
	}
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
	require.NoError(t, err)
	return sr, msg
}

const all = "[plugins]\nplugins = [\"authres\", \"spf\", \"dkim\", \"dmarc\", \"arc\"]\n"
const plain = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"

func TestHeader(t *testing.T) {
	env := registry.Envelope{MailFrom: "bounce@example.com", HELO: "mail.example.com"}
	tests := []struct {
		name string
		toml string
		env  registry.Envelope
		data map[string]any
		want string
	}{
		{"nothing ran", "[plugins]\nplugins = [\"authres\"]\n", env, nil, "mx.example.org; none"},
		{"spf, dkim, dmarc pass", all, env, map[string]any{
			"spf":   &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "example.com"},
			"dkim":  &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "example.com", Selector: "s1", Identity: "@example.com", Algorithm: "rsa-sha256", Result: registry.AuthPass}}},
			"dmarc": &registry.DMARCResult{Result: registry.AuthPass, Domain: "example.com", Policy: "reject"},
		}, "mx.example.org; spf=pass smtp.mailfrom=bounce@example.com; dkim=pass header.a=rsa-sha256 header.d=example.com header.i=@example.com header.s=s1; dmarc=pass header.from=example.com"},
		{"null sender: helo identity", all, registry.Envelope{HELO: "mail.example.com"}, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthSoftFail, Identity: "helo", Domain: "mail.example.com"},
		}, "mx.example.org; spf=softfail smtp.helo=mail.example.com"},
		{"failures carry reasons", all, env, map[string]any{
			"spf":   &registry.SPFResult{Result: registry.AuthPermError, Identity: "mailfrom", Domain: "example.com", Explanation: "invalid record"},
			"dkim":  &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "example.com", Selector: "s1", Algorithm: "rsa-sha256", Result: registry.AuthFail, Reason: "body hash mismatch"}, {Domain: "esp.net", Selector: "k", Algorithm: "ed25519-sha256", Result: registry.AuthPass}}},
			"dmarc": &registry.DMARCResult{Result: registry.AuthFail, Domain: "example.com", Policy: "reject", Reason: "not aligned"},
			"arc":   &registry.ARCResult{Result: registry.AuthPass, Instances: 2, OldestPass: 1},
		}, `mx.example.org; spf=permerror reason=invalid%20record smtp.mailfrom=bounce@example.com; dkim=fail reason=body%20hash%20mismatch header.a=rsa-sha256 header.d=example.com header.s=s1; dkim=pass header.a=ed25519-sha256 header.d=esp.net header.s=k; dmarc=fail reason=not%20aligned%3B%20p%3Dreject header.from=example.com; arc=pass header.oldest-pass=1`},
		{"unsigned message: dkim=none", all, env, map[string]any{"dkim": &registry.DKIMResult{}}, "mx.example.org; dkim=none"},
		{"configured authserv-id", "[plugins]\nplugins = [\"authres\"]\n[plugins.authres]\nauthserv_id = \"auth.example.net\"\n", env, nil, "auth.example.net; none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr, _ := run(t, tc.toml, plain, tc.env, tc.data)
			require.Empty(t, sr.Skipped)
			var got []string
			for _, f := range sr.AddHeaders {
				require.Equal(t, HeaderName, f.Name)
				checkFolded(t, f)
				got = append(got, headerfold.Unfold(f.Value))
			}
			require.Equal(t, []string{tc.want}, got, "exactly one Authentication-Results")
			// The header parses back with go-msgauth.
			id, _, err := msgauthres.Parse(got[0])
			require.NoError(t, err)
			require.NotEmpty(t, id)
		})
	}
}

func TestForgedHeadersRemoved(t *testing.T) {
	raw := strings.Join([]string{
		"Authentication-Results: MX.Example.ORG; spf=pass smtp.mailfrom=ceo@example.com",
		"Received: from relay.example.net",
		"Authentication-Results: relay.example.net; spf=fail smtp.mailfrom=x@example.com",
		"authentication-results: (forged) mx.example.org 1;",
		"  dkim=pass header.d=example.com",
		`Authentication-Results: "mx.example.org"; dmarc=pass`,
		"Authentication-Results: mx.example.org.evil; dmarc=pass",
		"Authentication-Results: mx.example.org.; dmarc=pass header.from=bank.com",
		"Authentication-Results: MX.EXAMPLE.ORG. 1; dkim=pass header.d=bank.com",
		`Authentication-Results: "Mx.Example.Org."; spf=pass`,
		"Authentication-Results: mx.example.org..; dmarc=pass",
		"From: a@example.com",
		"",
		"body",
		"",
	}, "\r\n")
	sr, msg := run(t, all, raw, registry.Envelope{}, map[string]any{
		"dmarc": &registry.DMARCResult{Result: registry.AuthFail, Domain: "example.com", Policy: "none", Reason: "not aligned"},
	})
	require.Equal(t, []registry.Removal{{Name: HeaderName, Index: 0}, {Name: HeaderName, Index: 2}, {Name: HeaderName, Index: 3},
		{Name: HeaderName, Index: 5}, {Name: HeaderName, Index: 6}, {Name: HeaderName, Index: 7}}, sr.RemoveHeaders)

	out := string(msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders))
	want := strings.Join([]string{
		`Authentication-Results: mx.example.org; dmarc=fail reason=not%20aligned%3B%20p%3Dnone header.from=example.com`,
		"Received: from relay.example.net",
		"Authentication-Results: relay.example.net; spf=fail smtp.mailfrom=x@example.com",
		"Authentication-Results: mx.example.org.evil; dmarc=pass",
		"Authentication-Results: mx.example.org..; dmarc=pass",
		"From: a@example.com",
		"",
		"body",
		"",
	}, "\r\n")
	require.Equal(t, want, headerfold.Unfold(string(out)))
}

func TestConfig(t *testing.T) {
	for _, bad := range []string{"two words", "semi;colon", "(x)"} {
		_, err := New(Config{AuthservID: bad}, registry.Host{Hostname: "mx"})
		require.ErrorContains(t, err, "authserv_id")
	}
	w, err := New(Config{}, registry.Host{Hostname: "mx.example.org"})
	require.NoError(t, err)
	require.Equal(t, "mx.example.org", w.authservID)
}

// TestHeaderEscaping: values that reach the header from the SMTP client
// (MAIL FROM) or from DNS (an SPF record's error) cannot end the field,
// nor close a quoted-string early and add results of their own.
func TestHeaderEscaping(t *testing.T) {
	tests := []struct {
		name string
		env  registry.Envelope
		data map[string]any
		want string
	}{
		{"CR LF in a reason", registry.Envelope{MailFrom: "bounce@example.com"}, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthPermError, Identity: "mailfrom", Domain: "example.com", Explanation: "bad\r\nX-Injected: yes"},
		}, `mx.example.org; spf=permerror reason=bad%0D%0AX-Injected%3A%20yes smtp.mailfrom=bounce@example.com`},
		{"backslash before a quote in MAIL FROM", registry.Envelope{MailFrom: `"x\"; dkim=pass header.d=paypal.com; y=\""@evil.example`}, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthFail, Identity: "mailfrom", Domain: "evil.example"},
		}, `mx.example.org; spf=fail smtp.mailfrom=%22x%5C%22%3B%20dkim%3Dpass%20header.d%3Dpaypal.com%3B%20y%3D%5C%22%22@evil.example`},
		{"backslash before a quote in a DKIM selector", registry.Envelope{}, map[string]any{
			"dkim": &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "evil.example", Selector: `s\"x`, Result: registry.AuthFail, Reason: `r\`}}},
		}, `mx.example.org; dkim=fail reason=r%5C header.d=evil.example header.s=s%5C%22x`},
		{"backslash in a domain", registry.Envelope{}, map[string]any{
			"dmarc": &registry.DMARCResult{Result: registry.AuthPass, Domain: `a\b.example`},
		}, `mx.example.org; dmarc=pass header.from=a%5Cb.example`},
		{"a DKIM selector that reads as dmarc=pass to a naive reader, quoted", registry.Envelope{}, map[string]any{
			"dkim":  &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "evil.example", Selector: `a" ; dmarc=pass header.from=bank.com ; x="`, Result: registry.AuthFail}}},
			"dmarc": &registry.DMARCResult{Result: registry.AuthFail, Domain: "bank.com", Policy: "reject"},
		}, `mx.example.org; dkim=fail header.d=evil.example header.s=a%22%20%3B%20dmarc%3Dpass%20header.from%3Dbank.com%20%3B%20x%3D%22; dmarc=fail reason=p%3Dreject header.from=bank.com`},
		{"spaces in a quoted local part cannot set header.d", registry.Envelope{MailFrom: `"x header.d=bank.com"@evil.example`}, map[string]any{
			"spf":  &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "evil.example"},
			"dkim": &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "evil.example", Identity: `"a header.d=bank.com"@evil.example`, Selector: "s", Result: registry.AuthPass}}},
		}, `mx.example.org; spf=pass smtp.mailfrom=%22x%20header.d%3Dbank.com%22@evil.example; dkim=pass header.d=evil.example header.i=%22a%20header.d%3Dbank.com%22@evil.example header.s=s`},
		// A UTF-8 local part goes (RFC 8601 §2.3 allows "@domain"): RFC 8601 parsers are ASCII (utf8.go).
		{"UTF-8 local part dropped, other non-ASCII is encoded", registry.Envelope{MailFrom: "\u00e9l\u00e8ve@exemple.fr"}, map[string]any{
			"spf":   &registry.SPFResult{Result: registry.AuthFail, Identity: "mailfrom", Domain: "exemple.fr"},
			"dmarc": &registry.DMARCResult{Result: registry.AuthPass, Domain: "bank\u00a0.example\u202e"},
		}, "mx.example.org; spf=fail smtp.mailfrom=@exemple.fr; dmarc=pass header.from=bank%C2%A0.example%E2%80%AE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr, _ := run(t, all, plain, tc.env, tc.data)
			require.Len(t, sr.AddHeaders, 1)
			checkFolded(t, sr.AddHeaders[0])
			value := headerfold.Unfold(sr.AddHeaders[0].Value)
			require.Equal(t, tc.want, value)
			// go-msgauth's Parse, which splits on every ';' and space, sees
			// the results as written: no dmarc=pass from a selector, no
			// header.d from a local part.
			_, got, err := msgauthres.Parse(value)
			require.NoError(t, err)
			require.Equal(t, strings.Count(value, ";"), len(got), "one result per ';'")
			for _, r := range got {
				if d, ok := r.(*msgauthres.DMARCResult); ok {
					require.NotEqual(t, msgauthres.ResultPass, d.Value, "a dmarc=pass nobody wrote")
				}
				if d, ok := r.(*msgauthres.DKIMResult); ok {
					require.NotEqual(t, "bank.com", d.Domain, "a header.d nobody wrote")
				}
			}
		})
	}
}

// checkFolded checks that f is folded (pkg/headerfold): no line over 78
// characters that white space could have shortened, none over 998.
func checkFolded(t *testing.T, f registry.Field) {
	t.Helper()
	require.Equal(t, headerfold.Value(f.Name, headerfold.Unfold(f.Value), headerfold.CRLF), f.Value, "folded")
	for _, line := range strings.Split(f.Name+": "+f.Value, "\r\n") {
		require.LessOrEqual(t, len(line), headerfold.MaxLine)
	}
}

// TestOwnsAuthenticationResults: should the plugin fail, the host removes
// every incoming Authentication-Results field (registry.HeaderOwner).
func TestOwnsAuthenticationResults(t *testing.T) {
	var cfg registry.HeaderOwner = &Config{AuthservID: "mx.example.org"}
	if got := cfg.OwnedHeaders(); len(got) != 1 || got[0] != HeaderName {
		t.Fatalf("OwnedHeaders() = %q, want [%q]", got, HeaderName)
	}
}
