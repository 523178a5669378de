package dmarc

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv/dnstest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// runStage runs post-reception with dmarc (and the spf and dkim stand-ins
// of stage_test.go) loaded from toml, for a message with the given header.
func runStage(t *testing.T, toml string, r registry.Resolver, header string, spf *registry.SPFResult) (*pluginhost.StageResult, *registry.DMARCResult) {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(toml))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{Resolver: r, Logger: slog.New(slog.DiscardHandler)}))
	require.NoError(t, m.LoadPlugins(context.Background()))
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	msg, err := registry.ParseMessage([]byte(header+"Subject: wire transfer\r\n\r\nbody\r\n"), registry.Envelope{})
	require.NoError(t, err)
	pc := registry.NewProcessingContext(msg, nil)
	if spf != nil {
		pc.Set("testauth.spf", spf)
	}
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
	require.NoError(t, err)
	res, ok := registry.Find[*registry.DMARCResult](pc)
	require.True(t, ok)
	return sr, res
}

const enforcing = "[plugins]\nplugins = [\"dmarc\", \"spf\", \"dkim\"]\n[plugins.dmarc]\nenforce = true\n"

// TestSpoofVariantsRealDNS: a spoof of dmarc-reject.test (p=reject in the
// test zone of tools/testenv) sent from evil.test, whose SPF passes but does
// not align, is rejected however its From fields are dressed up (RFC 7489
// §6.6.1). Each case was delivered with dmarc=permerror before.
func TestSpoofVariantsRealDNS(t *testing.T) {
	r := dnstest.Resolver(t)
	spoofer := spfPass("evil.test")
	junk := "a@one.example.org, a@two.example.org, a@three.example.org, a@four.example.org, a@five.example.org"
	tests := []struct {
		name   string
		toml   string
		header string
		want   registry.AuthResult
		action registry.Action
		domain string
	}{
		{"plain spoof", enforcing, "From: ceo@dmarc-reject.test\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"second, empty From field", enforcing, "From: ceo@dmarc-reject.test\r\nFrom:\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"second From field without address", enforcing, "From: ceo@dmarc-reject.test\r\nFrom: undisclosed\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"empty From field first", enforcing, "From:\r\nFrom: ceo@dmarc-reject.test\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"second From field of the spoofer", enforcing, "From: me@evil.test\r\nFrom: ceo@dmarc-reject.test\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"sixth From domain", enforcing, "From: " + junk + ", ceo@dmarc-reject.test\r\n", registry.AuthPermError, registry.Reject, "one.example.org"},
		{"sixth From domain in a sixth field", enforcing, "From: " + strings.ReplaceAll(junk, ", ", "\r\nFrom: ") + "\r\nFrom: ceo@dmarc-reject.test\r\n", registry.AuthPermError, registry.Reject, "one.example.org"},
		{"six From domains, the spoofed one first", enforcing + "on_unparseable_from = \"accept\"\n", "From: ceo@dmarc-reject.test, " + junk + "\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"root dot", enforcing, "From: ceo@dmarc-reject.test.\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"root dot, upper case", enforcing, "From: CEO <ceo@DMARC-Reject.TEST.>\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"stray angle bracket", enforcing, "From: <ceo@dmarc-reject.test>>\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"stray angle brackets and display name", enforcing, "From: \"CEO\" <<ceo@dmarc-reject.test>\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"garbage before a valid address", enforcing, "From: \"x <me@evil.test>, ceo@dmarc-reject.test\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"group syntax", enforcing, "From: board: ceo@dmarc-reject.test;\r\n", registry.AuthFail, registry.Reject, "dmarc-reject.test"},
		{"two root dots", enforcing, "From: ceo@dmarc-reject.test..\r\n", registry.AuthPermError, registry.Reject, ""},
		{"address literal", enforcing, "From: ceo@[192.0.2.1]\r\n", registry.AuthPermError, registry.Reject, ""},
		{"quarantine policy with an empty second From", enforcing, "From: ceo@dmarc-quarantine.test\r\nFrom:\r\n", registry.AuthFail, registry.Reject, "dmarc-quarantine.test"},
		{"quarantine policy with an empty second From, on_unparseable_from = accept", enforcing + "on_unparseable_from = \"accept\"\n", "From: ceo@dmarc-quarantine.test\r\nFrom:\r\n", registry.AuthFail, registry.Quarantine, "dmarc-quarantine.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr, res := runStage(t, tc.toml, r, tc.header, spoofer)
			require.Equal(t, tc.want, res.Result, res.Reason)
			require.Equal(t, tc.domain, res.Domain)
			require.Equal(t, tc.action, sr.Verdict.Action, res.Reason)
			require.Equal(t, "dmarc", sr.DecidedBy)
			if tc.action == registry.Reject {
				code, enh, _ := sr.Verdict.Reply()
				require.Equal(t, 550, code)
				require.Equal(t, "5.7.1", enh)
			}
		})
	}
}

// TestLegitimateRealDNS: the same From shapes from the domain's own
// servers still pass.
func TestLegitimateRealDNS(t *testing.T) {
	r := dnstest.Resolver(t)
	for _, header := range []string{
		"From: ceo@example.test\r\n",
		"From: ceo@example.test.\r\n",
		"From: <ceo@example.test>>\r\n",
		"From: a@example.test, b@sub.example.test\r\n",
	} {
		t.Run(header, func(t *testing.T) {
			sr, res := runStage(t, enforcing, r, header, spfPass("example.test"))
			require.Equal(t, registry.AuthPass, res.Result, res.Reason)
			require.Equal(t, registry.Accept, sr.Verdict.Action)
		})
	}
}

// silentDNS answers nothing: a UDP socket on loopback that reads and drops.
func silentDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// TestTempErrorRealResolver: when the policy lookup times out (the
// resolver Elemta runs with, pointed at a server that never answers), the
// spoof is tempfailed, not delivered; on_temperror = "accept" delivers it.
func TestTempErrorRealResolver(t *testing.T) {
	r := dnstest.ResolverFor(t, []string{silentDNS(t)}, 100*time.Millisecond)
	for _, tc := range []struct {
		toml   string
		action registry.Action
	}{
		{enforcing, registry.TempFail},
		{enforcing + "on_temperror = \"tempfail\"\n", registry.TempFail},
		{enforcing + "on_temperror = \"accept\"\n", registry.Accept},
	} {
		sr, res := runStage(t, tc.toml, r, "From: ceo@dmarc-reject.test\r\n", spfPass("evil.test"))
		require.Equal(t, registry.AuthTempError, res.Result, res.Reason)
		require.Equal(t, tc.action, sr.Verdict.Action)
		if tc.action == registry.TempFail {
			code, enh, _ := sr.Verdict.Reply()
			require.Equal(t, 451, code)
			require.Equal(t, "4.4.3", enh)
		}
	}
}

// hangingDNS answers from the test DNS, except for the names in hang,
// whose lookups last until the context ends: a sender's own DNS server
// that never answers.
type hangingDNS struct {
	registry.Resolver
	hang map[string]bool
}

func (h hangingDNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if h.hang[name] {
		<-ctx.Done()
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	return h.Resolver.LookupTXT(ctx, name)
}

// TestSlowFromDomainRealDNS: a second From domain whose DNS never answers
// does not hold the plugin past its timeout (the executor would then
// apply on_error, accept): the spoofed domain beside it is still
// rejected, and alone the slow domain is a temperror, tempfailed.
func TestSlowFromDomainRealDNS(t *testing.T) {
	r := hangingDNS{dnstest.Resolver(t), map[string]bool{"_dmarc.slow.example.org": true}}
	const toml = enforcing + "timeout = \"1s\"\n"
	for _, tc := range []struct {
		header string
		want   registry.AuthResult
		action registry.Action
	}{
		{"From: x@slow.example.org, ceo@dmarc-reject.test\r\n", registry.AuthFail, registry.Reject},
		{"From: ceo@dmarc-reject.test\r\nFrom: x@slow.example.org\r\n", registry.AuthFail, registry.Reject},
		{"From: x@slow.example.org\r\n", registry.AuthTempError, registry.TempFail},
	} {
		t.Run(tc.header, func(t *testing.T) {
			sr, res := runStage(t, toml, r, tc.header, spfPass("evil.test"))
			for _, pr := range sr.Results {
				require.NoError(t, pr.Err, "plugin %s", pr.Plugin)
			}
			require.Equal(t, tc.want, res.Result, res.Reason)
			require.Equal(t, tc.action, sr.Verdict.Action)
		})
	}
}
