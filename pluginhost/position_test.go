package pluginhost

import (
	"errors"
	"fmt"
	"testing"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/stretchr/testify/assert"
)

// TestKeyPositions pins where KeyPositions finds each key and table header
// (the start of the name's first part), and which it leaves out: keys
// inside inline tables, later duplicates, anything after a syntax error.
func TestKeyPositions(t *testing.T) {
	at := func(off, line, col int) unstable.Position {
		return unstable.Position{Offset: off, Line: line, Column: col}
	}
	tests := []struct {
		name, toml string
		want       Positions
	}{
		{"keys and a header", "top = 1\n[server]\nmax_errors = 3\n  spool_dir = \"x\"\n\tport = 2\n", Positions{
			"top": at(0, 1, 1), "server": at(9, 2, 2), "server.max_errors": at(17, 3, 1),
			"server.spool_dir": at(34, 4, 3), "server.port": at(51, 5, 2),
		}},
		{"dotted keys", "[log]\nplugin_levels.spf = \"debug\"\na . b . c = 1\n", Positions{
			"log": at(1, 1, 2), "log.plugin_levels.spf": at(6, 2, 1), "log.a.b.c": at(34, 3, 1),
		}},
		{"inline table: only its key", "[server]\nlimits = {a = 1, b = {c = 2}}\n", Positions{
			"server": at(1, 1, 2), "server.limits": at(9, 2, 1),
		}},
		{"array of tables: the first entry", "[[plugins.ratelimit.limits]]\nname = \"a\"\ncount = 1\n[[plugins.ratelimit.limits]]\nname = \"b\"\nwindow = 2\n", Positions{
			"plugins.ratelimit.limits": at(2, 1, 3), "plugins.ratelimit.limits.name": at(29, 2, 1),
			"plugins.ratelimit.limits.count": at(40, 3, 1), "plugins.ratelimit.limits.window": at(90, 6, 1),
		}},
		{"quoted names, unquoted", "[plugins.\"spf/strict\"]\nlookup_limit = 3\n[ plugins . 'x.y' ]\n\"a.b\".c = 1\n", Positions{
			"plugins.spf/strict": at(1, 1, 2), "plugins.spf/strict.lookup_limit": at(23, 2, 1),
			"plugins.x.y": at(42, 3, 3), "plugins.x.y.a.b.c": at(60, 4, 1),
		}},
		{"duplicate key: the first", "[dns]\ntimeout = 1\ntimeout = 2\n", Positions{
			"dns": at(1, 1, 2), "dns.timeout": at(6, 2, 1),
		}},
		{"up to a syntax error", "[dns]\ntimeout = 1\n[dns\nservers = []\n", Positions{
			"dns": at(1, 1, 2), "dns.timeout": at(6, 2, 1),
		}},
		{"multi-line values, a table again", "[a]\nx = [\n  1,\n  2,\n]\ny = \"\"\"\nline\n\"\"\"\nz = 1\n[a.b]\nw = 1\n[a]\nv = 1\n", Positions{
			"a": at(1, 1, 2), "a.x": at(4, 2, 1), "a.y": at(22, 6, 1), "a.z": at(39, 9, 1),
			"a.b": at(46, 10, 2), "a.b.w": at(51, 11, 1), "a.v": at(61, 13, 1),
		}},
		{"non-ASCII keys", "\"ké\" = 1\n[t]\n\"é\" = 2\n", Positions{
			"ké": at(0, 1, 1), "t": at(11, 2, 2), "t.é": at(14, 3, 1),
		}},
		{"CRLF", "a = 1\r\nb = 2\r\n[c]\r\nd = 3\r\n", Positions{
			"a": at(0, 1, 1), "b": at(7, 2, 1), "c": at(15, 3, 2), "c.d": at(19, 4, 1),
		}},
		{"comments", "# comment\n\n[server] # c\nmax_errors = 1 # c\n", Positions{
			"server": at(12, 3, 2), "server.max_errors": at(24, 4, 1),
		}},
		{"empty", "", Positions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, KeyPositions([]byte(tt.toml)))
		})
	}
}

