package authtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/authres"
	_ "github.com/elemta/elemta/plugins/dmarc"
	_ "github.com/elemta/elemta/plugins/spf"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// loopback returns a Go resolver that sends every query to addr.
func loopback(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func manager(tb testing.TB, toml string, r registry.Resolver) *pluginhost.Manager {
	tb.Helper()
	return registrytest.Load(tb, toml, registry.Host{Resolver: r, Hostname: "mx.elemta.test", Logger: slog.New(slog.DiscardHandler)})
}

// receive runs pre-reception at MAIL FROM, then post-reception, as the SMTP
// host does for one transaction, and returns the message as it would be queued.
func receive(tb testing.TB, m *pluginhost.Manager, msg *registry.Message) (*registry.ProcessingContext, *pluginhost.StageResult, []byte) {
	tb.Helper()
	pc := registry.NewProcessingContext(msg, nil)
	pc.Phase = registry.PhaseMail
	pre, err := m.ExecuteStage(context.Background(), registry.PreReception, pc)
	require.NoError(tb, err)
	pc.Phase = registry.PhaseMessage
	post, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
	require.NoError(tb, err)
	for _, r := range append(pre.Results, post.Results...) {
		require.NoError(tb, r.Err, r.Plugin)
	}
	out := msg.Rewrite(append(pre.AddHeaders, post.AddHeaders...), append(pre.RemoveHeaders, post.RemoveHeaders...))
	return pc, post, out
}

func message(tb testing.TB, from, mailFrom, body string) *registry.Message {
	tb.Helper()
	raw := "Authentication-Results: mx.elemta.test; dmarc=pass header.from=" + from + "\r\n" +
		"From: <a@" + from + ">\r\nTo: <b@elemta.test>\r\nSubject: test\r\n\r\n" + body
	msg, err := registry.ParseMessage([]byte(raw), registry.Envelope{
		ClientIP: netip.MustParseAddr("127.0.0.1"), HELO: "mail.example.test", MailFrom: mailFrom, RcptTo: []string{"b@elemta.test"},
	})
	require.NoError(tb, err)
	return msg
}

const enforcing = `[plugins]
plugins = ["spf", "dmarc", "authres"]
[plugins.dmarc]
enforce = true
`

// TestAuthStageRealDNS: SPF pass/fail/softfail and DMARC pass/fail with the
// zone of tools/testenv (127.0.0.0/8 may send for example.test and
// pass.example.test; dmarc-<policy>.test publish "v=spf1 -all" and p=<policy>).
func TestAuthStageRealDNS(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	m := manager(t, enforcing, loopback(dns))
	tests := []struct {
		name, from, mailFrom string
		spf, dmarc           registry.AuthResult
		policy               string
		action               registry.Action
		authres              string
	}{
		{"spf pass, dmarc pass", "example.test", "bounce@example.test", registry.AuthPass, registry.AuthPass, "reject", registry.Accept,
			"Authentication-Results: mx.elemta.test; spf=pass smtp.mailfrom=bounce@example.test; dmarc=pass header.from=example.test"},
		{"spf pass for a subdomain, dmarc pass relaxed", "example.test", "a@sub.example.test", registry.AuthPass, registry.AuthPass, "reject", registry.Accept,
			"Authentication-Results: mx.elemta.test; spf=pass smtp.mailfrom=a@sub.example.test; dmarc=pass header.from=example.test"},
		{"spf pass, not aligned: dmarc fail, rejected", "dmarc-reject.test", "a@pass.example.test", registry.AuthPass, registry.AuthFail, "reject", registry.Reject, ""},
		{"spf fail, dmarc fail, rejected", "dmarc-reject.test", "a@dmarc-reject.test", registry.AuthFail, registry.AuthFail, "reject", registry.Reject, ""},
		{"spf fail, dmarc quarantine", "dmarc-quarantine.test", "a@dmarc-quarantine.test", registry.AuthFail, registry.AuthFail, "quarantine", registry.Quarantine, ""},
		{"spf fail, dmarc p=none", "dmarc-none.test", "a@dmarc-none.test", registry.AuthFail, registry.AuthFail, "none", registry.Accept,
			`Authentication-Results: mx.elemta.test; spf=fail smtp.mailfrom=a@dmarc-none.test; dmarc=fail reason=neither%20SPF%20nor%20DKIM%20passed%20aligned%20with%20the%20From%20domain%3B%20p%3Dnone header.from=dmarc-none.test`},
		{"spf fail, dmarc pct=0 never sampled", "dmarc-pct.test", "a@dmarc-pct.test", registry.AuthFail, registry.AuthFail, "quarantine", registry.Quarantine, ""},
		{"spf pass strict alignment", "dmarc-strict.test", "a@dmarc-strict.test", registry.AuthPass, registry.AuthPass, "reject", registry.Accept, ""},
		{"spf softfail, dmarc of the organizational domain", "softfail.example.test", "a@softfail.example.test", registry.AuthSoftFail, registry.AuthFail, "reject", registry.Reject, ""},
		{"no spf, no dmarc", "nodmarc.test", "a@nodmarc.test", registry.AuthNone, registry.AuthNone, "", registry.Accept,
			"Authentication-Results: mx.elemta.test; spf=none smtp.mailfrom=a@nodmarc.test; dmarc=none header.from=nodmarc.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc, post, out := receive(t, m, message(t, tc.from, tc.mailFrom, "hello\r\n"))
			spf, ok := registry.Find[*registry.SPFResult](pc)
			require.True(t, ok)
			require.Equal(t, tc.spf, spf.Result, spf.Explanation)
			dmarc, ok := registry.Find[*registry.DMARCResult](pc)
			require.True(t, ok)
			require.Equal(t, tc.dmarc, dmarc.Result, dmarc.Reason)
			require.Equal(t, tc.policy, dmarc.Policy)
			require.Equal(t, tc.action, post.Verdict.Action)

			// One Received-SPF, one Authentication-Results: ours, the forged one gone.
			hdr, _, _ := strings.Cut(string(out), "\r\n\r\n")
			hdr = headerfold.Unfold(hdr) // the fields we add are folded
			hdr = headerfold.Unfold(hdr) // the fields we add are folded
			require.Equal(t, 1, strings.Count(hdr, "Received-SPF: "+string(tc.spf)+" (mx.elemta.test: "), hdr)
			require.Equal(t, 1, strings.Count(hdr, "Authentication-Results:"), hdr)
			if tc.authres != "" {
				require.Contains(t, strings.Split(hdr, "\r\n"), tc.authres)
			}
		})
	}
}

