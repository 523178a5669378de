package dmarc

import (
	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Checker]{
		Name:        "dmarc",
		Version:     "1.0.0",
		Description: "DMARC (RFC 7489) policy of the From domain, from the SPF and DKIM results of the same message",
		Types:       []registry.PluginType{registry.PluginTypeDMARC},
		Stages:      []registry.Stage{registry.PostReception},
		After:       []string{"spf", "dkim"},
		Config:      DefaultConfig,
		New:         New,
	})
}

// Config is the [plugins.dmarc] table.
type Config struct {
	// Enforce turns a failing message's reject or quarantine policy
	// (after pct sampling) into the verdict; otherwise DMARC only annotates.
	Enforce bool `toml:"enforce"`
	// MaxFromDomains caps how many distinct RFC5322.From domains one
	// message may carry; each is evaluated (RFC 7489 §6.6.1). More is
	// permerror, never a lookup storm.
	MaxFromDomains int `toml:"max_from_domains"`
}

// DefaultMaxFromDomains is the default cap on distinct From domains.
const DefaultMaxFromDomains = 5

// DefaultConfig is [plugins.dmarc] with no keys: annotate only.
func DefaultConfig() Config {
	return Config{MaxFromDomains: DefaultMaxFromDomains}
}

func (c Config) validate() error {
	if c.MaxFromDomains < 1 || c.MaxFromDomains > 100 {
		return errorf("max_from_domains = %d: must be between 1 and 100", c.MaxFromDomains)
	}
	return nil
}
