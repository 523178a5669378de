package pluginhost

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
	"github.com/pelletier/go-toml/v2"
)

// Config defaults.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultMaxConcurrency = 16
	DefaultIdleWorkers    = 64
	// MaxIdleWorkers bounds idle_workers: each idle worker keeps a stack.
	MaxIdleWorkers = 4096
)

// Config is the [plugins] part of Elemta's TOML config file:
//
//	[plugins]
//	enabled = true
//	plugins = ["clamav", "rspamd"]
//
//	[plugins.clamav]
//	socket = "/var/run/clamav/clamd.ctl"
//	timeout = 30
//
// Every [plugins.<name>] table is decoded strictly into the plugin's own
// config type; `timeout`, `on_error` and `stages` are understood for every
// plugin by the executor. A config type whose pointer implements Validator
// is validated here, so `elemta config check` catches what decoding cannot
// without building the plugin.
type Config struct {
	// File names the config file in error messages.
	File string
	// Enabled false turns every plugin off.
	Enabled bool
	// Plugins lists the enabled plugin instances, in config order: the
	// order header changes are applied in and ties are broken by. An
	// instance ID is a plugin name ("contentfilter") or a name and an
	// instance name ("contentfilter/strict"), configured by
	// [plugins.contentfilter] and [plugins."contentfilter/strict"].
	Plugins []string
	// MaxConcurrency bounds how many plugins of one stage run at once.
	MaxConcurrency int
	// IdleWorkers is how many plugin workers (goroutines that keep their
	// grown stacks between calls) stay waiting for work; 0 starts a
	// goroutine for every plugin call.
	IdleWorkers int
	// DefaultTimeout applies to plugins without a timeout of their own.
	DefaultTimeout time.Duration
	// Warnings are problems that do not stop startup (a legacy
	// `directory`), for the host to log.
	Warnings []string

	settings map[string]*PluginConfig
	cat      *catalog.Catalog
	// data is the document parsed: an isolated instance's worker parses
	// it again to build the plugin from the same config.
	data []byte
}

// PluginConfig is one plugin instance's decoded settings.
type PluginConfig struct {
	// Name is the instance ID ("contentfilter/strict"), Type the name of
	// the plugin it is an instance of ("contentfilter").
	Name    string
	Type    string
	Timeout time.Duration
	// OnError is the verdict when the plugin fails or times out.
	OnError registry.Action
	// Stages the plugin runs in: its module's stages unless config narrows them.
	Stages []registry.Stage
	// Value is the plugin's own config, a *C of its Module.
	Value any
	// OwnedHeaders are the header fields the instance states its verdict
	// in (registry.HeaderOwner), and those remove_on_error names: every
	// field of these names is removed from the message when a call of the
	// instance fails.
	OwnedHeaders []string
	// Isolation says whether the instance runs in this process or in
	// worker processes of its own (isolation, memory_limit, workers,
	// max_requests).
	Isolation Isolation
}

type pluginsTable struct {
	Enabled        *bool              `toml:"enabled"`
	Directory      string             `toml:"directory"`
	Plugins        []string           `toml:"plugins"`
	MaxConcurrency *int               `toml:"max_concurrency"`
	IdleWorkers    *int               `toml:"idle_workers"`
	DefaultTimeout *registry.Duration `toml:"default_timeout"`
}

// commonSettings are the keys every [plugins.<name>] table may have.
type commonSettings struct {
	Timeout *registry.Duration `toml:"timeout"`
	OnError *registry.Action   `toml:"on_error"`
	Stages  []registry.Stage   `toml:"stages"`
	// RemoveOnError adds to the fields a failed call removes.
	RemoveOnError []string `toml:"remove_on_error"`
	// Isolation keys (isolation.go).
	Isolation   *IsolationMode `toml:"isolation"`
	MemoryLimit *ByteSize      `toml:"memory_limit"`
	Workers     *int           `toml:"workers"`
	MaxRequests *int64         `toml:"max_requests"`
}

// ParseConfig reads the [plugins] table of a TOML document, checking it
// against the plugins compiled into this binary. Other top-level tables
// belong to the host and are ignored here. Errors name the file, line and
// key; all of them are reported at once.
func ParseConfig(file string, data []byte) (*Config, error) {
	return parseConfig(catalog.Global(), file, data)
}

