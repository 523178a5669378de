package spf

import (
	"errors"
	"fmt"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Checker]{
		Name:        "spf",
		Version:     "1.0.0",
		Description: "SPF (RFC 7208) check of the MAIL FROM and HELO identities, Received-SPF header",
		Types:       []registry.PluginType{registry.PluginTypeSPF},
		Stages:      []registry.Stage{registry.PreReception},
		// The check runs at MAIL FROM; an offline scan runs it at PhaseMessage.
		Phases:   []registry.Phase{registry.PhaseMail, registry.PhaseMessage},
		Produces: []any{(*registry.SPFResult)(nil)},
		Config:   DefaultConfig,
		New:      New,
	})
}

// Limits of RFC 7208 §4.6.4.
const (
	// MaxLookupLimit is the most DNS-querying terms RFC 7208 allows (MUST be 10).
	MaxLookupLimit = 10
	// DefaultVoidLookupLimit is the RFC's suggested void lookup limit.
	DefaultVoidLookupLimit = 2
)

// Config is the [plugins.spf] table.
type Config struct {
	// CheckHELO also checks the HELO identity (RFC 7208 §2.3) when HELO
	// names a domain. Its result is recorded; actions apply to the MAIL
	// FROM identity's result.
	CheckHELO bool `toml:"check_helo"`
	// LookupLimit caps the DNS-querying terms of one check (1..10).
	LookupLimit int `toml:"lookup_limit"`
	// VoidLookupLimit caps lookups that return no answer (0..10).
	VoidLookupLimit int `toml:"void_lookup_limit"`
	// The action for each MAIL FROM result (on_fail = "reject"): accept
	// (the default: annotate only), quarantine, tempfail or reject. Flat
	// keys next to the common on_error; a misspelt one is an error at
	// startup.
	OnNone      registry.Action `toml:"on_none"`
	OnNeutral   registry.Action `toml:"on_neutral"`
	OnPass      registry.Action `toml:"on_pass"`
	OnFail      registry.Action `toml:"on_fail"`
	OnSoftFail  registry.Action `toml:"on_softfail"`
	OnTempError registry.Action `toml:"on_temperror"`
	OnPermError registry.Action `toml:"on_permerror"`
	// RecordCacheSize is how many SPF record texts are kept with the
	// outcome of checking their syntax (0 checks every time).
	RecordCacheSize int `toml:"record_cache_size"`
}

// Action returns the action configured for result.
func (c Config) Action(result registry.AuthResult) registry.Action {
	switch result {
	case registry.AuthNone:
		return c.OnNone
	case registry.AuthNeutral:
		return c.OnNeutral
	case registry.AuthPass:
		return c.OnPass
	case registry.AuthFail:
		return c.OnFail
	case registry.AuthSoftFail:
		return c.OnSoftFail
	case registry.AuthTempError:
		return c.OnTempError
	case registry.AuthPermError:
		return c.OnPermError
	}
	return registry.Accept
}

// DefaultConfig is the configuration of [plugins.spf] with no keys: both
// identities checked, RFC limits, every result only annotated.
func DefaultConfig() Config {
	return Config{
		CheckHELO:       true,
		LookupLimit:     MaxLookupLimit,
		VoidLookupLimit: DefaultVoidLookupLimit,
		RecordCacheSize: DefaultRecordCacheSize,
	}
}

const (
	// DefaultRecordCacheSize is the default record_cache_size.
	DefaultRecordCacheSize = 1000
	// maxRecordCacheSize bounds record_cache_size.
	maxRecordCacheSize = 100000
	// maxCachedRecord is the longest record text kept (a record is a few
	// hundred bytes; a longer one is checked every time).
	maxCachedRecord = 2048
)

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. Every problem is reported, each naming its key; the registry adds
// the file and table.
func (c *Config) Validate() error {
	var errs []error
	if c.LookupLimit < 1 || c.LookupLimit > MaxLookupLimit {
		errs = append(errs, fmt.Errorf("lookup_limit = %d: must be between 1 and %d (RFC 7208 §4.6.4)", c.LookupLimit, MaxLookupLimit))
	}
	if c.VoidLookupLimit < 0 || c.VoidLookupLimit > MaxLookupLimit {
		errs = append(errs, fmt.Errorf("void_lookup_limit = %d: must be between 0 and %d", c.VoidLookupLimit, MaxLookupLimit))
	}
	if c.RecordCacheSize < 0 || c.RecordCacheSize > maxRecordCacheSize {
		errs = append(errs, fmt.Errorf("record_cache_size = %d: must be between 0 and %d", c.RecordCacheSize, maxRecordCacheSize))
	}
	return errors.Join(errs...)
}
