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

	decode := func(data []byte, host *hostDoc) error {
		*host = hostDoc{Server: serve.DefaultConfig(), Store: store.DefaultRedisConfig(), Milter: milter.DefaultConfig(), Admin: admin.DefaultConfig(), Log: obslog.DefaultConfig()}
		return toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(host)
	}
	var host hostDoc
	err = decode(data, &host)
	var sm *toml.StrictMissingError
	var unknown []pluginhost.UnknownKey
	switch {
	case errors.As(err, &sm):
		for _, e := range sm.Errors {
			line, col := e.Position()
			unknown = append(unknown, pluginhost.UnknownKey{Key: e.Key(), Line: line, Col: col})
		}
	case err != nil && parses(data): // a syntax error: ParseConfig reported it
		errs = append(errs, pluginhost.TOMLError(file, data, err, func(d []byte) error { return decode(d, new(hostDoc)) }))
		// go-toml stopped at err: the keys it did not reach may be unknown too.
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
	errs = append(errs, pluginhost.TableErrors(file, pos, "server", "server", host.Server.Validate())...)
	errs = append(errs, pluginhost.TableErrors(file, pos, "dns", "dns", host.DNS.Validate())...)
	errs = append(errs, pluginhost.TableErrors(file, pos, "store", "store", host.Store.Validate())...)
	errs = append(errs, pluginhost.TableErrors(file, pos, "admin", "admin", host.Admin.Validate())...)
	errs = append(errs, pluginhost.TableErrors(file, pos, "log", "log", host.Log.Validate())...)
	if pcfg != nil {
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
	errs = append(errs, pluginhost.TableErrors(file, pos, "milter", "milter", host.Milter.Validate())...)
	hasMilter := hasTable(data, "milter")

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	warnings := append(pcfg.Warnings, serverWarnings...)
	if hasMilter {
		warnings = append(warnings, milter.StageWarnings(pcfg)...)
	}
	return &Config{File: file, Plugins: pcfg, DNS: host.DNS, Server: host.Server, Store: host.Store, Milter: host.Milter, HasMilter: hasMilter, Admin: host.Admin, Log: host.Log,
		Warnings: warnings}, nil
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
