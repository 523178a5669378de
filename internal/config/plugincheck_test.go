package config_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/plugins/arc"
	"github.com/elemta/elemta/plugins/authres"
	"github.com/elemta/elemta/plugins/clamav"
	"github.com/elemta/elemta/plugins/contentfilter"
	"github.com/elemta/elemta/plugins/dkim"
	"github.com/elemta/elemta/plugins/dmarc"
	"github.com/elemta/elemta/plugins/greylist"
	"github.com/elemta/elemta/plugins/ratelimit"
	"github.com/elemta/elemta/plugins/rspamd"
	"github.com/elemta/elemta/plugins/spf"
	"github.com/elemta/elemta/registry"
)

// constructor builds a plugin from a *C of its Module, as the Manager does.
type constructor func(cfg any, host registry.Host) (any, error)

func ctor[C any, P any](newFn func(C, registry.Host) (P, error)) constructor {
	return func(cfg any, host registry.Host) (any, error) { return newFn(*cfg.(*C), host) }
}

// builtins are the plugins whose configs this file checks: every package
// under plugins/. (examples/subjectguard and examples/myantivirus check
// nothing of their config: every value they decode is valid.)
var builtins = map[string]constructor{
	"arc":           ctor(arc.New),
	"authres":       ctor(authres.New),
	"clamav":        ctor(clamav.New),
	"contentfilter": ctor(contentfilter.New),
	"dkim":          ctor(dkim.New),
	"dmarc":         ctor(dmarc.New),
	"greylist":      ctor(greylist.New),
	"ratelimit":     ctor(ratelimit.New),
	"rspamd":        ctor(rspamd.New),
	"spf":           ctor(spf.New),
}

func testHost(t *testing.T) registry.Host {
	return registry.Host{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: registry.SystemClock{},
		Hostname: "mx.test", DataDir: t.TempDir()}
}

// build decodes doc's [plugins.<name>] table onto the plugin's defaults
// WITHOUT the registry's checks (no strict keys, no Validate) and calls the
// plugin's New: what starting the plugin would do with the file if parsing
// did not check it. A value go-toml cannot decode is an error here too.
func build(t *testing.T, name string, doc []byte) error {
	t.Helper()
	def, ok := pluginhost.DefaultConfig(name)
	if !ok {
		t.Fatalf("plugin %s is not compiled in", name)
	}
	v := reflect.ValueOf(def).Elem()
	inner := reflect.StructOf([]reflect.StructField{{Name: "X", Type: v.Type(), Tag: reflect.StructTag(`toml:"` + name + `"`)}})
	outer := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "Plugins", Type: inner, Tag: `toml:"plugins"`}}))
	outer.Elem().Field(0).Field(0).Set(v)
	if err := toml.NewDecoder(bytes.NewReader(doc)).EnableUnmarshalerInterface().Decode(outer.Interface()); err != nil {
		return err
	}
	v.Set(outer.Elem().Field(0).Field(0))
	p, err := builtins[name](def, testHost(t))
	if c, ok := p.(registry.Closer); ok && err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return err
}

