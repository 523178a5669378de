package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"unicode"
)

// Envelope is what the SMTP session learnt about a message.
type Envelope struct {
	ClientIP netip.Addr
	HELO     string
	MailFrom string   // reverse path without angle brackets; "" for the null sender
	RcptTo   []string // forward paths, in the order they were accepted
	AuthUser string   // SMTP AUTH identity; "" when not authenticated
	TLS      bool
}

// Field is one header field to add to a message.
type Field struct {
	Name  string
	Value string
}

// HeaderField is one parsed header field of a message.
type HeaderField struct {
	// Name as written, and Value unfolded with surrounding white space
	// trimmed. Both are substrings of one copy of the header section when
	// they can be (Name always, Value when the field is not folded): a
	// plugin that keeps one past the message keeps that copy (at most
	// max_header_size) alive, never the message.
	Name  string
	Value string
	// Raw is the field exactly as received, including folding and line end;
	// a sub-slice of Message.Raw (DKIM and ARC canonicalize from it).
	Raw []byte
}

// Header is a message's header fields in the order they appear.
type Header []HeaderField

// Get returns the value of the first field called name (case-insensitive), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field called name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Message is a message as received. Raw is never modified: plugins read it
// and describe changes as header additions and removals.
type Message struct {
	Raw      []byte
	Header   Header
	Envelope Envelope

	headerEnd int // end of the last header field
	bodyStart int

	mu    sync.Mutex
	added []Field
}

// ErrMalformedHeader reports a header section that cannot be parsed.
var ErrMalformedHeader = errors.New("malformed header")

// ParseMessage parses raw's header section. raw is kept, not copied (the
// fields' Raw point into it). Both CRLF and bare LF line ends are
// accepted. A message without a blank line is all header and an empty
// body.
//
// Its own allocations are the Header slice, sized exactly, one string copy
// of the header section (every Name, and the Value of each unfolded field,
// is a substring of it, so a plugin that keeps one keeps the header, never
// the message) and the Value of folded fields: a message costs its size,
// plus its header once more, plus about 56 bytes a field.
func ParseMessage(raw []byte, env Envelope) (*Message, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformedHeader)
	}
	m := &Message{Raw: raw, Envelope: env, bodyStart: len(raw)}
	if n := countFields(raw); n > 0 {
		m.Header = make(Header, 0, n)
	}
	pos, line := 0, 1
	for pos < len(raw) {
		end := lineEnd(raw, pos)
		content := trimEOL(raw[pos:end])
		if len(content) == 0 { // blank line: the body follows
			m.bodyStart = end
			break
		}
		if content[0] == ' ' || content[0] == '\t' {
			if len(m.Header) == 0 {
				return nil, fmt.Errorf("%w: line %d: continuation line before any header field", ErrMalformedHeader, line)
			}
			f := &m.Header[len(m.Header)-1]
			f.Raw = raw[pos-len(f.Raw) : end]
		} else {
			colon := bytes.IndexByte(content, ':')
			name := content[:max(colon, 0)]
			if colon <= 0 || bytes.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("%w: line %d: not a header field (no \"name:\"): %.40q", ErrMalformedHeader, line, content)
			}
			m.Header = append(m.Header, HeaderField{Raw: raw[pos:end]}) // Name and Value below
		}
		m.headerEnd = end
		pos, line = end, line+1
	}
	hdr := string(raw[:m.headerEnd])
	for i := range m.Header {
		f := &m.Header[i]
		start := cap(raw) - cap(f.Raw) // f.Raw is raw[start:...]
		colon := bytes.IndexByte(f.Raw, ':')
		f.Name = hdr[start : start+colon]
		f.Value = unfold(hdr, start+colon+1, f.Raw[colon+1:])
	}
	return m, nil
}

// countFields counts the lines of raw's header section that start a field
// (ParseMessage sizes Header with it; a malformed line counts too).
func countFields(raw []byte) int {
	n := 0
	for pos := 0; pos < len(raw); {
		end := lineEnd(raw, pos)
		content := trimEOL(raw[pos:end])
		if len(content) == 0 {
			break
		}
		if content[0] != ' ' && content[0] != '\t' {
			n++
		}
		pos = end
	}
	return n
}

