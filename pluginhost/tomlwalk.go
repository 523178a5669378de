package pluginhost

import (
	"bytes"
	"iter"
	"slices"
	"strconv"
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

// value is a key's value as written and where it is; ok is false for a
// table header. An inline table or an array, whose node has no range of
// its own, is written as go-toml hands it to an unstable.Unmarshaler: from
// after the "=" to the end of the key's expression.
func (e tomlEntry) value() (raw []byte, r unstable.Range, ok bool) {
	if e.n.Kind != unstable.KeyValue {
		return nil, unstable.Range{}, false
	}
	v := e.n.Value()
	if v.Kind != unstable.InlineTable && v.Kind != unstable.Array {
		return e.p.Raw(v.Raw), v.Raw, true
	}
	var last unstable.Range
	for it := e.n.Key(); it.Next(); {
		last = it.Node().Raw
	}
	data := e.p.Data()
	start := int(last.Offset + last.Length)
	start += len(data[start:]) - len(bytes.TrimLeft(data[start:], " \t="))
	end := int(e.n.Raw.Offset + e.n.Raw.Length)
	if start > end {
		return nil, unstable.Range{}, true
	}
	r = unstable.Range{Offset: uint32(start), Length: uint32(end - start)}
	return e.p.Raw(r), r, true
}

// tomlValue is a key's value, or a value inside its inline table or array.
type tomlValue struct {
	// key is the entry's key, then ".name" for a key of an inline table
	// and "[i]" for an element of an array ("dns.servers[1]").
	key string
	raw []byte
	pos unstable.Position
}

// values yields a key's value and then, when it is an inline table or an
// array, the values inside it (but for inline tables and arrays), depth
// first in document order. It yields nothing for a table header.
func (e tomlEntry) values() iter.Seq[tomlValue] {
	return func(yield func(tomlValue) bool) {
		raw, r, ok := e.value()
		if !ok || !yield(tomlValue{key: e.key, raw: raw, pos: e.p.Shape(r).Start}) {
			return
		}
		e.nested(e.key, e.n.Value(), yield)
	}
}

// nested yields the values inside n (an inline table or an array) as
// values does; false when yield stopped it.
func (e tomlEntry) nested(key string, n *unstable.Node, yield func(tomlValue) bool) bool {
	if n.Kind != unstable.InlineTable && n.Kind != unstable.Array {
		return true
	}
	it := n.Children()
	for i := 0; it.Next(); i++ {
		c, k := it.Node(), key+"["+strconv.Itoa(i)+"]"
		if n.Kind == unstable.InlineTable {
			k = key + "." + strings.Join(nameParts(c.Key()), ".")
			c = c.Value()
		}
		// An inline table or an array inside another has no range: only
		// the values in it are yielded.
		if c.Kind != unstable.InlineTable && c.Kind != unstable.Array &&
			!yield(tomlValue{key: k, raw: e.p.Raw(c.Raw), pos: e.p.Shape(c.Raw).Start}) {
			return false
		}
		if !e.nested(k, c, yield) {
			return false
		}
	}
	return true
}

// lineStart is the offset where the line of the entry's name starts: a
// document cut there holds every entry before it, whole.
func (e tomlEntry) lineStart() int {
	data := e.p.Data()
	p, ok := e.namePos()
	if !ok {
		return len(data)
	}
	return bytes.LastIndexByte(data[:p.Offset], '\n') + 1
}
