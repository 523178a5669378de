package pluginhost

import (
	"errors"
	"fmt"
	"testing"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
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
// catalog.ValueError, which go-toml reports bare) is placed: at the value
// that failed, of the key under prefix whose value, or a value inside it,
// is written as the one that failed; when several keys are, the one whose
// cut document fails again; else at the file (and prefix).
func TestPositionedIn(t *testing.T) {
	tests := []struct {
		name, toml, prefix, raw string
		want                    string
	}{
		{"top-level key", "timeout = \"soon\"\n", "", `"soon"`, "f.toml:1:11: timeout: bad"},
		{"in a table", "[dns]\ntimeout = \"soon\"\n", "", `"soon"`, "f.toml:2:11: dns.timeout: bad"},
		{"raw with spaces", "[dns]\ntimeout = \"soon\"\n", "", ` "soon" `, "f.toml:2:11: dns.timeout: bad"},
		{"without decode, the first equal value", "[plugins.clamav]\nsocket = \"soon\"\ntimeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:2:10: plugins.clamav.socket: bad"},
		{"under prefix only", "[dns]\ntimeout = \"soon\"\n[plugins.clamav]\ntimeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:4:11: plugins.clamav.timeout: bad"},
		{"the prefix itself is not under it", "[plugins]\nclamav = \"soon\"\n[plugins.clamav]\n", "plugins.clamav", `"soon"`, "f.toml: plugins.clamav: bad"},
		{"inside an inline table", "[plugins.clamav]\nsub = {timeout = \"soon\"}\n", "plugins.clamav", `"soon"`, "f.toml:2:18: plugins.clamav.sub.timeout: bad"},
		{"inside a top-level inline table", "dns = {timeout = \"soon\"}\n", "", `"soon"`, "f.toml:1:18: dns.timeout: bad"},
		{"inside nested inline tables", "a = {b = {c.d = \"soon\"}}\n", "", `"soon"`, "f.toml:1:17: a.b.c.d: bad"},
		{"an inline table as the value", "[plugins.x]\nt = {a = 1}\n", "plugins.x", `{a = 1}`, "f.toml:2:5: plugins.x.t: bad"},
		{"twice inside one inline table: at its key's value", "[plugins.x]\nsub = {a = \"soon\", b = \"soon\"}\n", "plugins.x", `"soon"`, "f.toml:2:7: plugins.x.sub: bad"},
		{"top-level dotted key", "dns.timeout = \"soon\"\n", "", `"soon"`, "f.toml:1:15: dns.timeout: bad"},
		{"dotted key in a table", "[plugins]\nclamav.timeout = \"soon\"\n", "plugins.clamav", `"soon"`, "f.toml:2:18: plugins.clamav.timeout: bad"},
		{"array of tables entry", "[[plugins.x.rules]]\nwindow = 1\n[[plugins.x.rules]]\nwindow = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:4:10: plugins.x.rules.window: bad"},
		{"quoted table name", "[plugins.\"x/y\"]\ntimeout = \"soon\"\n", "plugins.x/y", `"soon"`, "f.toml:2:11: plugins.x/y.timeout: bad"},
		{"quoted key with a dot", "[plugins.x]\n\"a.b\" = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:2:9: plugins.x.a.b: bad"},
		{"non-ASCII key", "[plugins.x]\n\"ké\" = \"soon\"\n", "plugins.x", `"soon"`, "f.toml:2:9: plugins.x.ké: bad"},
		{"inside an array", "[plugins.x]\nstages = [\"soon\"]\n", "plugins.x", `"soon"`, "f.toml:2:11: plugins.x.stages[0]: bad"},
		{"inside a multi-line array", "[plugins.x]\nstages = [\n  1,\n  \"soon\",\n]\n", "plugins.x", `"soon"`, "f.toml:4:3: plugins.x.stages[1]: bad"},
		{"in an array of inline tables", "[plugins.x]\nrules = [{}, {window = \"soon\"}]\n", "plugins.x", `"soon"`, "f.toml:2:24: plugins.x.rules[1].window: bad"},
		{"in an array in an array", "[plugins.x]\nt = [[1], [2, \"soon\"]]\n", "plugins.x", `"soon"`, "f.toml:2:15: plugins.x.t[1][1]: bad"},
		{"literal string", "[plugins.x]\ntimeout = 'soon'\n", "plugins.x", `'soon'`, "f.toml:2:11: plugins.x.timeout: bad"},
		{"multi-line string", "[plugins.x]\ntimeout = \"\"\"\nsoon\"\"\"\n", "plugins.x", "\"\"\"\nsoon\"\"\"", "f.toml:2:11: plugins.x.timeout: bad"},
		{"spaces and a comment", "[plugins.x]\n  timeout   =   \"soon\"   # c\n", "plugins.x", `"soon"`, "f.toml:2:17: plugins.x.timeout: bad"},
		{"no such value", "[plugins.x]\ntimeout = 1\n", "plugins.x", `"soon"`, "f.toml: plugins.x: bad"},
		{"up to a syntax error", "[plugins.x]\na = 1; timeout = \"soon\"\n", "plugins.x", `"soon"`, "f.toml: plugins.x: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fmt.Errorf("decode: %w", &catalog.ValueError{Raw: tt.raw, Err: errors.New("bad")})
			assert.Equal(t, tt.want, positionedIn("f.toml", []byte(tt.toml), tt.prefix, err, nil).Error())
		})
	}
	t.Run("not a ValueError", func(t *testing.T) {
		assert.Equal(t, "f.toml: plain", positionedIn("f.toml", []byte("a = 1\n"), "x", errors.New("plain"), nil).Error())
	})
	t.Run("TOMLError", func(t *testing.T) {
		err := &catalog.ValueError{Raw: "1", Err: errors.New("bad")}
		assert.Equal(t, "f.toml:1:5: a: bad", TOMLError("f.toml", []byte("a = 1\n"), err, nil).Error())
	})
}