// unfold returns a field body's lines joined by single spaces, each
// trimmed, in one pass (a field folded over many lines costs linear time).
// body is hdr[off:off+len(body)]: a body of one line is returned as a
// substring of hdr, not a copy.
func unfold(hdr string, off int, body []byte) string {
	if end := lineEnd(body, 0); end == len(body) {
		lead := len(body) - len(bytes.TrimLeftFunc(body, unicode.IsSpace))
		return hdr[off+lead : off+lead+len(bytes.TrimSpace(body))]
	}
	var b strings.Builder
	b.Grow(len(body))
	for len(body) > 0 {
		end := lineEnd(body, 0)
		if part := bytes.TrimSpace(body[:end]); len(part) > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.Write(part)
		}
		body = body[end:]
	}
	return b.String()
}

// Body returns the message body: a sub-slice of Raw, not a copy.
func (m *Message) Body() []byte { return m.Raw[m.bodyStart:] }

// HeaderBytes returns the header section as received, without the blank line.
func (m *Message) HeaderBytes() []byte { return m.Raw[:m.headerEnd] }

// Removal names header fields to remove: the Index-th field called Name
// (0 is the first, counted among fields of that name), or all when Index < 0.
type Removal struct {
	Name  string
	Index int
}

// Rewrite returns the message as it should be written out: add prepended
// in order (after the fields recorded with AddHeader), the fields named by
// remove left out, and every other byte exactly as in Raw. Added fields use
// the message's own line ending. It builds a full copy: WriteRewritten
// writes the same bytes without one.
func (m *Message) Rewrite(add []Field, remove []Removal) []byte {
	var out bytes.Buffer
	out.Grow(len(m.Raw) + 256)
	_, _ = m.WriteRewritten(&out, add, remove) // a bytes.Buffer does not fail
	return out.Bytes()
}

// WriteRewritten writes to w what Rewrite returns, from the pieces of Raw:
// the added fields, the kept fields, the rest. It returns the bytes
// written.
func (m *Message) WriteRewritten(w io.Writer, add []Field, remove []Removal) (int64, error) {
	eol := "\r\n" // the message's own line end: that of its first line
	if i := bytes.IndexByte(m.Raw, '\n'); i >= 0 && (i == 0 || m.Raw[i-1] != '\r') {
		eol = "\n"
	}
	cw := &countWriter{w: w}
	for _, f := range append(m.AddedHeaders(), add...) {
		if _, err := cw.WriteString(f.Name + ": " + f.Value + eol); err != nil {
			return cw.n, err
		}
	}
	seen := make([]int, len(remove)) // fields so far named like each removal
	for _, f := range m.Header {
		if !removedAt(remove, seen, f.Name) {
			if _, err := cw.Write(f.Raw); err != nil {
				return cw.n, err
			}
		}
	}
	_, err := cw.Write(m.Raw[m.headerEnd:])
	return cw.n, err
}

// Rewriter returns an io.WriterTo for WriteRewritten(w, add, remove): what
// a writer that takes one (the spool) needs to store the message without
// a second copy of it in memory.
func (m *Message) Rewriter(add []Field, remove []Removal) io.WriterTo {
	return rewriter{m: m, add: add, remove: remove}
}

type rewriter struct {
	m      *Message
	add    []Field
	remove []Removal
}

func (r rewriter) WriteTo(w io.Writer) (int64, error) { return r.m.WriteRewritten(w, r.add, r.remove) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countWriter) WriteString(s string) (int, error) {
	n, err := io.WriteString(c.w, s)
	c.n += int64(n)
	return n, err
}

// removedAt reports whether the field called name, the next of its name,
// is removed, and counts it in seen (one counter per removal, so no
// lowercased copy of every name is made).
func removedAt(remove []Removal, seen []int, name string) bool {
	out := false
	for i, r := range remove {
		if strings.EqualFold(r.Name, name) {
			if r.Index < 0 || r.Index == seen[i] {
				out = true
			}
			seen[i]++
		}
	}
	return out
}

// AddHeader records a field to prepend when the message is written out. It
// is how capability methods such as DKIMPlugin.SignMessage report fields;
// stage handlers return theirs in Result.AddHeaders instead.
func (m *Message) AddHeader(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.added = append(m.added, Field{Name: name, Value: value})
}

// AddedHeaders returns the fields recorded with AddHeader, in call order.
func (m *Message) AddedHeaders() []Field {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Field(nil), m.added...)
}

// lineEnd returns the index just past the line end that follows pos, or len(b).
func lineEnd(b []byte, pos int) int {
	if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
		return pos + i + 1
	}
	return len(b)
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}
