package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps each key of a TOML document, dotted from the top
// ("server.max_errors"), and each table header ("server") to where its
// name is written.
type positions map[string]unstable.Position

func positionsOf(data []byte) positions {
	pos := positions{}
	p := unstable.Parser{}
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(n.Key())
			name := strings.Join(table, ".")
			if _, ok := pos[name]; !ok {
				it := n.Key()
				if it.Next() {
					pos[name] = p.Shape(it.Node().Raw).Start
				}
			}
		case unstable.KeyValue:
			key := strings.Join(append(slices.Clone(table), keyParts(n.Key())...), ".")
			if _, ok := pos[key]; !ok {
				if it := n.Key(); it.Next() {
					pos[key] = p.Shape(it.Node().Raw).Start
				}
			}
		}
	}
	// A syntax error ends the walk; the decoder reports it.
	return pos
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// tableErrors turns the error of a host table's Validate into one error
// per problem, each "file:line:col: [table]: message": the table named
// once (a "table: " the message starts with is dropped), the position that
// of the key the message starts with, or of the table's header when the
// file does not set that key ("file: [table]: ..." when it has neither).
func tableErrors(file string, pos positions, table string, err error) []error {
	var out []error
	for _, e := range flatten(err) {
		msg := strings.TrimPrefix(e.Error(), table+": ")
		where := file
		if p, ok := pos[table+"."+leadingKey(msg)]; ok {
			where = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
		} else if p, ok := pos[table]; ok {
			where = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
		}
		out = append(out, &tableError{text: where + ": [" + table + "]: " + msg, err: e})
	}
	return out
}

// leadingKey is the key a message starts with: "max_errors must be ..." →
// "max_errors", "plugin_levels.spf: ..." → "plugin_levels.spf".
func leadingKey(msg string) string {
	end := strings.IndexFunc(msg, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
	})
	if end < 0 {
		end = len(msg)
	}
	return strings.TrimRight(msg[:end], ".")
}

// flatten returns the leaves of a tree of errors.Join errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && err == j.(error) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// tableError is one positioned problem; errors.Is and As see the original.
type tableError struct {
	text string
	err  error
}

func (e *tableError) Error() string { return e.text }
func (e *tableError) Unwrap() error { return e.err }
