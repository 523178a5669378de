package canon

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"sync"
)

// Algorithm is a canonicalization algorithm.
type Algorithm string

// The two algorithms of RFC 6376 §3.4.
const (
	Simple  Algorithm = "simple"
	Relaxed Algorithm = "relaxed"
)

// Parse parses a c= value: "header/body", "header" alone meaning
// header/simple, and "" meaning simple/simple (RFC 6376 §3.5).
func Parse(c string) (header, body Algorithm, err error) {
	h, b, _ := strings.Cut(strings.ToLower(strings.TrimSpace(c)), "/")
	if h == "" {
		h = string(Simple)
	}
	if b == "" {
		b = string(Simple)
	}
	for _, a := range []string{h, b} {
		if a != string(Simple) && a != string(Relaxed) {
			return "", "", fmt.Errorf("canon: unknown canonicalization %q in c=%q", a, c)
		}
	}
	return Algorithm(h), Algorithm(b), nil
}

// Header returns the canonical form of one header field, given exactly as
// it appears in the message (name, colon, value, folding, line end),
// ending with CRLF.
func Header(a Algorithm, field []byte) []byte {
	return AppendHeader(make([]byte, 0, len(field)+2), a, field)
}

// AppendHeader appends Header(a, field) to dst and returns the extended
// buffer: a verifier canonicalizes every signed field into one buffer.
func AppendHeader(dst []byte, a Algorithm, field []byte) []byte {
	if a == Relaxed {
		return appendRelaxedHeader(dst, field)
	}
	return appendCRLF(dst, field)
}

// appendRelaxedHeader applies RFC 6376 §3.4.2: lowercase the name, unfold,
// turn each run of white space into one space, drop white space at the end
// of the value and around the colon.
func appendRelaxedHeader(out, field []byte) []byte {
	name, value, ok := bytes.Cut(field, []byte(":"))
	name = bytes.TrimRight(name, " \t\r\n")
	if ascii(name) {
		for _, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
		}
	} else { // not a valid field name; lowercased as before, Unicode and all
		out = append(out, bytes.ToLower(name)...)
	}
	if !ok {
		return append(out, "\r\n"...)
	}
	out = append(out, ':')
	space, started := false, false
	for _, c := range value {
		switch c {
		case '\r', '\n':
			continue // unfold
		case ' ', '\t':
			space = true
			continue
		}
		if space && started { // white space after the colon goes, inner runs become one space
			out = append(out, ' ')
		}
		space, started = false, true
		out = append(out, c)
	}
	return append(out, "\r\n"...)
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// appendCRLF appends field with every line ending in CRLF.
func appendCRLF(out, field []byte) []byte {
	for len(field) > 0 {
		line, rest, found := bytes.Cut(field, []byte("\n"))
		out = append(out, bytes.TrimSuffix(line, []byte("\r"))...)
		if found || len(line) > 0 {
			out = append(out, "\r\n"...)
		}
		field = rest
	}
	return out
}

// Body writes the canonical form of body to w (RFC 6376 §3.4.3, §3.4.4),
// typically a hash.
//
// It finds each line's end with bytes.IndexByte (simple) or, for relaxed,
// the line's end and its first white-space run in one pass (scanLine),
// and writes each run of lines that are canonical as they stand
// (CRLF-terminated and, for relaxed, without a tab, a double space or
// trailing white space) to w in one Write, straight from body: no copy of
// the body is made, and a message whose lines all end in CRLF (as SMTP
// delivers them) needs no line-end fixing. Only lines that change are
// written piece by piece, through a buffer; a line whose only change is
// white space at its end is its text and a CRLF. Blank lines are held
// back until a later line shows they are not at the end.
func Body(w io.Writer, a Algorithm, body []byte) error {
	c := bodyCanon{w: w, relaxed: a == Relaxed}
	err := c.write(body)
	if c.arr != nil {
		bufPool.Put(c.arr) // w may not keep what it was given (io.Writer)
	}
	if err != nil {
		return err
	}
	if !c.wrote && a == Simple {
		_, err := w.Write(crlf) // an empty simple body is one CRLF
		return err
	}
	return nil
}

var crlf = []byte("\r\n")

// bufPool holds bodyCanon output buffers between calls: one is needed per
// body that has a line to change, and allocating 4 KiB per message costs
// more than canonicalizing a small one.
var bufPool = sync.Pool{New: func() any { return new([lineBuf]byte) }}

