// Package config loads Elemta's TOML config file: the [plugins] part through
// pluginhost.ParseConfig, every other top-level table strictly into the
// host's own structs. Errors name the file, line and key, all at once.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/internal/milter"
	"github.com/elemta/elemta/internal/obslog"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/pluginhost"
)

// DefaultFile is the config file looked for in the working directory when
// none is named.
const DefaultFile = "elemta.toml"

// EmbeddedName names the embedded default config in messages.
const EmbeddedName = "(embedded default config)"

//go:embed default.toml
var defaultTOML []byte

// Config is the whole config file.
type Config struct {
	// File is the path it was read from, or EmbeddedName.
	File    string
	Plugins *pluginhost.Config
	// DNS is the [dns] table: the resolver every plugin shares.
	DNS resolver.Config
	// Server is the [server] table: `elemta serve`.
	Server serve.Config
	// Store is the [store] table: the one Redis pool every plugin of the
	// process shares (registry.Host.Redis); no server named, no pool.
	Store store.RedisConfig
	// Milter is the [milter] table: `elemta milter`. HasMilter says the
	// file has one (then config check reports what milter mode cannot run).
	Milter    milter.Config
	HasMilter bool
	// Admin is the [admin] table: metrics, health and the admin API.
	Admin admin.Config
	// Log is the [log] table.
	Log obslog.Config
	// Warnings are problems that do not stop startup.
	Warnings []string
}

// hostDoc holds the top-level tables that belong to the host. [plugins] is
// decoded by the registry; the field only keeps strict decoding from
// calling it unknown.
type hostDoc struct {
	Plugins any               `toml:"plugins"`
	DNS     resolver.Config   `toml:"dns"`
	Server  serve.Config      `toml:"server"`
	Store   store.RedisConfig `toml:"store"`
	Milter  milter.Config     `toml:"milter"`
	Admin   admin.Config      `toml:"admin"`
	Log     obslog.Config     `toml:"log"`
}

// hostTables lists the top-level tables a config file may have.
var hostTables = []string{"plugins", "dns", "server", "store", "milter", "admin", "log"}

// Find returns the config to use: path when given, else ./elemta.toml when
// it exists, else the embedded default.
func Find(path string) (*Config, error) {
	if path != "" {
		return Load(path)
	}
	if _, err := os.Stat(DefaultFile); err == nil {
		return Load(DefaultFile)
	}
	return Default()
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Default returns the embedded default config, restricted to the plugins
// compiled into this binary.
func Default() (*Config, error) {
	data, err := compiledInOnly(defaultTOML)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EmbeddedName, err)
	}
	return Parse(EmbeddedName, data)
}

// DefaultTOML returns the embedded default config as written.
func DefaultTOML() []byte { return bytes.Clone(defaultTOML) }

// compiledInOnly drops from a config the plugins not compiled in: their
// names in plugins.plugins and their [plugins.<name>] tables.
func compiledInOnly(data []byte) ([]byte, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	plugins, _ := doc["plugins"].(map[string]any)
	if plugins == nil {
		return data, nil
	}
	if list, ok := plugins["plugins"].([]any); ok {
		plugins["plugins"] = slices.DeleteFunc(list, func(v any) bool {
			name, _ := v.(string)
			_, ok := pluginhost.Lookup(name)
			return !ok
		})
	}
	for k, v := range plugins {
		if _, isTable := v.(map[string]any); isTable {
			if _, ok := pluginhost.Lookup(k); !ok {
				delete(plugins, k)
			}
		}
	}
	out, err := toml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return out, nil
}