// TestPositionedInDecode: when several keys are written as the value that
// failed, the error is at the one go-toml failed on, which decoding the
// document cut after each of them finds.
func TestPositionedInDecode(t *testing.T) {
	type clamav struct {
		Socket  string              `toml:"socket"`
		Name    string              `toml:"name"`
		Timeout registry.Duration   `toml:"timeout"`
		Waits   []registry.Duration `toml:"waits"`
		Sub     struct {
			Name    string            `toml:"name"`
			Timeout registry.Duration `toml:"timeout"`
		} `toml:"sub"`
		Names []any `toml:"names"`
	}
	decode := func(data []byte) error {
		_, err := decodeStrict(data, &struct {
			Plugins struct {
				Clamav clamav `toml:"clamav"`
				Other  clamav `toml:"other"`
			} `toml:"plugins"`
		}{})
		return err
	}
	const bad = `invalid duration "soon": want seconds (30) or a duration string ("1m30s")`
	tests := []struct {
		name, toml, want string
	}{
		{"a string, then the duration", "[plugins.clamav]\nsocket = \"soon\"\ntimeout = \"soon\"\n",
			"f.toml:3:11: plugins.clamav.timeout: " + bad},
		{"the duration, then a string", "[plugins.clamav]\ntimeout = \"soon\"\nsocket = \"soon\"\n",
			"f.toml:2:11: plugins.clamav.timeout: " + bad},
		{"between two strings", "[plugins.clamav]\nsocket = \"soon\"\nname = \"soon\"\ntimeout = \"soon\"\n[plugins.clamav.sub]\nname = \"soon\"\n",
			"f.toml:4:11: plugins.clamav.timeout: " + bad},
		{"after the same value in an inline table", "[plugins.clamav]\nsub = {name = \"soon\"}\ntimeout = \"soon\"\n",
			"f.toml:3:11: plugins.clamav.timeout: " + bad},
		{"in an inline table, after a string", "[plugins.clamav]\nsocket = \"soon\"\nsub = {timeout = \"soon\"}\n",
			"f.toml:3:18: plugins.clamav.sub.timeout: " + bad},
		{"in an array, after an array of strings", "[plugins.clamav]\nnames = [\"soon\"]\nwaits = [1, \"soon\"]\n",
			"f.toml:3:13: plugins.clamav.waits[1]: " + bad},
		{"dotted keys, after a multi-line string", "[plugins]\nclamav.name = \"\"\"soon\"\"\"\nclamav.socket = \"soon\"\nclamav.timeout = \"soon\"\n",
			"f.toml:4:18: plugins.clamav.timeout: " + bad},
		{"an array for a duration", "[plugins.clamav]\nnames = [1]\ntimeout = [1]\n",
			"f.toml:3:11: plugins.clamav.timeout: invalid duration [1]: want seconds (30) or a duration string (\"1m30s\")"},
		{"an inline table for a quoted duration key, a comment", "[plugins.clamav]\n\"timeout\"  =  { a = 1 }  # c\n",
			"f.toml:2:15: plugins.clamav.timeout: invalid duration { a = 1 }: want seconds (30) or a duration string (\"1m30s\")"},
		{"under another prefix first", "[plugins.other]\nsocket = \"soon\"\n[plugins.clamav]\nsocket = \"soon\"\ntimeout = \"soon\"\n",
			"f.toml:5:11: plugins.clamav.timeout: " + bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decode([]byte(tt.toml))
			var ve *catalog.ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("decode: %v, want a ValueError", err)
			}
			assert.Equal(t, tt.want, positionedIn("f.toml", []byte(tt.toml), "plugins.clamav", err, decode).Error())
		})
	}
	t.Run("a decode that does not fail again: the first", func(t *testing.T) {
		const doc = "[plugins.clamav]\nsocket = \"soon\"\ntimeout = \"soon\"\n"
		err := decode([]byte(doc))
		assert.Equal(t, "f.toml:2:10: plugins.clamav.socket: "+bad,
			positionedIn("f.toml", []byte(doc), "plugins.clamav", err, func([]byte) error { return nil }).Error())
	})
}