// bodyCanon holds the state of one body canonicalization.
type bodyCanon struct {
	w       io.Writer
	relaxed bool
	wrote   bool // a non-blank line was written
	// pending counts the blank lines after the last non-blank one: they
	// are written only if a non-blank line follows.
	pending int
	// verbatim reports whether every pending blank line is a bare CRLF, so
	// the run may extend over them.
	verbatim bool
	// buf holds output not written yet: the reduced form of lines that
	// change, the blank lines before them and short runs between them. It
	// is written when full or before a long run, so a body whose lines
	// mostly change costs one Write per lineBuf bytes, not one per line;
	// its size bounds the memory used, whatever the line length.
	buf []byte
	arr *[lineBuf]byte // buf's array, from bufPool
}

const (
	lineBuf = 4096
	// shortRun is the longest run of canonical lines copied into buf
	// rather than written on its own: copying a short run costs less than
	// a Write call.
	shortRun = 512
)

// before writes what comes ahead of a line that is not part of the current
// run: the run of lines kept as they stand, then the blank lines held back.
func (c *bodyCanon) before(run []byte) error {
	if len(run) > 0 {
		if err := c.flush(run); err != nil {
			return err
		}
	}
	if c.pending > 0 {
		return c.blankLines()
	}
	return nil
}

func (c *bodyCanon) write(body []byte) error {
	start, end := 0, 0 // body[start:end] is canonical and not written yet
	c.verbatim = true
	for pos := 0; pos < len(body); {
		var lf int
		firstRun := -1 // for relaxed: where the first run that changes begins
		tail := false  // for relaxed: the run is white space up to the line end
		if c.relaxed {
			lf, firstRun, tail = scanLine(body, pos)
			if tail {
				// The common change, taken before the general case: the
				// line's only change is white space at its end, so its
				// text and a CRLF are written.
				cut := firstRun
				for cut > pos && body[cut-1] == ' ' {
					cut-- // the run began with the spaces before it
				}
				if cut > pos { // else a line of white space: a blank line
					if err := c.before(body[start:end]); err != nil {
						return err
					}
					if err := c.putLine(body[pos:cut]); err != nil {
						return err
					}
					c.pending, c.verbatim, c.wrote = 0, true, true
					pos = lf + 1
					start, end = pos, pos
					continue
				}
			}
			if firstRun >= 0 {
				firstRun -= pos
			}
		} else if lf = bytes.IndexByte(body[pos:], '\n'); lf >= 0 {
			lf += pos
		} else {
			lf = len(body)
		}
		line, next, found := body[pos:lf], len(body), lf < len(body)
		if found {
			next = lf + 1
		}
		content := line
		if n := len(content); found && n > 0 && content[n-1] == '\r' {
			content = content[:n-1] // a CR at the very end, with no LF after it, is content
		}
		// Canonical as it stands: ends in CRLF and has nothing to reduce.
		asIs := found && len(content) < len(line)
		if c.relaxed {
			if firstRun < 0 && len(content) > 0 && content[len(content)-1] == ' ' {
				// The trailing space: a single one (no run came before).
				firstRun, tail = len(content)-1, found
			}
			if tail {
				// The line's only change is white space at its end:
				// the text before the run's spaces and a CRLF.
				for firstRun > 0 && content[firstRun-1] == ' ' {
					firstRun--
				}
				content = content[:firstRun] // empty: a line of white space is a blank line
				asIs = false
			} else if firstRun >= 0 {
				asIs = false
				if isWSP(content) {
					content = nil // a line of white space is a blank line
				}
			}
		}
		if len(content) == 0 {
			if found {
				c.pending++
				c.verbatim = c.verbatim && asIs
			}
			pos = next
			continue
		}
		if asIs && (c.pending == 0 || c.verbatim) {
			end = next // extends the run, over the blank lines before the line
		} else {
			if err := c.before(body[start:end]); err != nil {
				return err
			}
			if asIs {
				start, end = pos, next
			} else {
				var err error
				if tail {
					err = c.putLine(content)
				} else {
					err = c.line(content, firstRun)
				}
				if err != nil {
					return err
				}
				start, end = next, next
			}
		}
		c.pending, c.verbatim, c.wrote = 0, true, true
		pos = next
	}
	if err := c.flush(body[start:end]); err != nil { // trailing blank lines are dropped
		return err
	}
	return c.drain()
}

// flush outputs a run of lines that are canonical as they stand.
func (c *bodyCanon) flush(run []byte) error {
	if len(run) == 0 {
		return nil
	}
	if len(run) <= shortRun && len(c.buf)+len(run) <= cap(c.buf) {
		c.buf = append(c.buf, run...)
		return nil
	}
	if err := c.drain(); err != nil {
		return err
	}
	_, err := c.w.Write(run)
	return err
}

