package arc

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Plugin]{
		Name:        "arc",
		Version:     "1.0.0",
		Description: "ARC chain validation (RFC 8617) at post-reception and sealing at pre-queue",
		Types:       []registry.PluginType{registry.PluginTypeARC},
		Stages:      []registry.Stage{registry.PostReception, registry.PreQueue},
		Produces:    []any{(*registry.ARCResult)(nil)},
		// The seal's ARC-Authentication-Results falls back to these.
		Consumes: []any{(*registry.SPFResult)(nil), (*registry.DKIMResult)(nil), (*registry.DMARCResult)(nil)},
		// At pre-queue, seal after DKIM signing. (authres runs after us at
		// post-reception, to write arc=; naming it here would be a cycle.)
		After:  []string{"dkim"},
		Config: DefaultConfig,
		New:    New,
	})
}

// What seal_for accepts.
const (
	SealAll             = "all"             // every message
	SealChained         = "chained"         // messages that arrived with an ARC chain
	SealUnauthenticated = "unauthenticated" // messages from senders without SMTP AUTH (relayed mail)
)

// Config is the [plugins.arc] table. See README.md.
type Config struct {
	Verify       bool `toml:"verify"`
	MaxInstances int  `toml:"max_instances"`
	// Sealing is on when domain, selector and private_key are set.
	Domain     string   `toml:"domain"`
	Selector   string   `toml:"selector"`
	PrivateKey string   `toml:"private_key"`
	SealFor    string   `toml:"seal_for"`
	AuthservID string   `toml:"authserv_id"`
	Headers    []string `toml:"headers"`
}

// DefaultHeaders are the fields an ARC-Message-Signature covers when present.
var DefaultHeaders = []string{"from", "to", "cc", "subject", "date", "message-id", "reply-to",
	"in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding", "dkim-signature"}

// DefaultConfig returns the defaults: verify, do not seal.
func DefaultConfig() Config {
	return Config{Verify: true, MaxInstances: MaxInstances, SealFor: SealAll, Headers: slices.Clone(DefaultHeaders)}
}

func (c *Config) sealing() bool { return c.PrivateKey != "" }

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. Every problem is reported, each naming its key; the registry adds
// the file and table. It does not read private_key: the key file is loaded
// by Start (`elemta plugins test arc` runs it), so a config can be checked
// on a machine that does not hold the key.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxInstances < 1 || c.MaxInstances > MaxInstances {
		errs = append(errs, fmt.Errorf("max_instances = %d: must be between 1 and %d (RFC 8617 §4.2.1)", c.MaxInstances, MaxInstances))
	}
	set := 0
	for _, v := range []string{c.Domain, c.Selector, c.PrivateKey} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		errs = append(errs, errors.New("domain, selector and private_key go together: set all three to seal, or none"))
	}
	if c.Domain != "" && !validName(c.Domain) {
		errs = append(errs, fmt.Errorf("domain = %q: not a domain name (letters, digits, '-' and '_' in dot-separated labels)", c.Domain))
	}
	if c.Selector != "" && !validName(c.Selector) {
		errs = append(errs, fmt.Errorf("selector = %q: not a selector (letters, digits, '-' and '_' in dot-separated labels)", c.Selector))
	}
	if strings.ContainsAny(c.AuthservID, " \t\r\n;()\"\\") {
		errs = append(errs, fmt.Errorf("authserv_id = %q: must be a single token (no spaces, ';', parentheses, quotes or backslashes)", c.AuthservID))
	}
	switch c.SealFor {
	case SealAll, SealChained, SealUnauthenticated:
	default:
		errs = append(errs, fmt.Errorf("seal_for = %q: want %q, %q or %q", c.SealFor, SealAll, SealChained, SealUnauthenticated))
	}
	if !slices.ContainsFunc(c.Headers, func(h string) bool { return strings.EqualFold(h, "from") }) {
		errs = append(errs, errors.New("headers must include \"from\""))
	}
	for _, h := range c.Headers {
		if h == "" || strings.ContainsAny(h, ": \t\r\n") || strings.EqualFold(h, hdrSeal) {
			errs = append(errs, fmt.Errorf("headers: %q cannot be signed by an ARC-Message-Signature", h))
		}
	}
	return errors.Join(errs...)
}

// validName reports whether s is a dot-separated sequence of labels of
// letters, digits, '-' and '_' (RFC 6376 §3.1 selectors and d= domains,
// A-labels for internationalized names), at most 253 bytes.
func validName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
