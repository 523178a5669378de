package greylist

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/elemta/elemta/pkg/clientnet"
	"github.com/elemta/elemta/pkg/maildomain"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Greylist]{
		Name:        "greylist",
		Version:     "1.0.0",
		Description: "greylisting per (client network, sender, recipient) triplet with a bbolt or Redis store",
		Types:       []registry.PluginType{registry.PluginTypeGreylist},
		Stages:      []registry.Stage{registry.PreReception},
		Phases:      []registry.Phase{registry.PhaseRcpt, registry.PhaseMessage},
		// The SPF result exempts SPF-pass senders when asked to
		// (exempt_spf_pass): any publisher of it runs first.
		Consumes: []any{(*registry.SPFResult)(nil)},
		Config:   DefaultConfig,
		New:      New,
	})
}

// Defaults of the [plugins.greylist] keys.
const (
	DefaultDelay          = 5 * time.Minute
	DefaultRetryWindow    = 4 * time.Hour
	DefaultExpire         = 35 * 24 * time.Hour
	DefaultIPv4Prefix     = 24
	DefaultIPv6Prefix     = 64
	DefaultAutoAllowAfter = 5
	DefaultRedisPrefix    = "elemta:greylist:"
)

// Config is the [plugins.greylist] table.
type Config struct {
	// A retry passes when delay <= time since first sight <= retry_window;
	// a passed triplet lives for expire after its last use.
	Delay       registry.Duration `toml:"delay"`
	RetryWindow registry.Duration `toml:"retry_window"`
	Expire      registry.Duration `toml:"expire"`
	// The client's address is shortened to a network of this many bits.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
	// StripSubaddress drops "+tag" (any of SubaddressSeparators) from the
	// sender's local part; StripTags undoes SRS and BATV rewriting.
	StripSubaddress      bool   `toml:"strip_subaddress"`
	SubaddressSeparators string `toml:"subaddress_separators"`
	StripTags            bool   `toml:"strip_tags"`
	// AutoAllowAfter lets a client network through once it has passed this
	// many triplets; 0 turns auto-allow off.
	AutoAllowAfter int `toml:"auto_allow_after"`
	// Exemptions.
	ExemptNetworks         []string `toml:"exempt_networks"`
	ExemptRecipientDomains []string `toml:"exempt_recipient_domains"`
	ExemptAuthenticated    bool     `toml:"exempt_authenticated"`
	ExemptSPFPass          bool     `toml:"exempt_spf_pass"`

	// The state store's keys (store, bolt_*, redis_*).
	store.Config
}

// DefaultConfig returns the defaults: 5 minutes delay, 4 hours to retry,
// 35 days of memory, /24 and /64 networks, auto-allow after 5 passes,
// loopback and authenticated clients exempt, state in a bbolt file.
func DefaultConfig() Config {
	return Config{
		Delay:                registry.Duration(DefaultDelay),
		RetryWindow:          registry.Duration(DefaultRetryWindow),
		Expire:               registry.Duration(DefaultExpire),
		IPv4Prefix:           DefaultIPv4Prefix,
		IPv6Prefix:           DefaultIPv6Prefix,
		StripSubaddress:      true,
		SubaddressSeparators: "+",
		StripTags:            true,
		AutoAllowAfter:       DefaultAutoAllowAfter,
		ExemptNetworks:       []string{"127.0.0.0/8", "::1/128"},
		ExemptAuthenticated:  true,
		Config:               store.DefaultConfig(DefaultRedisPrefix),
	}
}

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. Every problem is reported, each naming its key; the registry adds
// the file and table. (It hides the store's Validate, which it runs.)
func (cfg *Config) Validate() error {
	_, err := cfg.validate()
	return err
}

// validate checks cfg and returns the parsed exempt networks.
func (cfg Config) validate() (clientnet.List, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if cfg.Delay <= 0 {
		bad("delay", "must be positive")
	}
	if cfg.RetryWindow < cfg.Delay {
		bad("retry_window", "%v is shorter than delay (%v): no retry could ever pass", cfg.RetryWindow, cfg.Delay)
	}
	if cfg.Expire <= 0 {
		bad("expire", "must be positive")
	}
	if cfg.IPv4Prefix < 8 || cfg.IPv4Prefix > 32 {
		bad("ipv4_prefix", "%d: want 8 to 32", cfg.IPv4Prefix)
	}
	if cfg.IPv6Prefix < 16 || cfg.IPv6Prefix > 128 {
		bad("ipv6_prefix", "%d: want 16 to 128", cfg.IPv6Prefix)
	}
	if cfg.AutoAllowAfter < 0 {
		bad("auto_allow_after", "%d: must not be negative (0 turns auto-allow off)", cfg.AutoAllowAfter)
	}
	if cfg.StripSubaddress && cfg.SubaddressSeparators == "" {
		bad("subaddress_separators", "empty while strip_subaddress is on")
	}
	var nets clientnet.List
	for _, s := range cfg.ExemptNetworks {
		p, err := clientnet.ParsePrefix(s)
		if err != nil {
			bad("exempt_networks", "%v", err)
			continue
		}
		nets = append(nets, p)
	}
	for _, d := range cfg.ExemptRecipientDomains {
		if strings.TrimPrefix(d, ".") == "" || strings.ContainsAny(d, "@ ") {
			bad("exempt_recipient_domains", "%q is not a domain", d)
		} else if _, err := maildomain.Canonical(strings.TrimPrefix(d, ".")); err != nil {
			bad("exempt_recipient_domains", "%q is not a valid internationalized domain name: %v", d, err)
		}
	}
	errs = append(errs, cfg.Config.Validate("store"))
	return nets, errors.Join(errs...)
}
