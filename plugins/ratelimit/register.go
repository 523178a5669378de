package ratelimit

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/elemta/elemta/pkg/clientnet"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *RateLimit]{
		Name:        "ratelimit",
		Version:     "1.0.0",
		Description: "rate limits (GCRA) by client, sender, recipient and user, and concurrent sessions per client, with a bbolt or Redis store",
		Types:       []registry.PluginType{registry.PluginTypeRateLimit},
		Stages:      []registry.Stage{registry.PreReception},
		// Nothing is counted at HELO.
		Phases: []registry.Phase{registry.PhaseConnect, registry.PhaseMail, registry.PhaseRcpt, registry.PhaseMessage},
		Config: DefaultConfig,
		New:    New,
	})
}

// Defaults of the [plugins.ratelimit] keys.
const (
	DefaultMaxSessionsPerClient = 20
	DefaultSessionLease         = 10 * time.Minute
	DefaultIPv4Prefix           = 24
	DefaultIPv6Prefix           = 64
	DefaultRedisPrefix          = "elemta:ratelimit:"
)

// Events a limit counts.
const (
	OnConnect = "connect" // each connection
	OnMail    = "mail"    // each MAIL FROM: each message
	OnRcpt    = "rcpt"    // each RCPT TO: each recipient
)

// Key parts a limit can be keyed by, and the first event that knows them.
var keyParts = map[string]string{
	"ip": OnConnect, "network": OnConnect,
	"helo": OnMail, "sender": OnMail, "sender_domain": OnMail, "user": OnMail,
	"rcpt": OnRcpt, "rcpt_domain": OnRcpt,
}

var eventOrder = []string{OnConnect, OnMail, OnRcpt}

// Config is the [plugins.ratelimit] table.
type Config struct {
	// Limits are [[plugins.ratelimit.limits]] tables; setting any replaces
	// the defaults.
	Limits []Limit `toml:"limits"`
	// MaxSessionsPerClient bounds simultaneous SMTP sessions per client
	// address (or network, with session_key = "network"); 0 turns it off.
	MaxSessionsPerClient int    `toml:"max_sessions_per_client"`
	SessionKey           string `toml:"session_key"`
	// SessionLease is how long a session's slot is held without activity
	// (renewed at each MAIL). The SMTP host releases the slot when the
	// session ends (registry.SessionEnder); the lease frees the slots of a
	// node that died.
	SessionLease registry.Duration `toml:"session_lease"`
	// The "network" key part: the client address cut to this many bits.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
	// ExemptNetworks are never limited.
	ExemptNetworks []string `toml:"exempt_networks"`

	// The state store's keys (store, bolt_*, redis_*).
	store.Config
}

// Limit is one rate: Count events per Window for each distinct Key, with
// at most Burst back to back.
type Limit struct {
	Name   string            `toml:"name"`
	Key    []string          `toml:"key"`
	Count  int               `toml:"count"`
	Window registry.Duration `toml:"window"`
	// Burst defaults to Count.
	Burst int `toml:"burst"`
	// On is the event counted: connect, mail or rcpt (default rcpt when the
	// key has a recipient part, else mail).
	On string `toml:"on"`
}

// DefaultConfig returns the defaults: 600 messages an hour per client
// address, 1000 recipients an hour per authenticated user, 20 concurrent
// sessions per client address, loopback exempt, state in a bbolt file.
func DefaultConfig() Config {
	return Config{
		Limits: []Limit{
			{Name: "client-messages", Key: []string{"ip"}, Count: 600, Window: registry.Duration(time.Hour), On: OnMail},
			{Name: "user-recipients", Key: []string{"user"}, Count: 1000, Window: registry.Duration(time.Hour), On: OnRcpt},
		},
		MaxSessionsPerClient: DefaultMaxSessionsPerClient,
		SessionKey:           "ip",
		SessionLease:         registry.Duration(DefaultSessionLease),
		IPv4Prefix:           DefaultIPv4Prefix,
		IPv6Prefix:           DefaultIPv6Prefix,
		ExemptNetworks:       []string{"127.0.0.0/8", "::1/128"},
		Config:               store.DefaultConfig(DefaultRedisPrefix),
	}
}

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. Every problem is reported, each naming its key; the registry adds
// the file and table. (It hides the store's Validate, which it runs.)
func (cfg *Config) Validate() error {
	_, _, err := cfg.validate()
	return err
}

// validate checks cfg and returns the parsed exempt networks and a copy of
// the limits with their defaults (On, Burst) filled in; cfg is not changed.
func (cfg Config) validate() (clientnet.List, []Limit, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	names := map[string]bool{}
	limits := slices.Clone(cfg.Limits)
	for i := range limits {
		l := &limits[i]
		key := fmt.Sprintf("limits[%d]", i)
		if l.Name == "" {
			bad(key+".name", "empty")
		} else {
			key = fmt.Sprintf("limits[%d] (%s)", i, l.Name)
		}
		if names[l.Name] {
			bad(key+".name", "used by two limits")
		}
		names[l.Name] = true
		if l.Count <= 0 {
			bad(key+".count", "%d: must be positive", l.Count)
		}
		if l.Window <= 0 {
			bad(key+".window", "must be positive")
		} else if l.Count > 0 && l.Window.D()/time.Duration(l.Count) < time.Microsecond {
			bad(key+".window", "%d per %v is more than one event per microsecond", l.Count, l.Window)
		}
		if l.Burst < 0 {
			bad(key+".burst", "%d: must not be negative", l.Burst)
		}
		if l.Burst == 0 {
			l.Burst = l.Count
		}
		if len(l.Key) == 0 {
			bad(key+".key", "empty: name at least one of ip, network, helo, sender, sender_domain, user, rcpt, rcpt_domain")
		}
		needs := OnConnect
		for _, p := range l.Key {
			ev, ok := keyParts[p]
			if !ok {
				bad(key+".key", "unknown part %q (valid: ip, network, helo, sender, sender_domain, user, rcpt, rcpt_domain)", p)
				continue
			}
			if slices.Index(eventOrder, ev) > slices.Index(eventOrder, needs) {
				needs = ev
			}
		}
		if l.On == "" {
			l.On = OnMail
			if needs == OnRcpt {
				l.On = OnRcpt
			}
		}
		if !slices.Contains(eventOrder, l.On) {
			bad(key+".on", "%q: want connect, mail or rcpt", l.On)
		} else if slices.Index(eventOrder, l.On) < slices.Index(eventOrder, needs) {
			bad(key+".on", "%q: the key needs what is only known at %s", l.On, needs)
		}
	}
	if cfg.MaxSessionsPerClient < 0 {
		bad("max_sessions_per_client", "%d: must not be negative (0 turns it off)", cfg.MaxSessionsPerClient)
	}
	if cfg.SessionKey != "ip" && cfg.SessionKey != "network" {
		bad("session_key", "%q: want ip or network", cfg.SessionKey)
	}
	if cfg.SessionLease <= 0 {
		bad("session_lease", "must be positive")
	}
	if cfg.IPv4Prefix < 8 || cfg.IPv4Prefix > 32 {
		bad("ipv4_prefix", "%d: want 8 to 32", cfg.IPv4Prefix)
	}
	if cfg.IPv6Prefix < 16 || cfg.IPv6Prefix > 128 {
		bad("ipv6_prefix", "%d: want 16 to 128", cfg.IPv6Prefix)
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
	errs = append(errs, cfg.Config.Validate("store"))
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return nets, limits, nil
}