// TestPositionedIn pins how an error of a custom decoder (a
// catalog.ValueError, which go-toml reports without a position) is placed:
// at the value of the first key under prefix whose raw value is the one
// that failed, else at the file (and prefix).
func TestPositionedIn(t *testing.T) {
	tests := []struct {
		name, toml, prefix, raw string
		want                    string
	}{
		{"top-level key", "timeout = \"soon\"\n", "", `"soon"`, "f.toml:1:11: timeout: bad"},
		{"in a table", "[dns]\ntimeout = \"soon\"\n", "", `"soon"`, "f.toml:2:11: dns.timeout: bad"},
		{"raw with spaces", "[dns]\ntimeout = \"soon\"\n", "", ` "soon" `, "f.toml:2:11: dns.timeout: bad"},
		{"the first equal value", "[plugins.clamav]\nsocket = \"soon\"\ntimeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:2:10: plugins.clamav.socket: bad"},
		{"under prefix only", "[dns]\ntimeout = \"soon\"\n[plugins.clamav]\ntimeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:4:11: plugins.clamav.timeout: bad"},
		{"the prefix itself is not under it", "[plugins]\nclamav = \"soon\"\n[plugins.clamav]\n", "plugins.clamav", `"soon"`, "f.toml: plugins.clamav: bad"},
		{"inside an inline table: not found", "[plugins.clamav]\nsub = {timeout = \"soon\"}\n", "plugins.clamav", `"soon"`, "f.toml: plugins.clamav: bad"},
		{"inside a top-level inline table: not found", "dns = {timeout = \"soon\"}\n", "", `"soon"`, "f.toml: bad"},
		{"top-level dotted key", "dns.timeout = \"soon\"\n", "", `"soon"`, "f.toml:1:15: dns.timeout: bad"},
		{"dotted key in a table", "[plugins]\nclamav.timeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:2:18: plugins.clamav.timeout: bad"},
		{"array of tables entry", "[[plugins.x.rules]]\nwindow = 1\n[[plugins.x.rules]]\nwindow = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:4:10: plugins.x.rules.window: bad"},
		{"quoted table name", "[plugins.\"x/y\"]\ntimeout = \"soon\"\n", "plugins.x/y", `"soon"`, "f.toml:2:11: plugins.x/y.timeout: bad"},
		{"quoted key with a dot", "[plugins.x]\n\"a.b\" = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:2:9: plugins.x.a.b: bad"},
		{"non-ASCII key", "[plugins.x]\n\"ké\" = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:2:9: plugins.x.ké: bad"},
		{"inside an array: not found", "[plugins.x]\nstages = [\"soon\"]\n", "plugins.x", `"soon"`, "f.toml: plugins.x: bad"},
		{"literal string", "[plugins.x]\ntimeout = 'soon'\n", "plugins.x", `'soon'`, "f.toml:2:11: plugins.x.timeout: bad"},
		{"multi-line string", "[plugins.x]\ntimeout = \"\"\"\nsoon\"\"\"\n", "plugins.x", "\"\"\"\nsoon\"\"\"", "f.toml:2:11: plugins.x.timeout: bad"},
		{"spaces and a comment", "[plugins.x]\n  timeout   =   \"soon\"   # c\n", "plugins.x", `"soon"`, "f.toml:2:17: plugins.x.timeout: bad"},
		{"no such value", "[plugins.x]\ntimeout = 1\n", "plugins.x", `"soon"`, "f.toml: plugins.x: bad"},
		{"up to a syntax error", "[plugins.x]\na = 1; timeout = \"soon\"\n", "plugins.x", `"soon"`, "f.toml: plugins.x: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fmt.Errorf("decode: %w", &catalog.ValueError{Raw: tt.raw, Err: errors.New("bad")})
			assert.Equal(t, tt.want, positionedIn("f.toml", []byte(tt.toml), tt.prefix, err).Error())
		})
	}
	t.Run("not a ValueError", func(t *testing.T) {
		assert.Equal(t, "f.toml: plain", positionedIn("f.toml", []byte("a = 1\n"), "x", errors.New("plain")).Error())
	})
	t.Run("TOMLError", func(t *testing.T) {
		err := &catalog.ValueError{Raw: "1", Err: errors.New("bad")}
		assert.Equal(t, "f.toml:1:5: a: bad", TOMLError("f.toml", []byte("a = 1\n"), err).Error())
	})
}
