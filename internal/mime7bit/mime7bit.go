// Package mime7bit converts a message with 8-bit content to 7-bit, part
// by part (RFC 6152 §3, RFC 2045): what a relay must do, or refuse, when
// the next hop does not offer 8BITMIME.
//
// Each leaf part whose body holds a byte over 127 or a line over 998
// bytes is re-encoded: text/* as quoted-printable, anything else as
// base64, its Content-Transfer-Encoding replaced. Multiparts keep their
// boundaries, preamble and epilogue; message/rfc822 parts are converted
// inside. A message without MIME-Version gets MIME-Version: 1.0 and, when
// it had no Content-Type, text/plain with charset utf-8 (a valid UTF-8
// body) or unknown-8bit (RFC 1428). Parts that are already 7-bit are
// copied byte for byte.
//
// Conversion is refused (ErrImpossible, a 5.6.3 for the sender) for
// header lines over 998 bytes, 8-bit header fields (SMTPUTF8's: they cannot be made 7-bit without
// changing addresses), an 8-bit preamble or epilogue, 8-bit bytes in a
// part labelled quoted-printable or base64 (its encoding is broken),
// message/global, message/partial and message/external-body parts with
// 8-bit content, a multipart without a boundary, and nesting deeper than
// MaxDepth.
//
// What it breaks: the bytes change, so every DKIM signature over the body
// (bh=) and every one whose h= covers Content-Transfer-Encoding,
// Content-Type or MIME-Version fails afterwards, and so does the newest
// ARC-Message-Signature. Sign (and seal) after converting, never before.
package mime7bit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/elemta/elemta/registry"
)

// MaxDepth bounds the nesting of multiparts and message/rfc822 parts
// converted.
const MaxDepth = 20

// MaxLine is RFC 5322 §2.1.1's line length limit without CRLF: a longer
// line is re-encoded even when it is ASCII.
const MaxLine = 998

// ErrImpossible is why a message cannot be converted.
var ErrImpossible = errors.New("cannot convert to 7-bit")

// Needs reports whether raw must be converted for a peer without
// 8BITMIME: a byte over 127 or a line over MaxLine bytes.
func Needs(raw []byte) bool {
	return !is7Bit(raw)
}

// Convert returns raw as 7-bit, or raw itself when it needs nothing. The
// error wraps ErrImpossible and says which part could not be converted.
func Convert(raw []byte) ([]byte, error) {
	if !Needs(raw) {
		return raw, nil
	}
	out, err := convert(raw, 0, true)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func impossible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrImpossible, fmt.Sprintf(format, args...))
}

// convert converts one entity (a message or a body part). top is the
// message itself, whose missing MIME-Version is added.
func convert(entity []byte, depth int, top bool) ([]byte, error) {
	if is7Bit(entity) {
		return entity, nil
	}
	if depth > MaxDepth {
		return nil, impossible("MIME nesting deeper than %d", MaxDepth)
	}
	if !top && len(bytes.TrimSpace(entity)) == 0 {
		return entity, nil
	}
	m, err := registry.ParseMessage(entity, registry.Envelope{})
	if err != nil {
		return nil, impossible("%v", err)
	}
	if !is8BitFree(m.HeaderBytes()) {
		return nil, impossible("8-bit header field (the message needs SMTPUTF8)")
	}
	if !is7Bit(m.HeaderBytes()) {
		return nil, impossible("header line over %d bytes", MaxLine)
	}
	eol := "\r\n"
	if !bytes.Contains(entity, []byte("\r\n")) {
		eol = "\n"
	}
	ctype := m.Header.Get("Content-Type")
	media, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		media, params = "text/plain", nil // RFC 2045 §5.2's default
	}
	media = strings.ToLower(media)
	cte := strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Transfer-Encoding")))
	body := m.Body()

	var newBody []byte
	newCTE := ""
	var extra []string // fields to add
	switch {
	case strings.HasPrefix(media, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			return nil, impossible("%s without a boundary", media)
		}
		if newBody, err = convertMultipart(body, boundary, depth, eol); err != nil {
			return nil, err
		}
		if cte != "" && cte != "7bit" {
			newCTE = "7bit"
		}
	case media == "message/rfc822":
		if newBody, err = convert(body, depth+1, false); err != nil {
			return nil, err
		}
		if cte != "" && cte != "7bit" {
			newCTE = "7bit"
		}
	case strings.HasPrefix(media, "message/"):
		return nil, impossible("8-bit %s part", media)
	case cte == "quoted-printable" || cte == "base64":
		if !is7Bit(body) {
			return nil, impossible("8-bit bytes in a %s part", cte)
		}
		newBody = body
	default:
		if strings.HasPrefix(media, "text/") {
			newBody, newCTE = encodeQP(body), "quoted-printable"
		} else {
			newBody, newCTE = encodeBase64(body), "base64"
		}
		if top && ctype == "" {
			charset := "unknown-8bit"
			if utf8.Valid(body) {
				charset = "utf-8"
			}
			extra = append(extra, "Content-Type: text/plain; charset="+charset)
		}
	}
	if top && m.Header.Get("MIME-Version") == "" {
		extra = append([]string{"MIME-Version: 1.0"}, extra...)
	}
	if newCTE != "" {
		extra = append(extra, "Content-Transfer-Encoding: "+newCTE)
	}
	headerEnd, bodyStart := len(m.HeaderBytes()), len(entity)-len(body)
	size := headerEnd + (bodyStart - headerEnd) + len(eol) + len(newBody)
	for _, f := range extra {
		size += len(f) + len(eol)
	}
	var out bytes.Buffer
	out.Grow(size) // one allocation: the parts are converted already
	for _, f := range m.Header {
		if newCTE != "" && strings.EqualFold(f.Name, "Content-Transfer-Encoding") {
			continue
		}
		out.Write(f.Raw)
	}
	for _, f := range extra {
		out.WriteString(f + eol)
	}
	out.Write(entity[headerEnd:bodyStart]) // the blank line, as it was
	if bodyStart == headerEnd && len(newBody) > 0 {
		out.WriteString(eol) // a message that was all header gets its blank line
	}
	out.Write(newBody)
	return out.Bytes(), nil
}