// NewConfig returns the config of a binary run without a config file: the
// named plugins enabled with their defaults.
func NewConfig(plugins ...string) (*Config, error) {
	var b strings.Builder
	b.WriteString("[plugins]\nplugins = [")
	for i, p := range plugins {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", p)
	}
	b.WriteString("]\n")
	return ParseConfig("(built-in config)", []byte(b.String()))
}

func parseConfig(r *catalog.Catalog, file string, data []byte) (*Config, error) {
	cfg := &Config{File: file, Enabled: true, MaxConcurrency: DefaultMaxConcurrency,
		IdleWorkers:    DefaultIdleWorkers,
		DefaultTimeout: DefaultTimeout, settings: map[string]*PluginConfig{}, cat: r, data: data}
	var errs []error
	fail := func(line, col int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d:%d: %s", file, line, col, fmt.Sprintf(format, args...)))
	}

	var doc struct {
		Plugins pluginsTable `toml:"plugins"`
	}
	missing, err := decodeStrict(data, &doc)
	if err != nil {
		return nil, positioned(file, err)
	}
	configured := map[string]bool{} // instances with a [plugins.<id>] table
	for _, m := range missing {
		if len(m.Key) < 2 || m.Key[0] != "plugins" {
			continue // another section: the host's business
		}
		id := m.Key[1]
		if configured[id] {
			continue
		}
		typ, _, err := catalog.ParseID(id)
		if err != nil {
			fail(m.Line, m.Col, "%s: %v", tableName(id), err)
			configured[id] = true // reported once
			continue
		}
		if _, ok := r.Lookup(typ); ok {
			configured[id] = true
			continue
		}
		fail(m.Line, m.Col, "unknown key %q: no plugin %q is compiled into this binary, and it is not a [plugins] setting (%s); %s",
			strings.Join(m.Key, "."), typ, strings.Join(catalog.Reserved, ", "), howToAdd(r))
		configured[id] = true // reported once
	}
	for id := range configured {
		if typ, _, err := catalog.ParseID(id); err != nil || !hasEntry(r, typ) {
			delete(configured, id)
		}
	}

	t := doc.Plugins
	if t.Enabled != nil {
		cfg.Enabled = *t.Enabled
	}
	if t.Directory != "" {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf(
			"%s: plugins.directory = %q is ignored: plugins are compiled into the binary now (chosen in plugins.yaml, built with `make build`); remove the setting",
			file, t.Directory))
	}
	if t.MaxConcurrency != nil {
		if *t.MaxConcurrency < 1 {
			errs = append(errs, fmt.Errorf("%s: plugins.max_concurrency = %d: must be at least 1", file, *t.MaxConcurrency))
		}
		cfg.MaxConcurrency = *t.MaxConcurrency
	}
	if t.IdleWorkers != nil {
		if *t.IdleWorkers < 0 || *t.IdleWorkers > MaxIdleWorkers {
			errs = append(errs, fmt.Errorf("%s: plugins.idle_workers = %d: must be between 0 and %d", file, *t.IdleWorkers, MaxIdleWorkers))
		}
		cfg.IdleWorkers = *t.IdleWorkers
	}
	if t.DefaultTimeout != nil {
		if *t.DefaultTimeout <= 0 {
			errs = append(errs, fmt.Errorf("%s: plugins.default_timeout must be positive", file))
		}
		cfg.DefaultTimeout = t.DefaultTimeout.D()
	}
	for i, name := range t.Plugins {
		typ, _, err := catalog.ParseID(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: plugins.plugins: %w", file, err))
			continue
		}
		if _, ok := r.Lookup(typ); !ok {
			errs = append(errs, fmt.Errorf("%s: plugins.plugins enables %q, which is not compiled into this binary; %s", file, name, howToAdd(r)))
			continue
		}
		if slices.Contains(t.Plugins[:i], name) {
			errs = append(errs, fmt.Errorf("%s: plugins.plugins lists %q twice", file, name))
			continue
		}
		cfg.Plugins = append(cfg.Plugins, name)
		configured[name] = true
	}

	ids := make([]string, 0, len(configured))
	for id := range configured {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, name := range ids {
		pc, err := decodePlugin(r, file, data, name, cfg.DefaultTimeout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfg.settings[name] = pc
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Enabled {
		cfg.Warnings = append(cfg.Warnings, producerWarnings(r, file, cfg.Plugins)...)
	}
	return cfg, nil
}

// Settings returns the settings of the plugin instance called name (an
// instance ID): those decoded from the file, or the defaults when it has
// no table.
func (c *Config) Settings(name string) (*PluginConfig, error) {
	if pc, ok := c.settings[name]; ok {
		return pc, nil
	}
	typ, _, err := catalog.ParseID(name)
	if err != nil {
		return nil, err
	}
	m, ok := c.cat.Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("plugin %q is not compiled into this binary; %s", typ, howToAdd(c.cat))
	}
	return &PluginConfig{Name: name, Type: typ, Timeout: c.DefaultTimeout, Stages: entryStages(m), Value: m.NewConfig(), Isolation: defaultIsolation()}, nil
}

// Instances returns the IDs of the configured instances of the plugin
// called typ that the config enables, in config order.
func (c *Config) Instances(typ string) []string {
	var ids []string
	if !c.Enabled {
		return nil
	}
	for _, id := range c.Plugins {
		if t, _, _ := catalog.ParseID(id); t == typ {
			ids = append(ids, id)
		}
	}
	return ids
}

func hasEntry(c *catalog.Catalog, name string) bool {
	_, ok := c.Lookup(name)
	return ok
}

// tableName is how the table of instance id is written in TOML:
// plugins.contentfilter, plugins."contentfilter/strict".
func tableName(id string) string {
	if strings.ContainsAny(id, "/. \"\\") || id == "" {
		return "plugins." + strconv.Quote(id)
	}
	return "plugins." + id
}

// decodePlugin decodes [plugins.<name>] twice: once for the common keys and
// once into the plugin's own config. A key is unknown when neither knows it.
func decodePlugin(r *catalog.Catalog, file string, data []byte, name string, defTimeout time.Duration) (*PluginConfig, error) {
	typ, _, _ := catalog.ParseID(name)
	m, _ := r.Lookup(typ)
	prefix := tableName(name)

	// A decode error stops go-toml before it lists unknown keys: they are
	// found apart (UnknownKeys) and reported with it; the half-decoded
	// value is not validated.
	var decodeErrs []error
	var common commonSettings
	commonDoc := tableDoc(name, reflect.ValueOf(&common).Elem())
	missCommon, err := decodeStrict(data, commonDoc.Addr().Interface())
	if err != nil {
		decodeErrs = append(decodeErrs, positionedIn(file, data, "plugins."+name, err, func(d []byte) error {
			_, err := decodeStrict(d, tableDoc(name, reflect.ValueOf(&commonSettings{}).Elem()).Addr().Interface())
			return err
		}))
		missCommon = UnknownKeys(data, commonDoc.Addr().Interface())
	}
	value := m.NewConfig() // *C with defaults
	ownDoc := tableDoc(name, reflect.ValueOf(value).Elem())
	missOwn, err := decodeStrict(data, ownDoc.Addr().Interface())
	if err != nil {
		err = positionedIn(file, data, "plugins."+name, err, func(d []byte) error {
			_, err := decodeStrict(d, tableDoc(name, reflect.ValueOf(m.NewConfig()).Elem()).Addr().Interface())
			return err
		})
		if !slices.ContainsFunc(decodeErrs, func(e error) bool { return e.Error() == err.Error() }) {
			decodeErrs = append(decodeErrs, err) // not a key both know (clamav's timeout), said once
		}
		missOwn = UnknownKeys(data, ownDoc.Addr().Interface())
	}
	// The documents hold copies: take the decoded values back out.
	common = commonDoc.Field(0).Field(0).Interface().(commonSettings)
	reflect.ValueOf(value).Elem().Set(ownDoc.Field(0).Field(0))

	// A key the plugin's own struct does not know is unknown unless it is
	// one of the common keys (whatever lies below them is theirs to check).
	errs := decodeErrs
	for _, k := range missOwn {
		if len(k.Key) < 3 || k.Key[0] != "plugins" || k.Key[1] != name {
			continue
		}
		if !slices.ContainsFunc(missCommon, func(c UnknownKey) bool { return slices.Equal(c.Key, k.Key[:3]) }) {
			continue // a common key: decoded above
		}
		if len(k.Key) > 3 {
			errs = append(errs, fmt.Errorf("%s:%d:%d: %s: unknown key %q (see the README of plugin %s)",
				file, k.Line, k.Col, prefix+"."+strings.Join(k.Key[2:len(k.Key)-1], "."), k.Key[len(k.Key)-1], typ))
			continue
		}
		errs = append(errs, fmt.Errorf("%s:%d:%d: %s: unknown key %q (plugin %s accepts: %s)",
			file, k.Line, k.Col, prefix, k.Key[len(k.Key)-1], typ, strings.Join(knownKeys(value), ", ")))
	}
	if len(decodeErrs) > 0 {
		return nil, errors.Join(errs...)
	}

	var kp Positions // of data's keys, found when an error needs them
	at := func(err error) []error {
		if kp == nil {
			kp = KeyPositions(data)
		}
		return TableErrors(file, kp, "plugins."+name, prefix, err)
	}
	if v, ok := value.(registry.Validator); ok {
		if err := v.Validate(); err != nil {
			errs = append(errs, at(err)...)
		}
	}

	pc := &PluginConfig{Name: name, Type: typ, Timeout: defTimeout, Stages: entryStages(m), Value: value}
	if ho, ok := value.(registry.HeaderOwner); ok {
		owned, err := ownedHeaders(ho)
		if err != nil {
			errs = append(errs, at(err)...)
		}
		pc.OwnedHeaders = slices.Clone(owned)
	}
	iso, err := common.isolation(value)
	if err != nil {
		errs = append(errs, at(err)...)
	}
	pc.Isolation = iso
	if common.Timeout != nil {
		if *common.Timeout <= 0 {
			errs = append(errs, at(errors.New("timeout: must be positive"))...)
		}
		pc.Timeout = common.Timeout.D()
	}
	if common.OnError != nil {
		pc.OnError = *common.OnError
	}
	for i, n := range common.RemoveOnError {
		if !isFieldName(n) {
			errs = append(errs, at(fmt.Errorf("remove_on_error[%d]: %q is not a header field name", i, n))...)
		} else if !slices.ContainsFunc(pc.OwnedHeaders, func(o string) bool { return strings.EqualFold(o, n) }) {
			pc.OwnedHeaders = append(pc.OwnedHeaders, n)
		}
	}
	if common.Stages != nil {
		for _, s := range common.Stages {
			if !slices.Contains(pc.Stages, s) {
				errs = append(errs, at(fmt.Errorf("stages: plugin %s cannot run at %s (it supports %v)", typ, s, entryStages(m)))...)
			}
		}
		pc.Stages = common.Stages
	}
	return pc, errors.Join(errs...)
}

// tableDoc returns an addressable value of type
// struct{ Plugins struct{ X T `toml:"<name>"` } `toml:"plugins"` } whose X
// holds a copy of v.
func tableDoc(name string, v reflect.Value) reflect.Value {
	inner := reflect.StructOf([]reflect.StructField{{Name: "X", Type: v.Type(), Tag: reflect.StructTag(fmt.Sprintf(`toml:%q`, name))}})
	outer := reflect.StructOf([]reflect.StructField{{Name: "Plugins", Type: inner, Tag: `toml:"plugins"`}})
	doc := reflect.New(outer).Elem()
	doc.Field(0).Field(0).Set(v)
	return doc
}

// decodeStrict decodes data into v, returning the keys v has no field for
// separately from real errors (syntax, wrong type).
func decodeStrict(data []byte, v any) ([]UnknownKey, error) {
	err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(v)
	var sm *toml.StrictMissingError
	if !errors.As(err, &sm) {
		return nil, err
	}
	keys := make([]UnknownKey, len(sm.Errors))
	for i, e := range sm.Errors {
		line, col := e.Position()
		keys[i] = UnknownKey{Key: e.Key(), Line: line, Col: col}
	}
	return keys, nil
}

// knownKeys lists the toml keys of the struct cfg points to, and the common
// ones. Like go-toml, it takes the keys of an embedded struct without a toml
// name as the struct's own.
func knownKeys(cfg any) []string {
	keys := []string{"timeout", "on_error", "stages", "remove_on_error", "isolation", "memory_limit", "workers", "max_requests"}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if ft := f.Type; f.Anonymous && tag == "" {
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			if tag == "" {
				tag = f.Name
			}
			if !slices.Contains(keys, tag) {
				keys = append(keys, tag)
			}
		}
	}
	add(reflect.TypeOf(cfg).Elem())
	slices.Sort(keys)
	return keys
}

func howToAdd(r *catalog.Catalog) string {
	return fmt.Sprintf("compiled in: %s. To add a plugin, list it in plugins.yaml and rebuild (`make build`)",
		strings.Join(r.Names(), ", "))
}
