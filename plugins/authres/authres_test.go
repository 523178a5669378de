package authres

import (
	"context"
	"strings"
	"testing"

	msgauthres "github.com/emersion/go-msgauth/authres"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
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
	for _, name := range []string{"spf", "dkim", "dmarc", "arc"} {
		registry.Register(registry.Module[struct{}, fake]{
			Name: name, Types: []registry.PluginType{registry.PluginTypeCustom}, Stages: []registry.Stage{registry.PostReception},
			New: func(struct{}, registry.Host) (fake, error) { return fake{name}, nil },
		})
	}
}

func run(t *testing.T, toml string, raw string, env registry.Envelope, data map[string]any) (*registry.StageResult, *registry.Message) {
	t.Helper()
	cfg, err := registry.ParseConfig("test.toml", []byte(toml))
	require.NoError(t, err)
	m := registry.NewManager(cfg, registry.WithHost(registry.Host{Hostname: "mx.example.org"}))
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
		}, `mx.example.org; spf=permerror reason="invalid record" smtp.mailfrom=bounce@example.com; dkim=fail reason="body hash mismatch" header.a=rsa-sha256 header.d=example.com header.s=s1; dkim=pass header.a=ed25519-sha256 header.d=esp.net header.s=k; dmarc=fail reason="not aligned; p=reject" header.from=example.com; arc=pass header.oldest-pass=1`},
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
		"From: a@example.com",
		"",
		"body",
		"",
	}, "\r\n")
	sr, msg := run(t, all, raw, registry.Envelope{}, map[string]any{
		"dmarc": &registry.DMARCResult{Result: registry.AuthFail, Domain: "example.com", Policy: "none", Reason: "not aligned"},
	})
	require.Equal(t, []registry.Removal{{Name: HeaderName, Index: 0}, {Name: HeaderName, Index: 2}, {Name: HeaderName, Index: 3}}, sr.RemoveHeaders)

	out := string(msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders))
	want := strings.Join([]string{
		`Authentication-Results: mx.example.org; dmarc=fail reason="not aligned; p=none" header.from=example.com`,
		"Received: from relay.example.net",
		"Authentication-Results: relay.example.net; spf=fail smtp.mailfrom=x@example.com",
		"Authentication-Results: mx.example.org.evil; dmarc=pass",
		"From: a@example.com",
		"",
		"body",
		"",
	}, "\r\n")
	require.Equal(t, want, headerfold.Unfold(string(out)))
}

func TestAuthservID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"mx.example.org; spf=pass", "mx.example.org", true},
		{"mx.example.org 1; spf=pass", "mx.example.org", true},
		{"  (comment (nested)) mx.example.org;", "mx.example.org", true},
		{`"mx.example.org"; none`, "mx.example.org", true},
		{`"mx.\"q\""; none`, `mx."q"`, true},
		{"mx.example.org", "mx.example.org", true},
		{"; spf=pass", "", false},
		{"", "", false},
		{"(only a comment)", "", false},
	}
	for _, tc := range tests {
		got, ok := AuthservID(tc.in)
		require.Equal(t, tc.ok, ok, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
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
		}, `mx.example.org; spf=permerror reason="bad  X-Injected: yes" smtp.mailfrom=bounce@example.com`},
		{"backslash before a quote in MAIL FROM", registry.Envelope{MailFrom: `"x\"; dkim=pass header.d=paypal.com; y=\""@evil.example`}, map[string]any{
			"spf": &registry.SPFResult{Result: registry.AuthFail, Identity: "mailfrom", Domain: "evil.example"},
		}, `mx.example.org; spf=fail smtp.mailfrom="\"x\\\"; dkim=pass header.d=paypal.com; y=\\\"\"@evil.example"`},
		{"backslash before a quote in a DKIM selector", registry.Envelope{}, map[string]any{
			"dkim": &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{{Domain: "evil.example", Selector: `s\"x`, Result: registry.AuthFail, Reason: `r\`}}},
		}, `mx.example.org; dkim=fail reason="r\\" header.d=evil.example header.s="s\\\"x"`},
		{"bare backslash in an address-like value stays", registry.Envelope{}, map[string]any{
			"dmarc": &registry.DMARCResult{Result: registry.AuthPass, Domain: `a\b.example`},
		}, `mx.example.org; dmarc=pass header.from=a\b.example`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr, _ := run(t, all, plain, tc.env, tc.data)
			require.Len(t, sr.AddHeaders, 1)
			checkFolded(t, sr.AddHeaders[0])
			require.Equal(t, tc.want, headerfold.Unfold(sr.AddHeaders[0].Value))
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
