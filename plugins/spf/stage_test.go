package spf

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// stage loads the spf plugin from toml through the registry's config and
// Manager, the way the host does.
func stage(t *testing.T, toml string, r registry.Resolver) *pluginhost.Manager {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(toml))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: r, Hostname: "mx.example.org", Logger: slog.New(slog.DiscardHandler)}))
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

func envelopeContext(t *testing.T, phase registry.Phase, ip, helo, from string) *registry.ProcessingContext {
	t.Helper()
	msg, err := registry.ParseMessage([]byte("From: a@example.org\r\nSubject: t\r\n\r\nbody\r\n"), registry.Envelope{
		ClientIP: netip.MustParseAddr(ip), HELO: helo, MailFrom: from, RcptTo: []string{"b@example.org"},
	})
	require.NoError(t, err)
	pc := registry.NewProcessingContext(msg, nil)
	pc.Phase = phase
	return pc
}

func TestStage(t *testing.T) {
	const defaults = "[plugins]\nplugins = [\"spf\"]\n"
	const rejecting = defaults + "[plugins.spf]\non_fail = \"reject\"\non_softfail = \"quarantine\"\non_temperror = \"tempfail\"\n"
	tests := []struct {
		name       string
		toml       string
		phase      registry.Phase
		from       string
		wantResult registry.AuthResult // "" for no SPF data
		wantAction registry.Action
		wantCode   string
		wantHeader string
	}{
		{"pass annotates", defaults, registry.PhaseMail, "a@pass.test", registry.AuthPass, registry.Accept, "",
			"pass (mx.example.org: domain of a@pass.test designates 192.0.2.10 as permitted sender) receiver=mx.example.org; client-ip=192.0.2.10; envelope-from=\"a@pass.test\"; helo=mx.pass.test; identity=mailfrom"},
		{"fail only annotates by default", defaults, registry.PhaseMail, "a@fail.test", registry.AuthFail, registry.Accept, "",
			"fail (mx.example.org: domain of a@fail.test does not designate 192.0.2.10 as permitted sender) receiver=mx.example.org; client-ip=192.0.2.10; envelope-from=\"a@fail.test\"; helo=mx.pass.test; identity=mailfrom"},
		{"fail rejects when configured", rejecting, registry.PhaseMail, "a@fail.test", registry.AuthFail, registry.Reject, "5.7.23", ""},
		{"softfail quarantines when configured", rejecting, registry.PhaseMail, "a@softfail.test", registry.AuthSoftFail, registry.Quarantine, "2.0.0", ""},
		{"temperror tempfails when configured", rejecting, registry.PhaseMail, "a@temperror.test", registry.AuthTempError, registry.TempFail, "4.7.24", ""},
		{"pass accepted when configured", rejecting, registry.PhaseMail, "a@pass.test", registry.AuthPass, registry.Accept, "", ""},
		{"null sender", defaults, registry.PhaseMail, "", registry.AuthPass, registry.Accept, "",
			"pass (mx.example.org: domain of postmaster@mx.pass.test designates 192.0.2.10 as permitted sender) receiver=mx.example.org; client-ip=192.0.2.10; envelope-from=\"\"; helo=mx.pass.test; identity=helo"},
		{"permerror names the problem", defaults, registry.PhaseMail, "a@permerror.test", registry.AuthPermError, registry.Accept, "",
			"permerror (mx.example.org: domain of a@permerror.test uses an invalid SPF record) receiver=mx.example.org; client-ip=192.0.2.10; envelope-from=\"a@permerror.test\"; helo=mx.pass.test; problem=\"check permerror.test: lookup permerror.test: invalid SPF record: ip4:not-an-address: invalid ip4 address \\\"not-an-address\\\"\"; identity=mailfrom"},
		{"offline scan checks at PhaseMessage", defaults, registry.PhaseMessage, "a@softfail.test", registry.AuthSoftFail, registry.Accept, "", ""},
		{"nothing at RCPT", defaults, registry.PhaseRcpt, "a@fail.test", "", registry.Accept, "", ""},
		{"nothing at HELO", defaults, registry.PhaseHelo, "a@fail.test", "", registry.Accept, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := stage(t, tc.toml, testZone())
			pc := envelopeContext(t, tc.phase, "192.0.2.10", "mx.pass.test", tc.from)
			sr, err := m.ExecuteStage(context.Background(), registry.PreReception, pc)
			require.NoError(t, err)
			require.Len(t, sr.Results, 1)
			require.NoError(t, sr.Results[0].Err)
			res, ok := registry.Find[*registry.SPFResult](pc)
			if tc.wantResult == "" {
				require.False(t, ok)
				require.Empty(t, sr.AddHeaders)
			} else {
				require.True(t, ok)
				require.Equal(t, tc.wantResult, res.Result)
				require.Len(t, sr.AddHeaders, 1)
				require.Equal(t, "Received-SPF", sr.AddHeaders[0].Name)
			}
			if tc.wantHeader != "" {
				require.Equal(t, tc.wantHeader, headerfold.Unfold(sr.AddHeaders[0].Value))
			}
			require.Equal(t, tc.wantAction, sr.Verdict.Action)
			if tc.wantCode != "" {
				_, enh, _ := sr.Verdict.Reply()
				require.Equal(t, tc.wantCode, enh)
			}
		})
	}
}