// Parse parses a config document; file names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	var errs []error
	pcfg, err := pluginhost.ParseConfig(file, data)
	if err != nil {
		errs = append(errs, err)
	}

	host := defaultHost()
	err = toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(&host)
	var sm *toml.StrictMissingError
	var unknown []pluginhost.UnknownKey
	failed := map[string]bool{} // tables with a wrong value: not validated
	switch {
	case err != nil && !parses(data): // a syntax error, which ParseConfig reported: nothing to validate
		for _, t := range hostTables {
			failed[t] = true
		}
	case errors.As(err, &sm):
		for _, e := range sm.Errors {
			line, col := e.Position()
			unknown = append(unknown, pluginhost.UnknownKey{Key: e.Key(), Line: line, Col: col})
		}
	case err != nil:
		// go-toml stopped at err: the tables and keys it did not reach
		// may be wrong too.
		var terrs []error
		terrs, failed = decodeTables(file, data, &host)
		if len(terrs) == 0 {
			terrs = []error{pluginhost.TOMLError(file, data, err, nil)}
		}
		errs = append(errs, terrs...)
		unknown = pluginhost.UnknownKeys(data, new(hostDoc))
	}
	for _, k := range unknown {
		if len(k.Key) > 0 && k.Key[0] == "plugins" {
			continue
		}
		if len(k.Key) > 1 && slices.Contains(hostTables, k.Key[0]) {
			errs = append(errs, fmt.Errorf("%s:%d:%d: unknown key %q in [%s]", file, k.Line, k.Col, strings.Join(k.Key[1:], "."), k.Key[0]))
			continue
		}
		errs = append(errs, fmt.Errorf("%s:%d:%d: unknown top-level key %q (this binary knows: [%s])",
			file, k.Line, k.Col, strings.Join(k.Key, "."), strings.Join(hostTables, "], [")))
	}
	serverWarnings := host.Server.ApplyDeprecated()
	pos := pluginhost.KeyPositions(data)
	validate := func(table string, v interface{ Validate() error }) {
		if !failed[table] { // a half-decoded table would say what its file does not
			errs = append(errs, pluginhost.TableErrors(file, pos, table, table, v.Validate())...)
		}
	}
	validate("server", &host.Server)
	validate("dns", &host.DNS)
	validate("store", &host.Store)
	validate("admin", &host.Admin)
	validate("log", &host.Log)
	if pcfg != nil && !failed["log"] {
		for _, name := range slices.Sorted(maps.Keys(host.Log.PluginLevels)) {
			enabled := slices.Contains(pcfg.Plugins, name) // an instance ID
			if !strings.Contains(name, "/") {
				enabled = len(pcfg.Instances(name)) > 0 // a plugin's name: all its instances
			}
			if !enabled {
				errs = append(errs, pluginhost.TableErrors(file, pos, "log", "log", fmt.Errorf("plugin_levels.%s: no such plugin instance is enabled (enabled: %s)", name, strings.Join(pcfg.Plugins, ", ")))...)
			}
		}
	}
	validate("milter", &host.Milter)
	hasMilter := hasTable(data, "milter")

	if len(errs) > 0 {
		return nil, errors.Join(pluginhost.InFileOrder(file, errs...)...)
	}
	warnings := append(pcfg.Warnings, serverWarnings...)
	if hasMilter {
		warnings = append(warnings, milter.StageWarnings(pcfg)...)
	}
	return &Config{File: file, Plugins: pcfg, DNS: host.DNS, Server: host.Server, Store: host.Store, Milter: host.Milter, HasMilter: hasMilter, Admin: host.Admin, Log: host.Log,
		Warnings: warnings}, nil
}

func defaultHost() hostDoc {
	return hostDoc{Server: serve.DefaultConfig(), Store: store.DefaultRedisConfig(), Milter: milter.DefaultConfig(), Admin: admin.DefaultConfig(), Log: obslog.DefaultConfig()}
}

// decodeTables decodes each host table of data on its own into host and
// returns the errors, with the tables that failed. go-toml stops at the
// first wrong value, so one decode of the whole document reports one
// table's first error and leaves the tables after it undecoded.
func decodeTables(file string, data []byte, host *hostDoc) ([]error, map[string]bool) {
	var errs []error
	failed := map[string]bool{}
	hv := reflect.ValueOf(host).Elem()
	defaults := reflect.ValueOf(defaultHost())
	for i := range hv.NumField() {
		f := hv.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "plugins" {
			continue
		}
		docType := reflect.StructOf([]reflect.StructField{{Name: "T", Type: f.Type, Tag: f.Tag}})
		decodeTable := func(d []byte) (reflect.Value, error) {
			doc := reflect.New(docType)
			doc.Elem().Field(0).Set(defaults.Field(i))
			err := toml.NewDecoder(bytes.NewReader(d)).EnableUnmarshalerInterface().Decode(doc.Interface())
			return doc.Elem().Field(0), err
		}
		v, err := decodeTable(data)
		if err != nil {
			errs = append(errs, pluginhost.TOMLError(file, data, err, func(d []byte) error { _, err := decodeTable(d); return err }))
			failed[name] = true
			continue
		}
		hv.Field(i).Set(v)
	}
	return errs, failed
}

// parses reports whether data is a TOML document at all.
func parses(data []byte) bool {
	var doc map[string]any
	return toml.Unmarshal(data, &doc) == nil
}

// hasTable reports whether the document has the top-level table name.
func hasTable(data []byte, name string) bool {
	var doc map[string]any
	if toml.Unmarshal(data, &doc) != nil {
		return false
	}
	_, ok := doc[name].(map[string]any)
	return ok
}
