package pluginhost

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Positions maps each key of a TOML document, dotted from the top
// ("server.max_errors", "plugins.spf/strict.lookup_limit": the parts as
// written, unquoted), and each table header ("server") to where its name
// is written.
type Positions map[string]unstable.Position

// KeyPositions returns the Positions of data's keys (up to a syntax error,
// which the decoder reports), each where it is first written. The keys
// inside an inline table are not in it: a message naming one is placed at
// the inline table's key.
func KeyPositions(data []byte) Positions {
	pos := Positions{}
	for e := range walkTOML(data) {
		if _, ok := pos[e.key]; ok {
			continue
		}
		if p, ok := e.namePos(); ok {
			pos[e.key] = p
		}
	}
	return pos
}

// TableErrors turns the error of a table's Validate (errors.Join of
// several, or one) into one error per problem, each "file:line:col:
// [label]: message": the table named once (a "table: " the message starts
// with is dropped), at the key the message names (the first of its ": "
// parts that is a key of the table: "store: redis_addr: ..." is at
// redis_addr), or, when the file sets none of them, at the table's header,
// else at its first key (a table written only as dotted keys,
// "server.max_errors = 1"), else at the file ("file: [label]: ..."). table
// is the key path ("server", "plugins.spf/strict"), label how the table is
// written ("server", `plugins."spf/strict"`). Hosts use it for their own
// tables.
func TableErrors(file string, pos Positions, table, label string, err error) []error {
	var out []error
	for _, e := range leafErrors(err) {
		msg := strings.TrimPrefix(e.Error(), table+": ")
		where := file
		if p, ok := pos.keyIn(table, msg); ok {
			where = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
		} else if p, ok := pos[table]; ok {
			where = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
		} else if p, ok := pos.firstUnder(table + "."); ok {
			where = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
		}
		out = append(out, &tableError{text: where + ": [" + label + "]: " + msg, err: e})
	}
	return out
}

// keyIn finds the first ": "-separated part of msg that starts with a key
// of table: the longest dotted prefix of it that the file sets
// (`domains."example.com".selector` is at that key, else at the
// [domains."example.com"] table), or the first key under it.
func (pos Positions) keyIn(table, msg string) (unstable.Position, bool) {
	for part := range strings.SplitSeq(msg, ": ") {
		parts := leadingKey(part)
		for n := len(parts); n > 0; n-- {
			if p, ok := pos[table+"."+strings.Join(parts[:n], ".")]; ok {
				return p, true
			}
		}
		if len(parts) == 0 {
			continue
		}
		if p, ok := pos.firstUnder(table + "." + parts[0] + "."); ok {
			return p, true
		}
	}
	return unstable.Position{}, false
}

// firstUnder is the position of the first key (in the document) that
// starts with under ("server."): where a table that has no header of its
// own, only dotted keys, is written.
func (pos Positions) firstUnder(under string) (unstable.Position, bool) {
	var best unstable.Position
	found := false
	for k, p := range pos {
		if strings.HasPrefix(k, under) && (!found || p.Offset < best.Offset) {
			best, found = p, true
		}
	}
	return best, found
}

// leadingKey is the dotted key a message starts with, in parts:
// "max_errors must be ..." → [max_errors], "plugin_levels.spf: ..." →
// [plugin_levels spf], `domains."a.example".selector = ...` → [domains
// a.example selector], "limits[0] (x).count" → [limits].
func leadingKey(msg string) []string {
	var parts []string
	for {
		if strings.HasPrefix(msg, `"`) {
			end := strings.IndexByte(msg[1:], '"')
			if end < 0 {
				return parts
			}
			parts = append(parts, msg[1:1+end])
			msg = msg[2+end:]
		} else {
			end := strings.IndexFunc(msg, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
			})
			if end < 0 {
				end = len(msg)
			}
			if end == 0 {
				return parts
			}
			parts = append(parts, msg[:end])
			msg = msg[end:]
		}
		if !strings.HasPrefix(msg, ".") {
			return parts
		}
		msg = msg[1:]
	}
}

// leafErrors returns the leaves of a tree of errors.Join errors.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && err == j.(error) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
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

// InFileOrder returns errs, each errors.Join split into its parts, ordered
// as the file reads: by the line and column their text starts with
// ("file:line:col: ..." or "file:line: ..."); the others, which name no
// place in file, keep their order after them. Hosts join their errors
// with the plugins' in it.
func InFileOrder(file string, errs ...error) []error {
	type placed struct {
		err       error
		line, col int
	}
	var all []placed
	for _, err := range errs {
		for _, e := range leafErrors(err) {
			line, col := placeOf(file, e.Error())
			all = append(all, placed{e, line, col})
		}
	}
	slices.SortStableFunc(all, func(a, b placed) int {
		if (a.line == 0) != (b.line == 0) {
			return cmp.Compare(b.line, a.line) // the placed one (line > 0) first
		}
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col))
	})
	out := make([]error, len(all))
	for i, p := range all {
		out[i] = p.err
	}
	return out
}

// placeOf returns the line and column msg starts with after "file:" (0, 0
// when it names none; col 0 when only the line).
func placeOf(file, msg string) (line, col int) {
	rest, ok := strings.CutPrefix(msg, file+":")
	if !ok {
		return 0, 0
	}
	num := func() int {
		n, i := 0, 0
		for i < len(rest) && i < 9 && '0' <= rest[i] && rest[i] <= '9' {
			n = n*10 + int(rest[i]-'0')
			i++
		}
		if i == 0 || i == len(rest) || rest[i] != ':' {
			return -1
		}
		rest = rest[i+1:]
		return n
	}
	if line = num(); line <= 0 {
		return 0, 0
	}
	if col = num(); col < 0 {
		col = 0
	}
	return line, col
}