// put appends b to the output, writing buf whenever it is full.
func (c *bodyCanon) put(b []byte) error {
	if len(b) <= cap(c.buf)-len(c.buf) {
		c.buf = append(c.buf, b...)
		return nil
	}
	return c.putSlow(b)
}

// putLine appends b and a CRLF to the output.
func (c *bodyCanon) putLine(b []byte) error {
	if n := len(c.buf); len(b)+2 <= cap(c.buf)-n {
		c.buf = c.buf[:n+len(b)+2]
		copy(c.buf[n:], b)
		c.buf[n+len(b)], c.buf[n+len(b)+1] = '\r', '\n'
		return nil
	}
	if err := c.putSlow(b); err != nil {
		return err
	}
	return c.put(crlf)
}

func (c *bodyCanon) putSlow(b []byte) error {
	if c.arr == nil {
		c.arr = bufPool.Get().(*[lineBuf]byte)
		c.buf = c.arr[:0]
	}
	for len(b) > 0 {
		if len(c.buf) == cap(c.buf) {
			if err := c.drain(); err != nil {
				return err
			}
		}
		n := copy(c.buf[len(c.buf):cap(c.buf)], b)
		c.buf, b = c.buf[:len(c.buf)+n], b[n:]
	}
	return nil
}

// drain writes what buf holds.
func (c *bodyCanon) drain() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *bodyCanon) blankLines() error {
	for ; c.pending > 0; c.pending-- {
		if err := c.put(crlf); err != nil {
			return err
		}
	}
	return nil
}

// line writes a line that is not canonical as it stands, and its CRLF.
//
// For relaxed, firstRun is where the first white-space run that changes
// begins, as write found it (so the line is not scanned for it again).
func (c *bodyCanon) line(content []byte, firstRun int) error {
	if !c.relaxed {
		if err := c.put(content); err != nil {
			return err
		}
		return c.put(crlf)
	}
	// Each white-space run becomes one space; a trailing one goes. Text
	// between the runs that change (a tab, two spaces, a space at the end)
	// is copied whole.
	for len(content) > 0 {
		i := firstRun
		if i < 0 {
			i = nextRun(content)
		} else {
			for i > 0 && content[i-1] == ' ' {
				i-- // the run began with the spaces before it
			}
		}
		firstRun = -1
		if i < 0 {
			i = len(content)
		}
		j := i
		for j < len(content) && (content[j] == ' ' || content[j] == '\t') {
			j++
		}
		if err := c.put(content[:i]); err != nil {
			return err
		}
		if j > i && j < len(content) {
			if err := c.put(space); err != nil {
				return err
			}
		}
		content = content[j:]
	}
	return c.put(crlf)
}

var space = []byte(" ")

// nextRun returns where the first white-space run of line that relaxed
// canonicalization changes begins (one holding a tab or two spaces, or one
// at the end of the line), or -1. Single spaces before it are copied as
// they are.
func nextRun(line []byte) int {
	i := indexRun(line)
	if i < 0 {
		if n := len(line); n > 0 && line[n-1] == ' ' {
			return n - 1
		}
		return -1
	}
	for i > 0 && line[i-1] == ' ' {
		i-- // the run began with the spaces before the tab
	}
	return i
}

const (
	low7   = 0x7f7f7f7f7f7f7f7f
	spaces = 0x2020202020202020
	tabs   = 0x0909090909090909
)

// zeroBytes returns v with the high bit of each zero byte set and every
// other bit clear (exact, unlike hasZero).
func zeroBytes(v uint64) uint64 {
	return ^(((v & low7) + low7) | v | low7)
}

// hasZero is non-zero exactly when v has a zero byte (which bits it sets
// is not exact, so it only answers whether), in three operations.
func hasZero(v uint64) uint64 {
	return (v - 0x0101010101010101) &^ v & 0x8080808080808080
}

