package store_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/plugins/greylist"
	"github.com/elemta/elemta/plugins/ratelimit"
)

// storePlugins are the plugins that embed store.Config in their own.
var storePlugins = []struct {
	name     string
	defaults any
	store    func(any) store.Config
}{
	{"greylist", greylist.DefaultConfig(), func(v any) store.Config { return v.(*greylist.Config).Config }},
	{"ratelimit", ratelimit.DefaultConfig(), func(v any) store.Config { return v.(*ratelimit.Config).Config }},
}

// TestEmbeddedConfigDecodes: the store keys sit in the plugin's own table
// and reach the embedded Config; a misspelt one is still an unknown key.
func TestEmbeddedConfigDecodes(t *testing.T) {
	for _, p := range storePlugins {
		t.Run(p.name, func(t *testing.T) {
			cfg, err := pluginhost.ParseConfig("test.toml", []byte("[plugins."+p.name+"]\n"+
				"store = \"redis\"\nredis_addr = \"redis.example:6379\"\nredis_db = 3\nbolt_lock_timeout = \"5s\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			settings, err := cfg.Settings(p.name)
			if err != nil {
				t.Fatal(err)
			}
			got := p.store(settings.Value)
			if got.Store != store.KindRedis || got.RedisAddr != "redis.example:6379" || got.RedisDB != 3 ||
				got.BoltLockTimeout.D().String() != "5s" || got.RedisPrefix != "elemta:"+p.name+":" {
				t.Fatalf("decoded store config: %+v", got)
			}

			_, err = pluginhost.ParseConfig("test.toml", []byte("[plugins."+p.name+"]\nredis_adr = \"x\"\n"))
			if err == nil || !strings.Contains(err.Error(), `unknown key "redis_adr"`) {
				t.Fatalf("misspelt store key: %v, want an unknown key error naming redis_adr", err)
			}
		})
	}
}

// TestREADMEKeys: the first key table of each plugin's README lists exactly
// the keys its config has, the embedded store keys included.
func TestREADMEKeys(t *testing.T) {
	for _, p := range storePlugins {
		t.Run(p.name, func(t *testing.T) {
			b, err := toml.Marshal(p.defaults)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := toml.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)

			readme, err := os.ReadFile("../../plugins/" + p.name + "/README.md")
			if err != nil {
				t.Fatal(err)
			}
			table := regexp.MustCompile("(?s)\n\\| key \\| default \\| meaning \\|\n\\|---\\|---\\|---\\|\n(.*?)\n\n").FindSubmatch(readme)
			if table == nil {
				t.Fatal("no key table in README.md")
			}
			var documented []string
			for _, line := range strings.Split(string(table[1]), "\n") {
				first := strings.Split(line, "|")[1]
				for _, k := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(first, -1) {
					documented = append(documented, k[1])
				}
			}
			slices.Sort(documented)
			if !slices.Equal(keys, documented) {
				t.Fatalf("config keys:\n%v\nREADME keys:\n%v", keys, documented)
			}
		})
	}
}
