// The streaming checks of a message being received.

package smtpd

import (
	"bytes"
	"fmt"

	"github.com/emersion/go-smtp"
)

// checker enforces, on a message fed to it chunk by chunk, what the
// receiver refuses at DATA and BDAT: NUL bytes, CR or LF outside CRLF (the
// ambiguity SMTP smuggling abuses), lines longer than lineLimit (CRLF
// included; go-smtp checks DATA but not BDAT chunks) and a header section
// (every line before the first empty one) over headerLimit bytes. It
// keeps a few counters, never the message.
type checker struct {
	lineLimit   int
	headerLimit int64

	prevCR bool  // the last chunk ended in CR: LF must come next
	line   int   // bytes of the current line so far
	header bool  // still in the header section
	hbytes int64 // bytes of the header section so far
	hlines int64 // lines of the header section so far
}

func newChecker(lineLimit int, headerLimit int64) *checker {
	return &checker{lineLimit: lineLimit, headerLimit: headerLimit, header: true}
}

// errHeaderTooBig refuses a header section over the limit: 552 5.3.4, a
// size limit like max_message_size (RFC 3463: message too big for
// system), not a malformed message (5.6.0), and permanent, because the
// same message would be refused again.
func errHeaderTooBig(limit int64) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: fmt.Sprintf("Header section too large (over %d bytes)", limit)}
}

// write checks the next chunk.
func (c *checker) write(p []byte) error {
	if bytes.IndexByte(p, 0) >= 0 {
		return errNUL
	}
	for len(p) > 0 {
		if c.prevCR {
			if p[0] != '\n' {
				return errBareLF
			}
			c.prevCR = false
			p = p[1:]
			if err := c.endLine(1); err != nil {
				return err
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if j := bytes.IndexByte(seg, '\r'); j >= 0 && j != len(seg)-1 {
			return errBareLF
		}
		crLast := len(seg) > 0 && seg[len(seg)-1] == '\r'
		if i < 0 { // the line goes on in the next chunk
			c.line += len(seg)
			c.prevCR = crLast
			return c.partial()
		}
		if !crLast {
			return errBareLF
		}
		if err := c.endLine(len(seg) + 1); err != nil {
			return err
		}
		p = p[i+1:]
	}
	return nil
}

// partial checks the limits against the line begun so far.
func (c *checker) partial() error {
	if c.line > c.lineLimit {
		return errLong
	}
	blank := c.line == 1 && c.prevCR // maybe the empty line, which ends the header
	if c.header && !blank && c.hbytes+int64(c.line) > c.headerLimit {
		return errHeaderTooBig(c.headerLimit)
	}
	return nil
}

// endLine ends the current line with its last n bytes.
func (c *checker) endLine(n int) error {
	total := c.line + n
	c.line = 0
	if total > c.lineLimit {
		return errLong
	}
	if !c.header {
		return nil
	}
	if total == 2 { // CRLF alone: the body follows
		c.header = false
		return nil
	}
	c.hbytes += int64(total)
	c.hlines++
	if c.hbytes > c.headerLimit {
		return errHeaderTooBig(c.headerLimit)
	}
	return nil
}

// close checks the end of the message: a CR cannot be its last byte.
func (c *checker) close() error {
	if c.prevCR {
		return errBareLF
	}
	return c.partial()
}
