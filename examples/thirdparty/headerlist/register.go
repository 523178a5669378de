package headerlist

import (
	"fmt"
	"path"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *List]{
		Name:        "headerlist",
		Version:     "1.0.0",
		Description: "allow or deny messages by glob patterns over header fields and the addresses in them",
		Types:       []registry.PluginType{registry.PluginTypeFilter},
		Stages:      []registry.Stage{registry.PostReception},
		Config:      DefaultConfig,
		New:         New,
	})
}

// DefaultHeader is the field added to messages a rule matched.
const DefaultHeader = "X-Elemta-Headerlist"

// Config is the [plugins.headerlist] table.
type Config struct {
	// Rules are tried in order; the first that matches decides.
	Rules []Rule `toml:"rules"`
	// DenyAction is what a deny rule does: reject, tempfail or quarantine.
	DenyAction string `toml:"deny_action"`
	// Reply is the SMTP reply text of a deny.
	Reply string `toml:"reply"`
	// ResultHeader is the field that records which rule matched; "" adds none.
	ResultHeader string `toml:"result_header"`
	// RequireFromDomain, when no rule matched, denies a message whose From
	// domain does not exist in DNS and tempfails it when DNS fails.
	RequireFromDomain bool `toml:"require_from_domain"`
}

// Rule is one [[plugins.headerlist.rules]] entry.
type Rule struct {
	// Header is the field name, case-insensitive ("From", "List-Id").
	Header string `toml:"header"`
	// Match is a glob (path.Match syntax, case-insensitive) tried against
	// each value of the field and against each address in it:
	// "*@example.org", "*<newsletter.example.com>".
	Match string `toml:"match"`
	// List is "allow" or "deny".
	List string `toml:"list"`
}

// DefaultConfig has no rules: every message is accepted untouched.
func DefaultConfig() Config {
	return Config{DenyAction: "reject", Reply: "Sender is on the deny list", ResultHeader: DefaultHeader}
}

// New checks cfg and builds the list.
func New(cfg Config, host registry.Host) (*List, error) {
	var deny registry.Action
	switch cfg.DenyAction {
	case "reject":
		deny = registry.Reject
	case "tempfail":
		deny = registry.TempFail
	case "quarantine":
		deny = registry.Quarantine
	default:
		return nil, fmt.Errorf("headerlist: deny_action %q: want reject, tempfail or quarantine", cfg.DenyAction)
	}
	l := &List{deny: deny, reply: cfg.Reply, resultHeader: cfg.ResultHeader, requireFromDomain: cfg.RequireFromDomain, resolver: host.Resolver}
	if l.requireFromDomain && l.resolver == nil {
		return nil, fmt.Errorf("headerlist: require_from_domain: the host gave no DNS resolver")
	}
	for i, r := range cfg.Rules {
		if r.Header == "" {
			return nil, fmt.Errorf("headerlist: rules[%d]: header is empty", i)
		}
		if r.List != "allow" && r.List != "deny" {
			return nil, fmt.Errorf("headerlist: rules[%d]: list %q: want allow or deny", i, r.List)
		}
		pattern := strings.ToLower(r.Match)
		if _, err := path.Match(pattern, ""); err != nil || pattern == "" {
			return nil, fmt.Errorf("headerlist: rules[%d]: match %q is not a valid glob", i, r.Match)
		}
		l.rules = append(l.rules, rule{header: r.Header, pattern: pattern, allow: r.List == "allow", index: i})
	}
	return l, nil
}
