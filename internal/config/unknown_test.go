package config

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/elemta/elemta/pluginhost"
)

// TestUnknownKeysOnTheHostTypes holds pluginhost.UnknownKeys to go-toml's
// strict mode on the host's own config types (durations, maps, the
// server's nested limits): the default config with a misspelt key in each
// table lists the same keys both ways; and with a wrong value added,
// config check still names every one of them.
func TestUnknownKeysOnTheHostTypes(t *testing.T) {
	doc := string(DefaultTOML()) + `
sppol_dir = "x"
[dns]
timeuot = 2
[store]
redis_adr = "x"
[milter]
lsiten = "x"
[admin]
lisen = "x"
[log]
levle = "info"
[log.plugin_levels]
contentfilter = "debug"
[tls]
cert = "x"
`
	strict := func(data string) []pluginhost.UnknownKey {
		host := defaultHost()
		err := toml.NewDecoder(strings.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(&host)
		var sm *toml.StrictMissingError
		if !errors.As(err, &sm) {
			t.Fatalf("want unknown keys, got %v", err)
		}
		var keys []pluginhost.UnknownKey
		for _, e := range sm.Errors {
			line, col := e.Position()
			keys = append(keys, pluginhost.UnknownKey{Key: e.Key(), Line: line, Col: col})
		}
		return keys
	}
	want := strict(doc)
	var names []string
	for _, k := range want {
		names = append(names, strings.Join(k.Key, "."))
	}
	for _, n := range []string{"server.sppol_dir", "dns.timeuot", "store.redis_adr", "milter.lsiten", "admin.lisen", "log.levle", "tls"} {
		if !slices.Contains(names, n) {
			t.Fatalf("go-toml does not list %s (it lists %v): the document is not what this test means", n, names)
		}
	}
	if got := pluginhost.UnknownKeys([]byte(doc), new(hostDoc)); !slices.EqualFunc(got, want, func(a, b pluginhost.UnknownKey) bool {
		return slices.Equal(a.Key, b.Key) && a.Line == b.Line && a.Col == b.Col
	}) {
		t.Fatalf("UnknownKeys:\n%v\ngo-toml:\n%v", got, want)
	}

	// A wrong value in [server], before its misspelt key: config check
	// still names every misspelt key, and the wrong value.
	bad := strings.Replace(doc, "[server]\n", "[server]\nmax_connections = \"many\"\n", 1)
	_, err := Parse("c.toml", []byte(bad))
	if err == nil {
		t.Fatal("Parse accepts a wrong value")
	}
	for _, n := range []string{`"sppol_dir" in [server]`, `"timeuot" in [dns]`, `"redis_adr" in [store]`, `"lsiten" in [milter]`,
		`"lisen" in [admin]`, `"levle" in [log]`, `unknown top-level key "tls"`, "server.max_connections: cannot decode"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("config check does not say %s:\n%v", n, err)
		}
	}
	if bytes.Contains([]byte(err.Error()), []byte("plugin_levels")) {
		t.Errorf("a map's keys are not unknown: %v", err)
	}
}
