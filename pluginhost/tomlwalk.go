package pluginhost

import (
	"iter"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// tomlEntry is a table header ([server], [[plugins.x.rules]]) or a key of
// a TOML document, as walkTOML meets it. It is valid only in the loop
// body that receives it.
type tomlEntry struct {
	// key is dotted from the top, the parts as written, unquoted
	// ("plugins.spf/strict.lookup_limit"); a header's is its table's.
	key string
	p   *unstable.Parser
	n   *unstable.Node
}

// walkTOML yields data's table headers and keys in document order, up to
// a syntax error (the decoder reports it). The keys of an inline table are
// part of its key's value, not entries of their own.
func walkTOML(data []byte) iter.Seq[tomlEntry] {
	return func(yield func(tomlEntry) bool) {
		p := unstable.Parser{}
		p.Reset(data)
		var table []string
		for p.NextExpression() {
			n := p.Expression()
			var key string
			switch n.Kind {
			case unstable.Table, unstable.ArrayTable:
				table = nameParts(n.Key())
				key = strings.Join(table, ".")
			case unstable.KeyValue:
				key = strings.Join(append(slices.Clone(table), nameParts(n.Key())...), ".")
			default:
				continue
			}
			if !yield(tomlEntry{key: key, p: &p, n: n}) {
				return
			}
		}
	}
}

func nameParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// namePos is where the entry's name starts (its first part).
func (e tomlEntry) namePos() (unstable.Position, bool) {
	it := e.n.Key()
	if !it.Next() {
		return unstable.Position{}, false
	}
	return e.p.Shape(it.Node().Raw).Start, true
}

// value is a key's value as written; ok is false for a table header.
func (e tomlEntry) value() (raw []byte, ok bool) {
	if e.n.Kind != unstable.KeyValue {
		return nil, false
	}
	return e.p.Raw(e.n.Value().Raw), true
}

// valuePos is where a key's value starts.
func (e tomlEntry) valuePos() unstable.Position {
	return e.p.Shape(e.n.Value().Raw).Start
}
