package headerlist

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// zone is what DNS says in these tests: registrytest.Resolver answers from
// it and from nothing else (no system DNS, no network).
const zone = `
$ORIGIN example.org.
@       IN MX 10 mail
mail    IN A  192.0.2.25
$ORIGIN addressonly.example.
@       IN AAAA 2001:db8::1
`

func runDomainCheck(t *testing.T, ctx context.Context, r registry.Resolver, from string) (*registry.Result, error) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RequireFromDomain = true
	cfg.Rules = []Rule{{Header: "From", Match: "boss@gone.example", List: "allow"}}
	l, err := New(cfg, registry.Host{Resolver: r})
	require.NoError(t, err)
	msg, err := registry.ParseMessage([]byte("From: "+from+"\r\nSubject: hi\r\n\r\nbody\r\n"), registry.Envelope{})
	require.NoError(t, err)
	return l.HandleStage(ctx, registry.PostReception, registry.NewProcessingContext(msg, nil))
}

func TestRequireFromDomain(t *testing.T) {
	r := registrytest.NewResolver(t, zone)
	for _, tc := range []struct {
		from   string
		action registry.Action
		detail string
	}{
		{"alice@example.org", registry.Accept, "no rule matched"},
		{"Alice <alice@Example.ORG>", registry.Accept, "no rule matched"},
		{"bob@addressonly.example", registry.Accept, "no rule matched"}, // no MX, an AAAA
		{"eve@gone.example", registry.Reject, "from domain gone.example does not exist"},
		{"boss@gone.example", registry.Accept, "allow: rule 0"}, // a rule decides first
		{"undisclosed-recipients:;", registry.Accept, "no rule matched"},
	} {
		res, err := runDomainCheck(t, context.Background(), r, tc.from)
		require.NoError(t, err, tc.from)
		assert.Equal(t, tc.action, res.Verdict.Action, "%s: %s", tc.from, res.Details)
		assert.Contains(t, res.Details, tc.detail, tc.from)
	}
}

// TestRequireFromDomainDNSFailures: NXDOMAIN denies; SERVFAIL and a
// resolver timeout tempfail (never accept); the stage's own deadline is
// the caller's error, for the executor's on_error.
func TestRequireFromDomainDNSFailures(t *testing.T) {
	registrytest.EachDNSFailure(t, zone, "example.org", func(t *testing.T, f registrytest.DNSFailure, r *registrytest.Resolver) {
		res, err := runDomainCheck(t, context.Background(), r, "alice@example.org")
		require.NoError(t, err)
		want := map[registrytest.DNSFailure]registry.Action{
			registrytest.NXDOMAIN: registry.Reject,
			registrytest.ServFail: registry.TempFail,
			registrytest.Timeout:  registry.TempFail,
		}[f]
		assert.Equal(t, want, res.Verdict.Action, res.Details)
		if want == registry.TempFail {
			code, enh, _ := res.Verdict.Reply()
			assert.Equal(t, 451, code)
			assert.Equal(t, "4.4.3", enh)
		}
	})
	t.Run("hang", func(t *testing.T) {
		r := registrytest.NewResolver(t, zone).Fail("example.org", registrytest.Hang)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := runDomainCheck(t, ctx, r, "alice@example.org")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestRequireFromDomainNeedsAResolver(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RequireFromDomain = true
	_, err := New(cfg, registry.Host{})
	assert.ErrorContains(t, err, "require_from_domain")
}

// TestContractWithDomainCheck: through the kit, whose host resolver is an
// empty registrytest.Resolver: every sample sender's domain is NXDOMAIN and
// the plugin still meets the contract (no system DNS is asked).
func TestContractWithDomainCheck(t *testing.T) {
	registrytest.Run(t, "headerlist", New, registrytest.Options{Config: "require_from_domain = true\n"})
}