// memo is a warm DNS cache for the benchmark: every answer of the wrapped
// resolver is kept after the first query.
type memo struct {
	r  registry.Resolver
	mu sync.Mutex
	m  map[string]memoEntry
}

type memoEntry struct {
	v   any
	err error
}

func get[T any](c *memo, kind, name string, f func() (T, error)) (T, error) {
	key := kind + " " + strings.ToLower(name)
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok {
		v, err := f()
		e = memoEntry{v, err}
		c.mu.Lock()
		c.m[key] = e
		c.mu.Unlock()
	}
	v, _ := e.v.(T)
	return v, e.err
}

func (c *memo) LookupTXT(ctx context.Context, n string) ([]string, error) {
	return get(c, "TXT", n, func() ([]string, error) { return c.r.LookupTXT(ctx, n) })
}
func (c *memo) LookupMX(ctx context.Context, n string) ([]*net.MX, error) {
	return get(c, "MX", n, func() ([]*net.MX, error) { return c.r.LookupMX(ctx, n) })
}
func (c *memo) LookupIPAddr(ctx context.Context, n string) ([]net.IPAddr, error) {
	return get(c, "IP", n, func() ([]net.IPAddr, error) { return c.r.LookupIPAddr(ctx, n) })
}
func (c *memo) LookupAddr(ctx context.Context, n string) ([]string, error) {
	return get(c, "PTR", n, func() ([]string, error) { return c.r.LookupAddr(ctx, n) })
}

// BenchmarkAuthStage runs spf (pre-reception, at MAIL FROM), dmarc and
// authres (post-reception) through the executor on a 10 KB and a 1 MB
// message, with every DNS answer already cached (the first, untimed
// iteration fills the cache from the loopback unbound).
func BenchmarkAuthStage(b *testing.B) {
	dns := testenv.Require(b, testenv.DNS)
	m := manager(b, enforcing, &memo{r: loopback(dns), m: map[string]memoEntry{}})
	line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
	for _, size := range []struct {
		name  string
		bytes int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		body := strings.Repeat(line, size.bytes/len(line)+1)[:size.bytes]
		msg := message(b, "example.test", "bounce@example.test", body)
		b.Run(size.name, func(b *testing.B) {
			receive(b, m, msg) // warm the cache
			b.ReportAllocs()
			b.SetBytes(int64(len(msg.Raw)))
			for b.Loop() {
				pc := registry.NewProcessingContext(msg, nil)
				pc.Phase = registry.PhaseMail
				if _, err := m.ExecuteStage(context.Background(), registry.PreReception, pc); err != nil {
					b.Fatal(err)
				}
				pc.Phase = registry.PhaseMessage
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
				if err != nil {
					b.Fatal(err)
				}
				if d, _ := registry.Find[*registry.DMARCResult](pc); d == nil || d.Result != registry.AuthPass || len(sr.AddHeaders) != 1 {
					b.Fatal(fmt.Sprintf("unexpected outcome: %+v", d))
				}
			}
		})
	}
}