// TestTableErrorsFallback: a message naming no key the file sets is at the
// table's header, else (a table written only as dotted keys) at its first
// key in the document, else at the file.
func TestTableErrorsFallback(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"header", "[plugins.x]\na = 1\n", "f.toml:1:2: [x]: b is more than c"},
		{"dotted keys only: the first", "[plugins]\nz = 1\nx.b2 = 1\nx.a = 1\n", "f.toml:3:1: [x]: b is more than c"},
		{"top-level dotted keys", "plugins.x.a = 1\n", "f.toml:1:1: [x]: b is more than c"},
		{"a dotted subtable header", "[plugins.x.sub]\na = 1\n", "f.toml:1:2: [x]: b is more than c"},
		{"inline table: its key", "[plugins]\nx = {a = 1}\n", "f.toml:2:1: [x]: b is more than c"},
		{"another table's keys are not its own", "[plugins]\n\"x/y\".a = 1\nxy.a = 1\n", "f.toml: [x]: b is more than c"},
		{"no key at all", "[plugins]\n", "f.toml: [x]: b is more than c"},
		{"a key it names still wins", "[plugins]\nx.a = 1\nx.b = 1\n", "f.toml:3:1: [x]: b is more than c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := TableErrors("f.toml", KeyPositions([]byte(tt.toml)), "plugins.x", "x", errors.New("b is more than c"))
			assert.Equal(t, []string{tt.want}, func() (out []string) {
				for _, e := range errs {
					out = append(out, e.Error())
				}
				return out
			}())
		})
	}
}

// TestInFileOrder: errors come as the file reads, joined ones split; those
// naming no place keep their order, last.
func TestInFileOrder(t *testing.T) {
	e := func(s string) error { return errors.New(s) }
	got := InFileOrder("c.toml",
		errors.Join(e("c.toml:9:2: nine"), e("c.toml: no place")),
		e("c.toml:3:19: three"),
		errors.Join(e("c.toml:3:5: three, before"), errors.Join(e("other.toml:1:1: another file"), e("c.toml:12: twelve, no column"))),
		e("c.toml:x:1: not a line"),
	)
	var texts []string
	for _, err := range got {
		texts = append(texts, err.Error())
	}
	assert.Equal(t, []string{"c.toml:3:5: three, before", "c.toml:3:19: three", "c.toml:9:2: nine", "c.toml:12: twelve, no column",
		"c.toml: no place", "other.toml:1:1: another file", "c.toml:x:1: not a line"}, texts)
}
