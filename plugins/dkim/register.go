package dkim

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Plugin]{
		Name:        "dkim",
		Version:     "1.0.0",
		Description: "DKIM verification (RFC 6376, RFC 8301, RFC 8463) at post-reception and signing at pre-queue",
		Types:       []registry.PluginType{registry.PluginTypeDKIM},
		Stages:      []registry.Stage{registry.PostReception, registry.PreQueue},
		Produces:    []any{(*registry.DKIMResult)(nil)},
		Config:      DefaultConfig,
		New:         New,
	})
}

// Config is the [plugins.dkim] table. See README.md for every key.
type Config struct {
	// Verify checks DKIM-Signature fields at post-reception.
	Verify bool `toml:"verify"`
	// MaxSignatures caps the signatures verified per message; later ones
	// are reported with result "policy" and not checked.
	MaxSignatures int `toml:"max_signatures"`
	// KeyCacheSize is how many parsed key records (by their text) are
	// kept; 0 parses every record fetched.
	KeyCacheSize int `toml:"key_cache_size"`

	// Sign signs at pre-queue when a key applies.
	Sign bool `toml:"sign"`
	// Selector and PrivateKey are the default signing key, used for the
	// From domain of authenticated senders that has no [domains] entry.
	Selector   string `toml:"selector"`
	PrivateKey string `toml:"private_key"`
	// Domain, when set, is the d= used with the default key instead of
	// the From domain.
	Domain string `toml:"domain"`
	// Domains holds a key per signing domain.
	Domains map[string]DomainConfig `toml:"domains"`
	// Canonicalization is "header/body", each "relaxed" or "simple".
	Canonicalization string `toml:"canonicalization"`
	// Headers are the fields signed when present; OversignHeaders are
	// listed once more than present, so a field added later breaks the
	// signature.
	Headers         []string `toml:"headers"`
	OversignHeaders []string `toml:"oversign_headers"`
	// Expiration, when non-zero, sets x= that long after signing.
	Expiration registry.Duration `toml:"expiration"`
	// TrustedNetworks lists client networks (CIDR) whose mail is signed
	// like an authenticated sender's.
	TrustedNetworks []string `toml:"trusted_networks"`
}

// DomainConfig is one [plugins.dkim.domains."example.com"] table.
type DomainConfig struct {
	Selector   string `toml:"selector"`
	PrivateKey string `toml:"private_key"`
	// SignUnauthenticated signs this domain's mail even from senders that
	// did not authenticate and are not in trusted_networks.
	SignUnauthenticated bool `toml:"sign_unauthenticated"`
}

// Defaults.
const (
	DefaultMaxSignatures = 10
	DefaultKeyCacheSize  = 1000
	// maxKeyCacheSize bounds key_cache_size: each entry holds a record of
	// at most dkimkey.MaxCachedRecord bytes and its key.
	maxKeyCacheSize         = 100000
	DefaultCanonicalization = "relaxed/relaxed"
	// maxMaxSignatures bounds max_signatures: each signature costs a DNS
	// lookup and a body hash.
	maxMaxSignatures = 100
)

// DefaultHeaders is RFC 6376 §5.4.1's list of fields worth signing.
var DefaultHeaders = []string{
	"from", "reply-to", "subject", "date", "to", "cc",
	"resent-date", "resent-from", "resent-to", "resent-cc",
	"in-reply-to", "references", "message-id",
	"mime-version", "content-type", "content-transfer-encoding",
	"list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive",
}

// DefaultConfig returns the defaults: verify, sign when a key is configured.
func DefaultConfig() Config {
	return Config{
		Verify:           true,
		MaxSignatures:    DefaultMaxSignatures,
		KeyCacheSize:     DefaultKeyCacheSize,
		Sign:             true,
		Canonicalization: DefaultCanonicalization,
		Headers:          slices.Clone(DefaultHeaders),
		OversignHeaders:  []string{"from"},
	}
}

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. Every problem is reported, each naming its key; the registry adds
// the file and table. It does not read the key files: Start loads them
// (`elemta plugins test dkim` runs it), so a config can be checked on a
// machine that does not hold the keys.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxSignatures < 1 || c.MaxSignatures > maxMaxSignatures {
		errs = append(errs, fmt.Errorf("max_signatures = %d: must be between 1 and %d", c.MaxSignatures, maxMaxSignatures))
	}
	if c.KeyCacheSize < 0 || c.KeyCacheSize > maxKeyCacheSize {
		errs = append(errs, fmt.Errorf("key_cache_size = %d: must be between 0 and %d", c.KeyCacheSize, maxKeyCacheSize))
	}
	if _, _, err := parseCanonicalization(c.Canonicalization); err != nil {
		errs = append(errs, err)
	}
	if !slices.ContainsFunc(c.Headers, func(h string) bool { return strings.EqualFold(h, "from") }) {
		errs = append(errs, errors.New("headers must include \"from\" (RFC 6376 §5.4)"))
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"headers", c.Headers}, {"oversign_headers", c.OversignHeaders}} {
		for _, h := range l.list {
			if h == "" || strings.ContainsAny(h, ": \t\r\n") {
				errs = append(errs, fmt.Errorf("%s: %q is not a header field name", l.key, h))
			}
		}
	}
	if (c.Selector == "") != (c.PrivateKey == "") {
		errs = append(errs, errors.New("selector and private_key go together: set both for a default signing key, or neither"))
	}
	if c.Domain != "" && c.Selector == "" {
		errs = append(errs, errors.New("domain is set but there is no default key (selector, private_key)"))
	}
	if c.Domain != "" && !validName(c.Domain) {
		errs = append(errs, fmt.Errorf("domain = %q: not a domain name (letters, digits, '-' and '_' in dot-separated labels)", c.Domain))
	}
	if c.Selector != "" && !validName(c.Selector) {
		errs = append(errs, fmt.Errorf("selector = %q: not a selector (letters, digits, '-' and '_' in dot-separated labels)", c.Selector))
	}
	for _, name := range sortedKeys(c.Domains) {
		d := c.Domains[name]
		if !validName(name) || name != strings.ToLower(name) {
			errs = append(errs, fmt.Errorf("domains.%q: not a lowercase domain name", name))
		}
		if d.Selector == "" || d.PrivateKey == "" {
			errs = append(errs, fmt.Errorf("domains.%q: selector and private_key are required", name))
		} else if !validName(d.Selector) {
			errs = append(errs, fmt.Errorf("domains.%q.selector = %q: not a selector (letters, digits, '-' and '_' in dot-separated labels)", name, d.Selector))
		}
	}
	for _, n := range c.TrustedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("trusted_networks: %w", err))
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

func parseCanonicalization(s string) (header, body string, err error) {
	header, body, _ = strings.Cut(strings.ToLower(strings.TrimSpace(s)), "/")
	if body == "" {
		body = "simple" // RFC 6376 §3.5: c=relaxed means relaxed/simple
	}
	for _, v := range []string{header, body} {
		if v != "relaxed" && v != "simple" {
			return "", "", fmt.Errorf("canonicalization = %q: want \"header/body\", each relaxed or simple", s)
		}
	}
	return header, body, nil
}
