package dmarc

import (
	"errors"
	"fmt"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Checker]{
		Name:        "dmarc",
		Version:     "1.0.0",
		Description: "DMARC (RFC 7489) policy of the From domain, from the SPF and DKIM results of the same message",
		Types:       []registry.PluginType{registry.PluginTypeDMARC},
		Stages:      []registry.Stage{registry.PostReception},
		Produces:    []any{(*registry.DMARCResult)(nil)},
		Consumes:    []any{(*registry.SPFResult)(nil), (*registry.DKIMResult)(nil)},
		Config:      DefaultConfig,
		New:         New,
	})
}

// Config is the [plugins.dmarc] table.
type Config struct {
	// Enforce turns the outcome into the verdict: a failing message's
	// reject or quarantine policy (after pct sampling), OnTempError,
	// OnUnparseableFrom and OnMultipleFrom. Otherwise DMARC only annotates.
	Enforce bool `toml:"enforce"`
	// MaxFromDomains caps how many distinct RFC5322.From domains one
	// message may carry; each is evaluated (RFC 7489 §6.6.1). More is
	// OnUnparseableFrom, never a lookup storm.
	MaxFromDomains int `toml:"max_from_domains"`
	// OnTempError is the action when the policy lookup fails transiently:
	// accept or tempfail.
	OnTempError registry.Action `toml:"on_temperror"`
	// OnUnparseableFrom is the action when the From fields cannot be
	// reduced to author domains that were all evaluated: a From field or
	// address without a usable domain, or more than MaxFromDomains
	// domains. accept, quarantine or reject; a failing policy of a domain
	// that was found applies when it is stricter.
	OnUnparseableFrom registry.Action `toml:"on_unparseable_from"`
	// OnMultipleFrom is what several distinct From domains get:
	// "strictest" evaluates each and applies the strictest outcome;
	// "quarantine" or "reject" also act on the message for having them.
	OnMultipleFrom string `toml:"on_multiple_from"`
	// RecordCacheSize is how many parsed policy records are kept, by
	// their text (0 parses every time).
	RecordCacheSize int `toml:"record_cache_size"`
}

// MultipleFromStrictest is the on_multiple_from value that evaluates
// every From domain and applies the strictest outcome.
const MultipleFromStrictest = "strictest"

// DefaultMaxFromDomains is the default cap on distinct From domains.
const DefaultMaxFromDomains = 5

const (
	// DefaultRecordCacheSize is the default record_cache_size.
	DefaultRecordCacheSize = 1000
	// maxRecordCacheSize bounds record_cache_size: each entry holds a
	// record of at most maxCachedRecord bytes and its parsed form.
	maxRecordCacheSize = 100000
	// maxCachedRecord is the longest record text kept; a longer one (a
	// real policy is under 300 bytes) is parsed every time.
	maxCachedRecord = 2048
)

// DefaultConfig is [plugins.dmarc] with no keys: annotate only; with
// enforce the safe choices: tempfail on temperror, reject a From that
// cannot be evaluated, the strictest policy of several From domains.
func DefaultConfig() Config {
	return Config{
		MaxFromDomains:    DefaultMaxFromDomains,
		OnTempError:       registry.TempFail,
		OnUnparseableFrom: registry.Reject,
		OnMultipleFrom:    MultipleFromStrictest,
		RecordCacheSize:   DefaultRecordCacheSize,
	}
}

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports what New would refuse.
// Every problem is reported, each naming its key; the registry adds the
// file and table.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxFromDomains < 1 || c.MaxFromDomains > 100 {
		errs = append(errs, fmt.Errorf("max_from_domains = %d: must be between 1 and 100", c.MaxFromDomains))
	}
	if c.OnTempError != registry.Accept && c.OnTempError != registry.TempFail {
		errs = append(errs, fmt.Errorf("on_temperror = %q: must be accept or tempfail", c.OnTempError))
	}
	if c.OnUnparseableFrom == registry.TempFail {
		errs = append(errs, fmt.Errorf("on_unparseable_from = %q: must be accept, quarantine or reject (the From will not parse later either)", c.OnUnparseableFrom))
	}
	switch c.OnMultipleFrom {
	case MultipleFromStrictest, "quarantine", "reject":
	default:
		errs = append(errs, fmt.Errorf("on_multiple_from = %q: must be strictest, quarantine or reject", c.OnMultipleFrom))
	}
	if c.RecordCacheSize < 0 || c.RecordCacheSize > maxRecordCacheSize {
		errs = append(errs, fmt.Errorf("record_cache_size = %d: must be between 0 and %d", c.RecordCacheSize, maxRecordCacheSize))
	}
	return errors.Join(errs...)
}
