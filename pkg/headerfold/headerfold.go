// Package headerfold folds the header fields that Elemta and its plugins
// add to a message (RFC 5322 §2.2.3): lines of at most 78 characters where
// white space allows it, and never over 998. The host and every plugin that
// writes a registry.Field value passes it through Value first, so a second
// MTA (or a second Elemta, whose line limit is 2,000 bytes) accepts what we
// write.
//
// Folding inserts a line end before white space that is already in the
// value, so the unfolded value (RFC 5322 §2.2.3, what every parser and
// DKIM's relaxed canonicalization see) is exactly the value given. Two
// cases change it, both to keep the field well-formed:
//
//   - a run of more than MaxLine characters without white space (no legal
//     fold point) is cut every MaxLine characters by a line end and one
//     space: the unfolded value gains those spaces;
//   - a CR or LF that does not start a fold (a line end not followed by
//     white space, which would end the field and start another: header
//     injection) becomes a fold, line end and one space; CR and LF never
//     pass through alone.
package headerfold

import (
	"strings"
	"unicode/utf8"
)

const (
	// Width is the line length folding aims at (RFC 5322 §2.1.1 "SHOULD
	// be no more than 78 characters"), line end excluded.
	Width = 78
	// MaxLine is the longest line ever written (RFC 5322 §2.1.1 "MUST be
	// no more than 998 characters"), line end excluded.
	MaxLine = 998
)

// CRLF and LF are the line ends Value takes.
const (
	CRLF = "\r\n"
	LF   = "\n"
)

// EOL returns the line end of a message, from its first line: LF when it
// ends in a bare LF, CRLF otherwise (SMTP's). Fields added to a message use
// its line end.
func EOL(raw []byte) string {
	for i, c := range raw {
		if c == '\n' {
			if i > 0 && raw[i-1] == '\r' {
				return CRLF
			}
			return LF
		}
	}
	return CRLF
}

// Value returns value folded for the field called name, with line ends eol
// (CRLF or LF): every line, the first counted with "name: ", at most Width
// characters where the value's white space allows, none over MaxLine. A
// value that already holds folds keeps them (their line ends become eol).
func Value(name, value, eol string) string {
	lines := splitFolds(value)
	if len(lines) > 1 {
		lines = dropBlank(lines)
	}
	if len(lines) == 1 && len(name)+2+len(lines[0]) <= Width {
		return lines[0] // the common case: nothing to do, no copy
	}
	var b strings.Builder
	b.Grow(len(value) + len(value)/Width*(len(eol)+1) + 8)
	col := len(name) + 2 // "name: "
	for i, line := range lines {
		if i > 0 {
			b.WriteString(eol)
			col = 0
		}
		foldLine(&b, line, col, eol)
	}
	return b.String()
}

// Field returns "name: value" folded as Value does, without a line end.
func Field(name, value, eol string) string {
	return name + ": " + Value(name, value, eol)
}

// splitFolds splits value at its line ends. A line end followed by white
// space is a fold and kept as one; any other CR, LF or CRLF becomes a fold
// with one space.
func splitFolds(value string) []string {
	if !strings.ContainsAny(value, "\r\n") {
		return []string{value}
	}
	var lines []string
	for {
		i := strings.IndexAny(value, "\r\n")
		if i < 0 {
			return append(lines, value)
		}
		// White space before a line end would end a line of its own if the
		// line were cut there: the fold brings its own.
		lines = append(lines, strings.TrimRight(value[:i], " \t"))
		n := 1
		if value[i] == '\r' && i+1 < len(value) && value[i+1] == '\n' {
			n = 2
		}
		value = strings.TrimLeft(value[i+n:], "\r\n") // no empty lines
		if value == "" || (value[0] != ' ' && value[0] != '\t') {
			value = " " + value
		}
	}
}

// dropBlank removes the lines after the first that hold only white space:
// RFC 5322 §3.2.2 forbids them (their white space is lost).
func dropBlank(lines []string) []string {
	out := lines[:1]
	for _, l := range lines[1:] {
		if firstText(l) < len(l) {
			out = append(out, l)
		}
	}
	return out
}

// foldLine writes line, which starts at column col (after "name: " on the
// first line, 0 on the others), breaking it before white space into lines
// of at most Width characters where it can. A break is never made where
// the line before it would hold only white space (RFC 5322 §3.2.2).
func foldLine(b *strings.Builder, line string, col int, eol string) {
	for col+len(line) > Width {
		text := firstText(line)
		if col > 0 { // the first line: "name: " before it is text, any white space may start a fold
			text = 0
		}
		cut := breakAt(line, text, Width-col)
		if cut < 0 { // no white space in reach: the first one after it
			cut = breakAfter(line, text, Width-col)
		}
		if cut < 0 || col+cut > MaxLine { // none within MaxLine: cut the word
			if col+len(line) <= MaxLine {
				break
			}
			cut = max(MaxLine-col, 1)
			for cut > 1 && !utf8.RuneStart(line[cut]) { // not inside a UTF-8 character
				cut--
			}
			b.WriteString(line[:cut])
			b.WriteString(eol)
			line = " " + line[cut:]
			col = 0
			continue
		}
		b.WriteString(line[:cut])
		b.WriteString(eol)
		line = line[cut:]
		col = 0
	}
	b.WriteString(line)
}

// breakAt returns the last index i <= limit with line[i] white space after
// the first text (at index text), or -1.
func breakAt(line string, text, limit int) int {
	for i := min(limit, len(line)-1); i > text; i-- {
		if isWSP(line[i]) {
			return i
		}
	}
	return -1
}

// breakAfter returns the first index i > limit with line[i] white space
// after the first text, or -1.
func breakAfter(line string, text, limit int) int {
	for i := max(limit+1, text+1); i < len(line); i++ {
		if isWSP(line[i]) {
			return i
		}
	}
	return -1
}

// firstText returns the index of line's first character that is not white
// space (len(line) when there is none).
func firstText(line string) int {
	for i := 0; i < len(line); i++ {
		if !isWSP(line[i]) {
			return i
		}
	}
	return len(line)
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// Unfold undoes folding (RFC 5322 §2.2.3): it removes every CRLF or LF
// that is followed by white space.
func Unfold(value string) string {
	if !strings.ContainsAny(value, "\r\n") {
		return value
	}
	var b strings.Builder
	b.Grow(len(value))
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\r' && i+2 < len(value) && value[i+1] == '\n' && isWSP(value[i+2]) {
			i++
			continue
		}
		if c == '\n' && i+1 < len(value) && isWSP(value[i+1]) {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