// convertMultipart converts each part of a multipart body, keeping the
// delimiter lines, the preamble and the epilogue as they are.
func convertMultipart(body []byte, boundary string, depth int, eol string) ([]byte, error) {
	dash := []byte("--" + boundary)
	// Find the delimiter lines.
	type span struct{ start, end int } // a delimiter line, its line end included
	var delims []span
	closed := false
	for pos := 0; pos < len(body) && !closed; {
		end := bytes.IndexByte(body[pos:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += pos + 1
		}
		line := bytes.TrimRight(body[pos:end], "\r\n")
		if rest, ok := bytes.CutPrefix(line, dash); ok {
			rest = bytes.TrimRight(rest, " \t")
			switch {
			case len(rest) == 0:
				delims = append(delims, span{pos, end})
			case string(rest) == "--":
				delims = append(delims, span{pos, end})
				closed = true
			}
		}
		pos = end
	}
	if len(delims) == 0 {
		return nil, impossible("multipart without its boundary line")
	}
	preamble := body[:delims[0].start]
	epilogue := body[delims[len(delims)-1].end:]
	if !closed {
		epilogue = nil // the last part runs to the end
	}
	if !is8BitFree(preamble) || !is8BitFree(epilogue) {
		return nil, impossible("8-bit multipart preamble or epilogue")
	}
	pieces := [][]byte{preamble}
	for i, d := range delims {
		pieces = append(pieces, body[d.start:d.end])
		if i == len(delims)-1 && closed {
			break
		}
		next := len(body)
		if i+1 < len(delims) {
			next = delims[i+1].start
		}
		part := body[d.end:next]
		// The line end before the next delimiter belongs to it (RFC 2046 §5.1.1).
		tail := 0
		if i+1 < len(delims) {
			switch {
			case bytes.HasSuffix(part, []byte("\r\n")):
				tail = 2
			case bytes.HasSuffix(part, []byte("\n")):
				tail = 1
			}
		}
		conv, err := convert(part[:len(part)-tail], depth+1, false)
		if err != nil {
			return nil, err
		}
		pieces = append(pieces, conv)
		if tail > 0 {
			pieces = append(pieces, part[len(part)-tail:])
		} else if i+1 < len(delims) && len(conv) > 0 {
			pieces = append(pieces, []byte(eol))
		}
	}
	pieces = append(pieces, epilogue)
	return bytes.Join(pieces, nil), nil
}

// encodeQP encodes body as quoted-printable with CRLF line ends.
func encodeQP(body []byte) []byte {
	encoded := 0 // bytes written =XX
	for _, c := range body {
		if c >= 0x80 || c == '=' {
			encoded++
		}
	}
	var b bytes.Buffer
	b.Grow(len(body) + 2*encoded + 3*(len(body)+2*encoded)/75 + 4) // with a soft line break every 76
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write(body) // a bytes.Buffer does not fail
	_ = w.Close()
	if bytes.HasSuffix(body, []byte("\n")) && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// encodeBase64 encodes body as base64 in lines of 76 characters.
func encodeBase64(body []byte) []byte {
	const line = 57 // bytes per 76-character line
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(body))+(len(body)/line+1)*2)
	for len(body) > 0 {
		n := min(len(body), line)
		out = base64.StdEncoding.AppendEncode(out, body[:n])
		out = append(out, '\r', '\n')
		body = body[n:]
	}
	return out
}

// is7Bit reports whether p has no byte over 127 and no line over MaxLine
// bytes (line end excluded).
func is7Bit(p []byte) bool {
	if !is8BitFree(p) {
		return false
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return len(p) <= MaxLine
		}
		line := p[:i]
		if len(bytes.TrimSuffix(line, []byte("\r"))) > MaxLine {
			return false
		}
		p = p[i+1:]
	}
	return true
}

func is8BitFree(p []byte) bool {
	for _, c := range p {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
