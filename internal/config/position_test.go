package config

import (
	"strings"
	"testing"
)

// TestHostTableErrorsReadOnce: every problem of a host table is one line,
// "file:line:col: [table]: message", the table named once, at the key's
// key (at the table's header for a key the file does not set).
func TestHostTableErrorsReadOnce(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string // the error's lines, in order: as the file reads
	}{
		{"server keys", "[server]\nlisten = \"127.0.0.1:2525\"\nmax_errors = -1\nspool_dir = \"\"\n", []string{
			`c.toml:1:2: [server]: soft_error_limit (10) is more than max_errors (-1)`,
			`c.toml:3:1: [server]: max_errors must be positive (got -1)`,
			`c.toml:4:1: [server]: spool_dir is required`,
		}},
		{"no [server] table", "[admin]\nlisten = \"nohost\"\n", []string{
			`c.toml:2:1: [admin]: listen "nohost": address nohost: missing port in address`,
		}},
		{"dns", "[dns]\nservers = [\"ns1.example\"]\n", []string{
			`c.toml:2:1: [dns]: servers: "ns1.example": want an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"): address ns1.example: missing port in address`,
		}},
		{"log", "[log]\nformat = \"xml\"\n", []string{
			`c.toml:2:1: [log]: format "xml": use "text" or "json"`,
		}},
		{"store", "[store]\nredis_addr = \"h\"\n", []string{
			`c.toml:2:1: [store]: redis_addr: "h": want host:port: address h: missing port in address`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte("[plugins]\nplugins = []\n"+tt.toml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			got := strings.Split(err.Error(), "\n")
			// The document starts with two lines of [plugins].
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				file, rest, _ := strings.Cut(w, ":")
				line, rest, _ := strings.Cut(rest, ":")
				n := 0
				for _, c := range line {
					n = n*10 + int(c-'0')
				}
				want[i] = file + ":" + itoa(n+2) + ":" + rest
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}

// TestConfigCheckPositions pins the whole error of documents whose keys
// are written in the less common ways: dotted, in inline tables, in an
// array of tables, quoted, twice.
func TestConfigCheckPositions(t *testing.T) {
	const plugins = "[plugins]\nplugins = [\"contentfilter\"]\n"
	const badDuration = `invalid duration "fast": want seconds (30) or a duration string ("1m30s")`
	tests := []struct {
		name, toml, want string
	}{
		{"top-level dotted key", "log.plugin_levels.nosuch = \"debug\"\n" + plugins,
			`c.toml:1:1: [log]: plugin_levels.nosuch: no such plugin instance is enabled (enabled: contentfilter)`},
		{"dotted key in a table", "[log]\nplugin_levels.nosuch = \"debug\"\n" + plugins,
			`c.toml:2:1: [log]: plugin_levels.nosuch: no such plugin instance is enabled (enabled: contentfilter)`},
		{"inline table in a table", "[log]\nplugin_levels = {nosuch = \"debug\"}\n" + plugins,
			`c.toml:2:1: [log]: plugin_levels.nosuch: no such plugin instance is enabled (enabled: contentfilter)`},
		{"nested inline tables", "log = {plugin_levels = {nosuch = \"debug\"}}\n" + plugins,
			`c.toml:1:1: [log]: plugin_levels.nosuch: no such plugin instance is enabled (enabled: contentfilter)`},
		{"inline table", "dns = {servers = [\"ns1.example\"]}\n" + plugins,
			`c.toml:1:1: [dns]: servers: "ns1.example": want an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"): address ns1.example: missing port in address`},
		{"dotted keys, no header", "server.max_errors = -1\n" + plugins,
			"c.toml:1:1: [server]: max_errors must be positive (got -1)\nc.toml:1:1: [server]: soft_error_limit (10) is more than max_errors (-1)"},
		{"dotted keys, no header, the table's first key", "server.listen = \"127.0.0.1:2525\"\nserver.max_errors = -1\n" + plugins,
			"c.toml:1:1: [server]: soft_error_limit (10) is more than max_errors (-1)\nc.toml:2:1: [server]: max_errors must be positive (got -1)"},
		{"inline table, no header", "server = {max_errors = -1}\n" + plugins,
			"c.toml:1:1: [server]: max_errors must be positive (got -1)\nc.toml:1:1: [server]: soft_error_limit (10) is more than max_errors (-1)"},
		{"quoted key and table", "[\"server\"]\n\"max_errors\" = -1\n" + plugins,
			"c.toml:1:2: [server]: soft_error_limit (10) is more than max_errors (-1)\nc.toml:2:1: [server]: max_errors must be positive (got -1)"},
		{"duplicate key", "[server]\nmax_errors = 1\nmax_errors = 2\n" + plugins,
			"c.toml:3:1: max_errors: key max_errors is already defined"}, // a document with a syntax error is not validated
		{"duplicate table", plugins + "[dns]\nservers = [\"127.0.0.1\"]\n[dns]\ntimeout = 2\n",
			"c.toml:5:2: dns: table dns already exists"},
		{"duration, dotted key", "dns.timeout = \"fast\"\n" + plugins, "c.toml:1:15: dns.timeout: " + badDuration},
		{"duration in an inline table", "dns = {timeout = \"fast\"}\n" + plugins, "c.toml:1:18: dns.timeout: " + badDuration},
		{"the same value before, under another key", plugins + "[milter]\nhostname = \"fast\"\nread_timeout = \"fast\"\n",
			"c.toml:5:16: milter.read_timeout: " + badDuration},
		{"the same value before, in an inline table", "milter = {hostname = \"fast\", read_timeout = \"fast\"}\n" + plugins,
			"c.toml:1:10: milter: " + badDuration},
		{"plugin duration after the same value", "[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nsocket = \"fast\"\nconnect_timeout = \"fast\"\n",
			"c.toml:5:19: plugins.clamav.connect_timeout: " + badDuration},
		{"plugin common duration after the same value", plugins + "[plugins.contentfilter]\nheader_name = \"fast\"\ntimeout = \"fast\"\n",
			"c.toml:5:11: plugins.contentfilter.timeout: " + badDuration},
		{"plugin duration in an array of inline tables", "[plugins]\nplugins = [\"ratelimit\"]\n[plugins.ratelimit]\nlimits = [{name = \"a\", count = 1, window = \"fast\"}]\n",
			"c.toml:4:44: plugins.ratelimit.limits[0].window: " + badDuration},
		{"duration and a table error", plugins + "[server]\nmax_errors = -1\n[milter]\nread_timeout = \"fast\"\n",
			"c.toml:3:2: [server]: soft_error_limit (10) is more than max_errors (-1)\nc.toml:4:1: [server]: max_errors must be positive (got -1)\nc.toml:6:16: milter.read_timeout: " + badDuration},
		{"plugin duration, quoted table", "[plugins]\nplugins = [\"contentfilter/x\"]\n[plugins.\"contentfilter/x\"]\ntimeout = \"fast\"\n",
			"c.toml:4:11: plugins.contentfilter/x.timeout: " + badDuration},
		{"plugin check, quoted table", "[plugins]\nplugins = [\"contentfilter/x\"]\n[plugins.\"contentfilter/x\"]\ntimeout = 0\n",
			`c.toml:4:1: [plugins."contentfilter/x"]: timeout: must be positive`},
		{"second array-of-tables entry", plugins + "[[plugins.contentfilter.body_rules]]\nname = \"a\"\npattern = \"x\"\n[[plugins.contentfilter.body_rules]]\nname = \"b\"\npattern = \"(\"\n",
			"c.toml:3:3: [plugins.contentfilter]: body_rules[1] (rule \"b\"): pattern \"(\": error parsing regexp: missing closing ): `(`"},
		{"array of inline tables", plugins + "[plugins.contentfilter]\nbody_rules = [{name = \"a\", pattern = \"(\"}]\n",
			"c.toml:4:1: [plugins.contentfilter]: body_rules[0] (rule \"a\"): pattern \"(\": error parsing regexp: missing closing ): `(`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
