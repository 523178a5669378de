package headerlist

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

func TestContract(t *testing.T) {
	registrytest.Run(t, "headerlist", New, registrytest.Options{
		Config: `[[plugins.headerlist.rules]]
header = "From"
match = "*@spam.example"
list = "deny"
`,
	})
}

func TestHandleStage(t *testing.T) {
	rules := []Rule{
		{Header: "From", Match: "boss@example.org", List: "allow"},
		{Header: "From", Match: "*@spam.example", List: "deny"},
		{Header: "List-Id", Match: "*<news.example.com>", List: "deny"},
		{Header: "X-Mailer", Match: "bulkmailer*", List: "deny"},
	}
	tests := []struct {
		name       string
		header     string
		deny       string
		wantAction registry.Action
		wantHeader string
	}{
		{"no match", "From: alice@example.org\r\n", "reject", registry.Accept, ""},
		{"deny by address in display form", "From: \"Cheap\" <Offers@SPAM.example>\r\n", "reject", registry.Reject,
			"deny; rule=1; from=Offers@SPAM.example"},
		{"deny as tempfail", "From: x@spam.example\r\n", "tempfail", registry.TempFail, "deny; rule=1; from=x@spam.example"},
		{"deny as quarantine", "From: x@spam.example\r\n", "quarantine", registry.Quarantine, "deny; rule=1; from=x@spam.example"},
		{"allow wins by order", "From: boss@example.org\r\nX-Mailer: BulkMailer 2\r\n", "reject", registry.Accept,
			"allow; rule=0; from=boss@example.org"},
		{"whole value glob", "From: a@example.org\r\nList-Id: News <news.example.com>\r\n", "reject", registry.Reject,
			"deny; rule=2; list-id=News <news.example.com>"},
		{"second field of a kind", "From: a@example.org\r\nX-Mailer: mutt\r\nX-Mailer: bulkmailer 1\r\n", "reject", registry.Reject,
			"deny; rule=3; x-mailer=bulkmailer 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rules, cfg.DenyAction = rules, tt.deny
			l, err := New(cfg, registry.Host{})
			require.NoError(t, err)
			msg, err := registry.ParseMessage([]byte(tt.header+"Subject: hi\r\n\r\nbody\r\n"), registry.Envelope{})
			require.NoError(t, err)
			res, err := l.HandleStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
			require.NoError(t, err)
			assert.Equal(t, tt.wantAction, res.Verdict.Action, res.Details)
			if tt.wantHeader == "" {
				assert.Empty(t, res.AddHeaders)
				return
			}
			require.Len(t, res.AddHeaders, 1)
			assert.Equal(t, registry.Field{Name: DefaultHeader, Value: tt.wantHeader}, res.AddHeaders[0])
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{"deny action", func(c *Config) { c.DenyAction = "drop" }, `deny_action "drop"`},
		{"list", func(c *Config) { c.Rules = []Rule{{Header: "From", Match: "*", List: "maybe"}} }, `rules[0]: list "maybe"`},
		{"glob", func(c *Config) { c.Rules = []Rule{{Header: "From", Match: "[", List: "deny"}} }, `rules[0]: match "[" is not a valid glob`},
		{"empty glob", func(c *Config) { c.Rules = []Rule{{Header: "From", List: "deny"}} }, `rules[0]: match "" is not a valid glob`},
		{"header", func(c *Config) { c.Rules = []Rule{{Match: "*", List: "deny"}} }, "rules[0]: header is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			_, err := New(cfg, registry.Host{})
			assert.ErrorContains(t, err, tt.err)
		})
	}
}
