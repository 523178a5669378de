package canon

import (
	"bytes"
	"fmt"
	"io"
	"strings"
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
	if a == Relaxed {
		return relaxedHeader(field)
	}
	return toCRLF(field)
}

// relaxedHeader applies RFC 6376 §3.4.2: lowercase the name, unfold, turn
// each run of white space into one space, drop white space at the end of
// the value and around the colon.
func relaxedHeader(field []byte) []byte {
	name, value, ok := bytes.Cut(field, []byte(":"))
	out := make([]byte, 0, len(field)+2)
	out = append(out, bytes.ToLower(bytes.TrimRight(name, " \t\r\n"))...)
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

// toCRLF returns field with every line ending in CRLF.
func toCRLF(field []byte) []byte {
	out := make([]byte, 0, len(field)+2)
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
func Body(w io.Writer, a Algorithm, body []byte) error {
	var pendingBlank int // empty lines seen but not yet written
	wrote := false
	crlf := []byte("\r\n")
	for len(body) > 0 {
		line, rest, found := bytes.Cut(body, []byte("\n"))
		body = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if a == Relaxed {
			line = relaxedLine(line)
		}
		if len(line) == 0 {
			if found {
				pendingBlank++
			}
			continue
		}
		for ; pendingBlank > 0; pendingBlank-- {
			if _, err := w.Write(crlf); err != nil {
				return err
			}
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if _, err := w.Write(crlf); err != nil { // a missing final CRLF is added
			return err
		}
		wrote = true
	}
	if !wrote && a == Simple {
		_, err := w.Write(crlf) // an empty simple body is one CRLF
		return err
	}
	return nil
}

// relaxedLine reduces white-space runs to one space and drops trailing
// white space (RFC 6376 §3.4.4).
func relaxedLine(line []byte) []byte {
	if bytes.IndexByte(line, '\t') < 0 && !bytes.Contains(line, []byte("  ")) && !bytes.HasSuffix(line, []byte(" ")) {
		return line // the common case: nothing to change, no copy
	}
	out := make([]byte, 0, len(line))
	space := false
	for _, c := range line {
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space {
			out = append(out, ' ')
			space = false
		}
		out = append(out, c)
	}
	return out
}

// BodyBytes returns the canonical body.
func BodyBytes(a Algorithm, body []byte) []byte {
	var b bytes.Buffer
	_ = Body(&b, a, body) // bytes.Buffer never fails
	return b.Bytes()
}