// TestPluginConfigChecks is the table of every built-in plugin's invalid
// values: `elemta config check` (config.Parse) must refuse each, with the
// file and the plugin's message naming the key, and each is one that New
// refuses too, so parsing is where it is caught.
//
// Values that do not decode are positioned (file:line:col: key). Values a
// plugin's Config.Validate refuses are reported by the registry as
// "file:line:col: [plugins.<name>]: <message>", one line each, at the key
// the message starts with (or the table of it).
func TestPluginConfigChecks(t *testing.T) {
	tests := []struct {
		plugin, body string
		want         string // the whole error; "...:" prefixes are file:line:col
	}{
		// spf
		{"spf", "lookup_limit = 99", "plugin.toml:5:1: [plugins.spf]: lookup_limit = 99: must be between 1 and 10 (RFC 7208 §4.6.4)"},
		{"spf", "lookup_limit = 11", "plugin.toml:5:1: [plugins.spf]: lookup_limit = 11: must be between 1 and 10 (RFC 7208 §4.6.4)"},
		{"spf", "lookup_limit = 0", "plugin.toml:5:1: [plugins.spf]: lookup_limit = 0: must be between 1 and 10 (RFC 7208 §4.6.4)"},
		{"spf", "void_lookup_limit = 11", "plugin.toml:5:1: [plugins.spf]: void_lookup_limit = 11: must be between 0 and 10"},
		{"spf", "void_lookup_limit = -1", "plugin.toml:5:1: [plugins.spf]: void_lookup_limit = -1: must be between 0 and 10"},
		{"spf", `on_fail = "bounce"`, `plugin.toml:5:11: plugins.spf.on_fail: unknown action "bounce" (valid: accept, quarantine, tempfail, reject)`},

		// clamav
		// a key of the plugin's and every plugin's: one error, not two
		{"clamav", `timeout = "soon"`, `plugin.toml:5:11: plugins.clamav.timeout: invalid duration "soon": want seconds (30) or a duration string ("1m30s")`},
		{"clamav", "chunk_size = 1", "plugin.toml:5:1: [plugins.clamav]: chunk_size = 1: must be from 1024 to 16777216 bytes"},
		{"clamav", "chunk_size = 1023", "plugin.toml:5:1: [plugins.clamav]: chunk_size = 1023: must be from 1024 to 16777216 bytes"},
		{"clamav", "chunk_size = 16777217", "plugin.toml:5:1: [plugins.clamav]: chunk_size = 16777217: must be from 1024 to 16777216 bytes"},
		{"clamav", "max_size = 0", "plugin.toml:5:1: [plugins.clamav]: max_size = 0: must be from 1 to 4294967295 bytes"},
		{"clamav", "max_size = 4294967296", "plugin.toml:5:1: [plugins.clamav]: max_size = 4294967296: must be from 1 to 4294967295 bytes"},
		{"clamav", `socket = "clamd"`, `plugin.toml:5:1: [plugins.clamav]: socket: clamd address "clamd": want a unix socket path or host:port: address clamd: missing port in address`},
		{"clamav", `servers = ["/run/clamd.ctl", "127.0.0.1:0"]`, `plugin.toml:5:1: [plugins.clamav]: servers[1]: clamd address "127.0.0.1:0": want host:port with a port from 1 to 65535`},
		{"clamav", "connect_timeout = 0", "plugin.toml:5:1: [plugins.clamav]: connect_timeout must be positive"},
		{"clamav", "max_reply_size = 63", "plugin.toml:5:1: [plugins.clamav]: max_reply_size = 63: must be at least 64 bytes"},
		{"clamav", "max_idle_conns = -1", "plugin.toml:5:1: [plugins.clamav]: max_idle_conns = -1: must not be negative"},
		{"clamav", "idle_timeout = 0", "plugin.toml:5:1: [plugins.clamav]: idle_timeout must be positive when max_idle_conns > 0"},
		{"clamav", "cache_size = -1", "plugin.toml:5:1: [plugins.clamav]: cache_size = -1: must not be negative"},
		{"clamav", `on_size_limit = "drop"`, `plugin.toml:5:1: [plugins.clamav]: on_size_limit: unknown action "drop" (valid: accept, quarantine, tempfail, reject) (or "error")`},
		{"clamav", `infected_action = "delete"`, `plugin.toml:5:19: plugins.clamav.infected_action: unknown action "delete" (valid: accept, quarantine, tempfail, reject)`},

		// rspamd
		{"rspamd", `url = "rspamd:11333"`, `plugin.toml:5:1: [plugins.rspamd]: url = "rspamd:11333": want http://host:port`},
		{"rspamd", "connect_timeout = 0", "plugin.toml:5:1: [plugins.rspamd]: connect_timeout must be positive"},
		{"rspamd", "max_size = 0", "plugin.toml:5:1: [plugins.rspamd]: max_size = 0: must be at least 1 byte"},
		{"rspamd", "max_reply_size = 1023", "plugin.toml:5:1: [plugins.rspamd]: max_reply_size = 1023: must be at least 1024 bytes"},
		{"rspamd", "max_reply_lists_size = -1", "plugin.toml:5:1: [plugins.rspamd]: max_reply_lists_size = -1: must be at least 0 bytes"},
		{"rspamd", "max_idle_conns = -1", "plugin.toml:5:1: [plugins.rspamd]: max_idle_conns = -1: must not be negative"},
		{"rspamd", "idle_timeout = 0", "plugin.toml:5:1: [plugins.rspamd]: idle_timeout must be positive when max_idle_conns > 0"},
		{"rspamd", `on_size_limit = "drop"`, `plugin.toml:5:1: [plugins.rspamd]: on_size_limit: unknown action "drop" (valid: accept, quarantine, tempfail, reject) (or "error")`},
		{"rspamd", `actions = { "spam" = "reject" }`, `plugin.toml:5:1: [plugins.rspamd]: actions: unknown rspamd action "spam" (known: add header, greylist, no action, reject, rewrite subject, soft reject)`},

		// authres
		{"authres", `authserv_id = "mx example"`, `plugin.toml:5:1: [plugins.authres]: authserv_id = "mx example": must be a single token (no spaces, ';', parentheses, quotes or backslashes)`},

		// arc
		{"arc", "max_instances = 0", "plugin.toml:5:1: [plugins.arc]: max_instances = 0: must be between 1 and 50 (RFC 8617 §4.2.1)"},
		{"arc", "max_instances = 51", "plugin.toml:5:1: [plugins.arc]: max_instances = 51: must be between 1 and 50 (RFC 8617 §4.2.1)"},
		{"arc", `domain = "example.org"`, "plugin.toml:5:1: [plugins.arc]: domain, selector and private_key go together: set all three to seal, or none"},
		{"arc", `domain = "exa mple.org"` + "\nselector = \"s\"\nprivate_key = \"/k\"", `plugin.toml:5:1: [plugins.arc]: domain = "exa mple.org": not a domain name (letters, digits, '-' and '_' in dot-separated labels)`},
		{"arc", `domain = "example.org"` + "\nselector = \"s;x=1\"\nprivate_key = \"/k\"", `plugin.toml:6:1: [plugins.arc]: selector = "s;x=1": not a selector (letters, digits, '-' and '_' in dot-separated labels)`},
		{"arc", `seal_for = "some"`, `plugin.toml:5:1: [plugins.arc]: seal_for = "some": want "all", "chained" or "unauthenticated"`},
		{"arc", `headers = ["to"]`, `plugin.toml:5:1: [plugins.arc]: headers must include "from"`},
		{"arc", `headers = ["from", "ARC-Seal"]`, `plugin.toml:5:1: [plugins.arc]: headers: "ARC-Seal" cannot be signed by an ARC-Message-Signature`},
		{"arc", `authserv_id = "mx;x"`, `plugin.toml:5:1: [plugins.arc]: authserv_id = "mx;x": must be a single token (no spaces, ';', parentheses, quotes or backslashes)`},

		// dkim
		{"dkim", "max_signatures = 0", "plugin.toml:5:1: [plugins.dkim]: max_signatures = 0: must be between 1 and 100"},
		{"dkim", "max_signatures = 101", "plugin.toml:5:1: [plugins.dkim]: max_signatures = 101: must be between 1 and 100"},
		{"dkim", `canonicalization = "loose/simple"`, `plugin.toml:5:1: [plugins.dkim]: canonicalization = "loose/simple": want "header/body", each relaxed or simple`},
		{"dkim", `headers = ["to"]`, `plugin.toml:5:1: [plugins.dkim]: headers must include "from" (RFC 6376 §5.4)`},
		{"dkim", `oversign_headers = ["x y"]`, `plugin.toml:5:1: [plugins.dkim]: oversign_headers: "x y" is not a header field name`},
		{"dkim", `selector = "s"`, "plugin.toml:5:1: [plugins.dkim]: selector and private_key go together: set both for a default signing key, or neither"},
		{"dkim", `selector = "s 1"` + "\nprivate_key = \"/k\"", `plugin.toml:5:1: [plugins.dkim]: selector = "s 1": not a selector (letters, digits, '-' and '_' in dot-separated labels)`},
		{"dkim", `domain = "example.com"`, "plugin.toml:5:1: [plugins.dkim]: domain is set but there is no default key (selector, private_key)"},
		{"dkim", `trusted_networks = ["10.0.0.1"]`, `plugin.toml:5:1: [plugins.dkim]: trusted_networks: netip.ParsePrefix("10.0.0.1"): no '/'`},
		{"dkim", "[plugins.dkim.domains.\"Example.com\"]\nselector = \"s\"\nprivate_key = \"/k\"", `plugin.toml:5:2: [plugins.dkim]: domains."Example.com": not a lowercase domain name`},
		{"dkim", "[plugins.dkim.domains.\"example.com\"]\nselector = \"s\"", `plugin.toml:5:2: [plugins.dkim]: domains."example.com": selector and private_key are required`},
		{"dkim", "[plugins.dkim.domains.\"example.com\"]\nselector = \"a/b\"\nprivate_key = \"/k\"", `plugin.toml:6:1: [plugins.dkim]: domains."example.com".selector = "a/b": not a selector (letters, digits, '-' and '_' in dot-separated labels)`},
		{"dkim", `expiration = -1`, "plugin.toml:5:14: plugins.dkim.expiration: invalid duration -1s: must not be negative"},

		// dmarc
		{"dmarc", "max_from_domains = 0", "plugin.toml:5:1: [plugins.dmarc]: max_from_domains = 0: must be between 1 and 100"},
		{"dmarc", "max_from_domains = 101", "plugin.toml:5:1: [plugins.dmarc]: max_from_domains = 101: must be between 1 and 100"},
		{"dmarc", `on_temperror = "reject"`, `plugin.toml:5:1: [plugins.dmarc]: on_temperror = "reject": must be accept or tempfail`},
		{"dmarc", `on_unparseable_from = "tempfail"`, `plugin.toml:5:1: [plugins.dmarc]: on_unparseable_from = "tempfail": must be accept, quarantine or reject (the From will not parse later either)`},
		{"dmarc", `on_multiple_from = "first"`, `plugin.toml:5:1: [plugins.dmarc]: on_multiple_from = "first": must be strictest, quarantine or reject`},

		// contentfilter
		{"contentfilter", "max_message_size = -1", "plugin.toml:5:1: [plugins.contentfilter]: max_message_size = -1: must be 0 (no limit) or a size in bytes"},
		{"contentfilter", "max_parts = 0", "plugin.toml:5:1: [plugins.contentfilter]: max_parts = 0: must be at least 1"},
		{"contentfilter", "max_depth = 0", "plugin.toml:5:1: [plugins.contentfilter]: max_depth = 0: must be at least 1"},
		{"contentfilter", "max_decoded_bytes = 0", "plugin.toml:5:1: [plugins.contentfilter]: max_decoded_bytes = 0: must be at least 1"},
		{"contentfilter", `header_name = "Bad Name"`, `plugin.toml:5:1: [plugins.contentfilter]: header_name: "Bad Name" is not a header field name (printable ASCII without spaces or ':')`},
		{"contentfilter", `max_message_size_action = "accept"`, `plugin.toml:5:1: [plugins.contentfilter]: max_message_size_action: unknown action "accept" (valid: add_header, quarantine, tempfail, reject)`},
		{"contentfilter", `limit_action = "nope"`, `plugin.toml:5:1: [plugins.contentfilter]: limit_action: unknown action "nope" (valid: accept, add_header, quarantine, tempfail, reject)`},
		{"contentfilter", "[[plugins.contentfilter.body_rules]]\nname = \"casino\"\npattern = \"(casino\"", "plugin.toml:5:3: [plugins.contentfilter]: body_rules[0] (rule \"casino\"): pattern \"(casino\": error parsing regexp: missing closing ): `(casino`"},
		{"contentfilter", "[[plugins.contentfilter.header_rules]]\nname = \"h\"\npattern = \"x\"", `plugin.toml:5:3: [plugins.contentfilter]: header_rules[0] (rule "h"): header is required: the field name the pattern is matched against`},
		{"contentfilter", "[[plugins.contentfilter.attachment_rules]]\nname = \"a\"", `plugin.toml:5:3: [plugins.contentfilter]: attachment_rules[0] (rule "a"): give extensions, mime_types or both`},
		{"contentfilter", "[[plugins.contentfilter.body_rules]]\nname = \"a\"\npattern = \"x\"\n[[plugins.contentfilter.body_rules]]\nname = \"a\"\npattern = \"y\"", `plugin.toml:5:3: [plugins.contentfilter]: body_rules[1] (rule "a"): rule name "a" is also used by body_rules[0]; names must be unique`},
		{"contentfilter", "[[plugins.contentfilter.body_rules]]\nname = \"a\"\npattern = \"x\"\nadd_header = \"X-A: 1\"", `plugin.toml:5:3: [plugins.contentfilter]: body_rules[0] (rule "a"): add_header is only used with action = "add_header"`},

		// greylist
		{"greylist", "delay = 0", "plugin.toml:5:1: [plugins.greylist]: delay: must be positive"},
		{"greylist", `retry_window = "1m"`, "plugin.toml:5:1: [plugins.greylist]: retry_window: 1m0s is shorter than delay (5m0s): no retry could ever pass"},
		{"greylist", "expire = 0", "plugin.toml:5:1: [plugins.greylist]: expire: must be positive"},
		{"greylist", "ipv4_prefix = 7", "plugin.toml:5:1: [plugins.greylist]: ipv4_prefix: 7: want 8 to 32"},
		{"greylist", "ipv4_prefix = 33", "plugin.toml:5:1: [plugins.greylist]: ipv4_prefix: 33: want 8 to 32"},
		{"greylist", "ipv6_prefix = 15", "plugin.toml:5:1: [plugins.greylist]: ipv6_prefix: 15: want 16 to 128"},
		{"greylist", "ipv6_prefix = 129", "plugin.toml:5:1: [plugins.greylist]: ipv6_prefix: 129: want 16 to 128"},
		{"greylist", "auto_allow_after = -1", "plugin.toml:5:1: [plugins.greylist]: auto_allow_after: -1: must not be negative (0 turns auto-allow off)"},
		{"greylist", `subaddress_separators = ""`, "plugin.toml:5:1: [plugins.greylist]: subaddress_separators: empty while strip_subaddress is on"},
		{"greylist", `exempt_networks = ["nope"]`, `plugin.toml:5:1: [plugins.greylist]: exempt_networks: "nope" is neither a CIDR nor an address`},
		{"greylist", `exempt_recipient_domains = ["a@b"]`, `plugin.toml:5:1: [plugins.greylist]: exempt_recipient_domains: "a@b" is not a domain`},
		{"greylist", `store = "memcached"`, `plugin.toml:5:1: [plugins.greylist]: store: store: "memcached": want "bolt" or "redis"`},
		{"greylist", "store = \"redis\"\nredis_addr = \"redis.example\"", `plugin.toml:5:1: [plugins.greylist]: store: redis_addr: "redis.example": want host:port: address redis.example: missing port in address`},
		{"greylist", "bolt_sweep_interval = 0", "plugin.toml:5:1: [plugins.greylist]: store: bolt_sweep_interval: must be positive"},

		// ratelimit
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 0", `window = "1m"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).count: 0: must be positive"},
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 1", `window = "0s"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).window: must be positive"},
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 1000001", `window = "1s"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).window: 1000001 per 1s is more than one event per microsecond"},
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 1", `window = "1m"`, "burst = -1"), "plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).burst: -1: must not be negative"},
		{"ratelimit", limit(`name = "x"`, `key = []`, "count = 1", `window = "1m"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).key: empty: name at least one of ip, network, helo, sender, sender_domain, user, rcpt, rcpt_domain"},
		{"ratelimit", limit(`name = "x"`, `key = ["mailbox"]`, "count = 1", `window = "1m"`), `plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).key: unknown part "mailbox" (valid: ip, network, helo, sender, sender_domain, user, rcpt, rcpt_domain)`},
		{"ratelimit", limit(`name = "x"`, `key = ["rcpt"]`, "count = 1", `window = "1m"`, `on = "mail"`), `plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).on: "mail": the key needs what is only known at rcpt`},
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 1", `window = "1m"`, `on = "data"`), `plugin.toml:5:3: [plugins.ratelimit]: limits[0] (x).on: "data": want connect, mail or rcpt`},
		{"ratelimit", limit(`name = ""`, `key = ["ip"]`, "count = 1", `window = "1m"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[0].name: empty"},
		{"ratelimit", limit(`name = "x"`, `key = ["ip"]`, "count = 1", `window = "1m"`) + "\n" + limit(`name = "x"`, `key = ["ip"]`, "count = 2", `window = "1m"`), "plugin.toml:5:3: [plugins.ratelimit]: limits[1] (x).name: used by two limits"},
		{"ratelimit", "max_sessions_per_client = -1", "plugin.toml:5:1: [plugins.ratelimit]: max_sessions_per_client: -1: must not be negative (0 turns it off)"},
		{"ratelimit", `session_key = "user"`, `plugin.toml:5:1: [plugins.ratelimit]: session_key: "user": want ip or network`},
		{"ratelimit", "session_lease = 0", "plugin.toml:5:1: [plugins.ratelimit]: session_lease: must be positive"},
		{"ratelimit", "ipv4_prefix = 33", "plugin.toml:5:1: [plugins.ratelimit]: ipv4_prefix: 33: want 8 to 32"},
		{"ratelimit", "ipv6_prefix = 15", "plugin.toml:5:1: [plugins.ratelimit]: ipv6_prefix: 15: want 16 to 128"},
		{"ratelimit", `exempt_networks = ["10.0.0.0/33"]`, `plugin.toml:5:1: [plugins.ratelimit]: exempt_networks: "10.0.0.0/33" is neither a CIDR nor an address`},
		{"ratelimit", "bolt_lock_timeout = 0", "plugin.toml:5:1: [plugins.ratelimit]: store: bolt_lock_timeout: must be positive"},
		{"ratelimit", "store = \"redis\"\nredis_addr = \"127.0.0.1:6379\"\nredis_prefix = \"a{b}:\"", `plugin.toml:5:1: [plugins.ratelimit]: store: redis_prefix: "a{b}:": must not contain { or } (the store adds hash tags)`},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.plugin] = true
		t.Run(tt.plugin+"/"+strings.ReplaceAll(tt.body, "\n", " "), func(t *testing.T) {
			doc := []byte("[plugins]\nplugins = [\"" + tt.plugin + "\"]\n\n[plugins." + tt.plugin + "]\n" + tt.body + "\n")
			_, err := config.Parse("plugin.toml", doc)
			if err == nil {
				t.Fatalf("config check accepts\n%s", doc)
			}
			if err.Error() != tt.want {
				t.Errorf("config check says\n%s\nwant\n%s", err, tt.want)
			}
			// The registry names the plugin ([plugins.<name>]); the
			// plugin's message does not name it again.
			if strings.Contains(err.Error(), "]: "+tt.plugin+": ") {
				t.Errorf("message names the plugin again: %s", err)
			}
			// Parsing is where it is caught: built without the registry's
			// checks, the same table fails in New.
			if err := build(t, tt.plugin, doc); err == nil {
				t.Errorf("New accepts what config check refuses: the check is stricter than the plugin")
			}
		})
	}
	for name := range builtins {
		if !covered[name] {
			t.Errorf("plugin %s has no invalid value in this table", name)
		}
	}
}