// indexRun returns where the first tab or the first of two spaces in a row
// in line is, or -1: the runs relaxed canonicalization changes, other than
// white space at the end. It reads sixteen bytes at a time (a line is too
// short for a call of bytes.Index per line to pay, and two spaces are
// found here without stopping at every single space). Byte k of v and of
// w (v shifted by one byte) both spaces, that is (v^spaces)|(w^spaces)
// zero at k, means k is the first of two spaces; loading twice,
// overlapping, keeps the words independent of each other.
func indexRun(line []byte) int {
	i := 0
	for ; i+17 <= len(line); i += 16 {
		v0, w0 := binary.LittleEndian.Uint64(line[i:]), binary.LittleEndian.Uint64(line[i+1:])
		v1, w1 := binary.LittleEndian.Uint64(line[i+8:]), binary.LittleEndian.Uint64(line[i+9:])
		p0, t0 := (v0^spaces)|(w0^spaces), v0^tabs
		p1, t1 := (v1^spaces)|(w1^spaces), v1^tabs
		if hasZero(p0)|hasZero(t0)|hasZero(p1)|hasZero(t1) != 0 {
			if h := zeroBytes(p0) | zeroBytes(t0); h != 0 {
				return i + bits.TrailingZeros64(h)/8
			}
			return i + 8 + bits.TrailingZeros64(zeroBytes(p1)|zeroBytes(t1))/8
		}
	}
	for ; i+9 <= len(line); i += 8 {
		v, w := binary.LittleEndian.Uint64(line[i:]), binary.LittleEndian.Uint64(line[i+1:])
		if h := zeroBytes((v^spaces)|(w^spaces)) | zeroBytes(v^tabs); h != 0 {
			return i + bits.TrailingZeros64(h)/8
		}
	}
	for ; i < len(line); i++ {
		if line[i] == '\t' || line[i] == ' ' && i+1 < len(line) && line[i+1] == ' ' {
			return i
		}
	}
	return -1
}

func isWSP(line []byte) bool {
	for _, b := range line {
		if b != ' ' && b != '\t' {
			return false
		}
	}
	return true
}

// BodyBytes returns the canonical body.
func BodyBytes(a Algorithm, body []byte) []byte {
	var b bytes.Buffer
	_ = Body(&b, a, body) // bytes.Buffer never fails
	return b.Bytes()
}

const (
	newlines = 0x0a0a0a0a0a0a0a0a
	ones     = 0x0101010101010101
	highs    = 0x8080808080808080
	// belowVT is for the test "a byte below 0x0b" (a tab, a line feed or
	// a control character before them), which catches both in one.
	belowVT = 0x0b0b0b0b0b0b0b0b
)

// scanLine returns, for the line beginning at body[pos], the index of its
// LF (len(body) if none follows), where its first tab or first of two
// spaces in a row is (-1 if none comes before the LF), and whether only
// white space follows that run up to the LF or CRLF (tail; false when no
// LF ends the line): what IndexByte for the LF and indexRun over the line
// return, in one pass.
//
// It reads sixteen bytes at a time like indexRun, with one cheap test for
// "a byte below 0x0b" (exact as a yes/no question) covering tab and LF
// together; a control character below LF answers yes and is passed over
// after the exact test. Once a run is found, the white space after it is
// skipped: a run at the end of the line (the common change) has its LF
// right after it, so the line is not scanned again.
func scanLine(body []byte, pos int) (lf, run int, tail bool) {
	i := pos
	for b := body[pos:]; len(b) >= 17; b, i = b[16:], i+16 {
		v0, w0 := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[1:])
		v1, w1 := binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[9:])
		p0, p1 := (v0^spaces)|(w0^spaces), (v1^spaces)|(w1^spaces)
		if ((p0-ones)&^p0|(v0-belowVT)&^v0|(p1-ones)&^p1|(v1-belowVT)&^v1)&highs == 0 {
			continue
		}
		if h := zeroBytes(p0) | zeroBytes(v0^tabs) | zeroBytes(v0^newlines); h != 0 {
			return runEnd(body, i+bits.TrailingZeros64(h)/8)
		}
		if h := zeroBytes(p1) | zeroBytes(v1^tabs) | zeroBytes(v1^newlines); h != 0 {
			return runEnd(body, i+8+bits.TrailingZeros64(h)/8)
		}
		// only control characters below LF: nothing to report
	}
	for ; i < len(body); i++ {
		if c := body[i]; c == '\n' || c == '\t' || c == ' ' && i+1 < len(body) && body[i+1] == ' ' {
			return runEnd(body, i)
		}
	}
	return len(body), -1, false
}

// runEnd returns scanLine's answer given the first byte it stops at, k:
// an LF, or the start of a run, in which case the LF is looked for after
// the white space that follows.
func runEnd(body []byte, k int) (lf, run int, tail bool) {
	if body[k] == '\n' {
		return k, -1, false
	}
	j := k + 1
	for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
		j++
	}
	if j < len(body) && body[j] == '\n' {
		return j, k, true
	}
	if j+1 < len(body) && body[j] == '\r' && body[j+1] == '\n' {
		return j + 1, k, true
	}
	if n := bytes.IndexByte(body[j:], '\n'); n >= 0 {
		return j + n, k, false
	}
	return len(body), k, false
}
