package smtpd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The checker gives the same verdict whatever the chunking: every message
// is fed whole, byte by byte and split at every position.
func TestChecker(t *testing.T) {
	const lineLimit, headerLimit = 20, 30
	tests := []struct {
		name, msg string
		want      error // nil, errNUL, errBareLF, errLong or errHeader
		hlines    int64
	}{
		{name: "clean", msg: "A: 1\r\nB: 2\r\n\r\nbody\r\n", hlines: 2},
		{name: "no body", msg: "A: 1\r\n", hlines: 1},
		{name: "last line without CRLF", msg: "A: 1\r\n\r\nbody", hlines: 1},
		{name: "empty", msg: ""},
		{name: "NUL", msg: "A: 1\r\n\r\nb\x00dy\r\n", want: errNUL},
		{name: "bare LF", msg: "A: 1\nB: 2\r\n\r\n", want: errBareLF},
		{name: "bare CR", msg: "A: 1\r\n\r\nb\rdy\r\n", want: errBareLF},
		{name: "CR CR LF", msg: "A: 1\r\r\n", want: errBareLF},
		{name: "CR at the end", msg: "A: 1\r\n\r\nbody\r", want: errBareLF},
		{name: "LF first", msg: "\nA: 1\r\n", want: errBareLF},
		{name: "line at the limit", msg: "A: 1\r\n\r\n" + strings.Repeat("x", lineLimit-2) + "\r\n", hlines: 1},
		{name: "line over the limit", msg: "A: 1\r\n\r\n" + strings.Repeat("x", lineLimit-1) + "\r\n", want: errLong},
		{name: "last line over the limit, no CRLF", msg: "A: 1\r\n\r\n" + strings.Repeat("x", lineLimit+1), want: errLong},
		{name: "header at the limit", msg: strings.Repeat("H: 12345678\r\n", 2) + "H:\r\n\r\n" + strings.Repeat("b\r\n", 50), hlines: 3},
		{name: "header over the limit", msg: strings.Repeat("H: 12345678\r\n", 2) + "H: \r\n\r\nbody\r\n", want: errHeaderTooBig(headerLimit)},
		{name: "all header, over the limit", msg: strings.Repeat("H: 12345678\r\n", 3), want: errHeaderTooBig(headerLimit)},
		{name: "body lines do not count", msg: "A: 1\r\n\r\n" + strings.Repeat("H: 12345678\r\n", 10), hlines: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			feed := func(chunks ...string) (*checker, error) {
				c := newChecker(lineLimit, headerLimit)
				for _, ch := range chunks {
					if err := c.write([]byte(ch)); err != nil {
						return c, err
					}
				}
				return c, c.close()
			}
			check := func(how string, c *checker, err error) {
				if tt.want == nil {
					require.NoError(t, err, how)
					assert.Equal(t, tt.hlines, c.hlines, how)
					return
				}
				assert.Equal(t, tt.want, err, how)
			}
			c, err := feed(tt.msg)
			check("whole", c, err)
			bytewise := make([]string, len(tt.msg))
			for i := range tt.msg {
				bytewise[i] = tt.msg[i : i+1]
			}
			c, err = feed(bytewise...)
			check("byte by byte", c, err)
			for i := range len(tt.msg) {
				c, err := feed(tt.msg[:i], tt.msg[i:])
				check("split at "+string(rune('0'+i%10)), c, err)
			}
		})
	}
}

// BenchmarkChecker measures the streaming checks over 32 KiB chunks (the
// size receive reads) of 78-byte lines.
func BenchmarkChecker(b *testing.B) {
	chunk := []byte(strings.Repeat(strings.Repeat("x", 76)+"\r\n", 32<<10/78))
	b.SetBytes(int64(len(chunk)))
	c := newChecker(2000, DefaultMaxHeaderBytes)
	if err := c.write([]byte("Subject: x\r\n\r\n")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := c.write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzChecker compares the streaming checker, fed in two chunks split
// anywhere, with the whole-message checks it replaced (NUL first, then
// line ends, then line length) and a direct count of the header section.
func FuzzChecker(f *testing.F) {
	f.Add([]byte("A: 1\r\n\r\nbody\r\n"), uint16(3))
	f.Add([]byte("A: 1\nB\r\n"), uint16(0))
	f.Add([]byte("A: 1\r\n\r\nb\r"), uint16(9))
	f.Add([]byte("Subject: "+strings.Repeat("x", 30)+"\r\n\r\n"), uint16(17))
	f.Fuzz(func(t *testing.T, msg []byte, split uint16) {
		const lineLimit, headerLimit = 24, 40
		cut := int(split) % (len(msg) + 1)
		c := newChecker(lineLimit, headerLimit)
		err := c.write(msg[:cut])
		if err == nil {
			err = c.write(msg[cut:])
		}
		if err == nil {
			err = c.close()
		}
		want := referenceCheck(msg, lineLimit, headerLimit)
		if (err == nil) != (want == nil) {
			t.Fatalf("%q split at %d: streaming %v, reference %v", msg, cut, err, want)
		}
		// With several faults the first in the stream wins; when there is
		// one kind only, both must name it.
		if want != nil && err.Error() != want.Error() && kinds(msg, lineLimit, headerLimit) == 1 {
			t.Fatalf("%q split at %d: streaming %v, reference %v", msg, cut, err, want)
		}
	})
}

// referenceCheck is the receiver's former whole-message check, plus the
// header limit.
func referenceCheck(b []byte, lineLimit int, headerLimit int64) error {
	if strings.IndexByte(string(b), 0) >= 0 {
		return errNUL
	}
	if badEnds(b) {
		return errBareLF
	}
	if longLineRef(b, lineLimit) {
		return errLong
	}
	if headerBytes(b) > headerLimit {
		return errHeaderTooBig(headerLimit)
	}
	return nil
}

func kinds(b []byte, lineLimit int, headerLimit int64) int {
	n := 0
	for _, bad := range []bool{strings.IndexByte(string(b), 0) >= 0, badEnds(b), longLineRef(b, lineLimit), headerBytes(b) > headerLimit} {
		if bad {
			n++
		}
	}
	return n
}

func badEnds(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return true
			}
			i++
		case '\n':
			return true
		}
	}
	return false
}

func longLineRef(b []byte, limit int) bool {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if len(line) > limit {
			return true
		}
	}
	return false
}

// headerBytes counts the lines before the first empty one.
func headerBytes(b []byte) int64 {
	n := int64(0)
	for _, line := range strings.SplitAfter(string(b), "\r\n") {
		if line == "\r\n" {
			break
		}
		n += int64(len(line))
	}
	return n
}