// limit is a [[plugins.ratelimit.limits]] table of the given lines.
func limit(lines ...string) string {
	return "[[plugins.ratelimit.limits]]\n" + strings.Join(lines, "\n")
}

// TestPluginValidConfigs: the defaults of every built-in plugin, every
// ```toml example of its README, and the limits at their boundaries pass
// config check and New (which must not refuse what parsing accepted).
func TestPluginValidConfigs(t *testing.T) {
	type example struct{ name, doc string }
	var examples []example
	for name := range builtins {
		examples = append(examples, example{name + "/defaults", "[plugins]\nplugins = [\"" + name + "\"]\n"})
	}
	readmes, err := filepath.Glob("../../plugins/*/README.md")
	if err != nil || len(readmes) < 10 {
		t.Fatalf("plugin READMEs: %v, %v", readmes, err)
	}
	block := regexp.MustCompile("(?s)```toml\n(.*?)```")
	for _, f := range readmes {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := block.FindAllSubmatch(data, -1)
		if len(blocks) == 0 {
			t.Errorf("%s has no ```toml example", f)
		}
		for i, b := range blocks {
			examples = append(examples, example{filepath.Base(filepath.Dir(f)) + "/README example " + string(rune('1'+i)), string(b[1])})
		}
	}
	boundaries := map[string][]string{
		"spf":           {"lookup_limit = 1", "lookup_limit = 10", "void_lookup_limit = 0", "void_lookup_limit = 10"},
		"clamav":        {"chunk_size = 1024", "chunk_size = 16777216", "max_size = 1", "max_size = 4294967295", "max_reply_size = 64", "max_idle_conns = 0\nidle_timeout = 0", "cache_size = 0", `on_size_limit = "error"`, `servers = ["unix:/run/clamd.ctl", "tcp://127.0.0.1:3310", "[::1]:65535"]`},
		"rspamd":        {"max_size = 1", "max_reply_size = 1024", "max_reply_lists_size = 0", "max_idle_conns = 0\nidle_timeout = 0", `url = "https://rspamd.example:11334"`, `actions = { "Soft Reject" = "accept" }`},
		"arc":           {"max_instances = 1", "max_instances = 50", `domain = "example.org"` + "\nselector = \"arc_2026-a\"\nprivate_key = \"/k\"", `seal_for = "chained"`},
		"dkim":          {"max_signatures = 1", "max_signatures = 100", `canonicalization = "simple"`, `trusted_networks = ["10.0.0.0/8", "2001:db8::/32"]`, "sign = false"},
		"dmarc":         {"max_from_domains = 1", "max_from_domains = 100", `on_temperror = "accept"`, `on_unparseable_from = "quarantine"`, `on_multiple_from = "reject"`},
		"contentfilter": {"max_message_size = 0", "max_parts = 1", "max_depth = 1", "max_decoded_bytes = 1"},
		"greylist":      {"ipv4_prefix = 8", "ipv4_prefix = 32", "ipv6_prefix = 16", "ipv6_prefix = 128", "auto_allow_after = 0", `retry_window = "5m"`, "strip_subaddress = false\nsubaddress_separators = \"\""},
		"ratelimit":     {"max_sessions_per_client = 0", "limits = []", limit(`name = "x"`, `key = ["ip"]`, "count = 1000000", `window = "1s"`, "burst = 0"), limit(`name = "x"`, `key = ["rcpt_domain"]`, "count = 1", `window = "1m"`, `on = "rcpt"`)},
		"authres":       {`authserv_id = "mx.example.org"`},
	}
	for name, bodies := range boundaries {
		for _, b := range bodies {
			examples = append(examples, example{name + "/" + strings.ReplaceAll(b, "\n", " "),
				"[plugins]\nplugins = [\"" + name + "\"]\n\n[plugins." + name + "]\n" + b + "\n"})
		}
	}
	slices.SortFunc(examples, func(a, b example) int { return strings.Compare(a.name, b.name) })
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			cfg, err := config.Parse("example.toml", []byte(ex.doc))
			if err != nil {
				t.Fatalf("config check refuses\n%s\n%v", ex.doc, err)
			}
			for name, newFn := range builtins {
				settings, err := cfg.Plugins.Settings(name)
				if err != nil {
					t.Fatal(err)
				}
				p, err := newFn(settings.Value, testHost(t))
				if err != nil {
					t.Fatalf("config check accepts, New refuses plugin %s: %v", name, err)
				}
				if c, ok := p.(registry.Closer); ok {
					_ = c.Close()
				}
			}
		})
	}
}