// An SMTP session runs pre-reception at every phase: the check happens once,
// at MAIL FROM, and is neither repeated nor re-annotated afterwards.
func TestStageOncePerTransaction(t *testing.T) {
	z := testZone()
	m := stage(t, "[plugins]\nplugins = [\"spf\"]\n", z)
	pc := envelopeContext(t, registry.PhaseConnect, "192.0.2.10", "mx.pass.test", "a@pass.test")
	headers := 0
	for _, phase := range []registry.Phase{registry.PhaseConnect, registry.PhaseHelo, registry.PhaseMail, registry.PhaseRcpt, registry.PhaseRcpt, registry.PhaseMessage} {
		pc.Phase = phase
		sr, err := m.ExecuteStage(context.Background(), registry.PreReception, pc)
		require.NoError(t, err)
		headers += len(sr.AddHeaders)
	}
	require.Equal(t, 1, headers)
	require.Equal(t, 3, z.queries, "HELO: TXT and A (its record is \"v=spf1 a -all\"); MAIL FROM: TXT")
	res, ok := registry.Find[*registry.SPFResult](pc)
	require.True(t, ok)
	require.Equal(t, registry.AuthPass, res.Result)
}

func TestStageUnknownActionKey(t *testing.T) {
	_, err := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"spf\"]\n[plugins.spf]\non_fial = \"reject\"\n"))
	require.ErrorContains(t, err, "on_fial")
	_, err = pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"spf\"]\n[plugins.spf]\non_fail = \"bounce\"\n"))
	require.ErrorContains(t, err, "bounce")
}

// loopbackResolver returns a Go resolver that sends every query to addr.
func loopbackResolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// TestStageRealDNS runs the plugin in the executor against the test
// environment's unbound (tools/testenv), whose zone has one domain per
// SPF result and lets 127.0.0.0/8 send for pass.example.test.
func TestStageRealDNS(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	m := stage(t, "[plugins]\nplugins = [\"spf\"]\n[plugins.spf]\non_fail = \"reject\"\n", loopbackResolver(dns))
	tests := []struct {
		from   string
		want   registry.AuthResult
		action registry.Action
	}{
		{"a@pass.example.test", registry.AuthPass, registry.Accept},
		{"a@include.example.test", registry.AuthPass, registry.Accept},
		{"a@fail.example.test", registry.AuthFail, registry.Reject},
		{"a@softfail.example.test", registry.AuthSoftFail, registry.Accept},
		{"a@neutral.example.test", registry.AuthNeutral, registry.Accept},
		{"a@none.example.test", registry.AuthNone, registry.Accept},
		{"a@nxdomain.example.test", registry.AuthNone, registry.Accept},
		{"a@permerror.example.test", registry.AuthPermError, registry.Accept},
		{"a@twospf.example.test", registry.AuthPermError, registry.Accept},
		{"a@voidlimit.example.test", registry.AuthPermError, registry.Accept},
	}
	for _, tc := range tests {
		t.Run(tc.from, func(t *testing.T) {
			pc := envelopeContext(t, registry.PhaseMail, "127.0.0.1", "mail.example.test", tc.from)
			sr, err := m.ExecuteStage(context.Background(), registry.PreReception, pc)
			require.NoError(t, err)
			require.NoError(t, sr.Results[0].Err)
			res, ok := registry.Find[*registry.SPFResult](pc)
			require.True(t, ok)
			require.Equal(t, tc.want, res.Result, res.Explanation)
			require.Equal(t, tc.action, sr.Verdict.Action)
			require.NotNil(t, res.HELO)
			require.Equal(t, registry.AuthNone, res.HELO.Result, "mail.example.test has no SPF record")
		})
	}
}

// TestReceivedSPFValues: every key-value of Received-SPF is a dot-atom or a
// quoted-string (RFC 7208 §9.1); an IPv6 client-ip has ':' and is quoted.
func TestReceivedSPFValues(t *testing.T) {
	c := &Checker{hostname: "mx.example.org"}
	tests := []struct {
		name, ip, helo, want string
	}{
		{"IPv4", "192.0.2.10", "mx.pass.test", `client-ip=192.0.2.10; envelope-from="a@pass.test"; helo=mx.pass.test;`},
		{"IPv6", "2001:db8::10", "mx.pass.test", `client-ip="2001:db8::10"; envelope-from="a@pass.test"; helo=mx.pass.test;`},
		{"address literal HELO", "2001:db8::10", "[IPv6:2001:db8::10]", `client-ip="2001:db8::10"; envelope-from="a@pass.test"; helo="[IPv6:2001:db8::10]";`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "pass.test", IP: tc.ip}
			v := c.receivedSPF(res, tc.helo, "a@pass.test")
			require.Contains(t, v, "designates "+tc.ip+" as permitted sender")
			require.Contains(t, v, tc.want)
		})
	}
}

// TestReceivedSPFControlCharacters: control characters from the client's
// HELO or MAIL FROM never reach the header field.
func TestReceivedSPFControlCharacters(t *testing.T) {
	c := &Checker{hostname: "mx.example.org"}
	tests := []struct {
		name, helo, from, want string
	}{
		{"NUL and SOH in HELO", "a\x00b\x01c.test", "a@pass.test", `helo="a b c.test";`},
		{"DEL in MAIL FROM", "mx.pass.test", "a\x7fb@pass.test", `envelope-from="a b@pass.test";`},
		{"CR LF in MAIL FROM", "mx.pass.test", "a\r\nX: y@pass.test", `envelope-from="a  X: y@pass.test";`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "pass.test", IP: "192.0.2.10"}
			v := c.receivedSPF(res, tc.helo, tc.from)
			require.Contains(t, v, tc.want)
			for _, r := range v {
				require.False(t, r < ' ' || r == 0x7f, "control character %q in %q", r, v)
			}
		})
	}
}
