package canon

import (
	"bytes"
	"testing"

	"github.com/elemta/elemta/registry"
)

// FuzzBody checks properties every canonical body has: CRLF line ends
// only, no trailing empty lines, and canonicalizing twice changes nothing.
func FuzzBody(f *testing.F) {
	for _, b := range bodies {
		f.Add([]byte(b.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, a := range []Algorithm{Simple, Relaxed} {
			c := BodyBytes(a, body)
			if bytes.Contains(bytes.ReplaceAll(c, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("%s: bare LF in %q", a, c)
			}
			if len(c) > 0 && !bytes.HasSuffix(c, []byte("\r\n")) || bytes.HasSuffix(c, []byte("\r\n\r\n")) {
				t.Fatalf("%s: bad ending in %q", a, c)
			}
			if again := BodyBytes(a, c); !bytes.Equal(again, c) {
				t.Fatalf("%s: not idempotent: %q -> %q", a, c, again)
			}
		}
	})
}

// FuzzHeader checks that relaxed header canonicalization of any field the
// message parser accepts is idempotent and yields one CRLF-terminated line.
func FuzzHeader(f *testing.F) {
	f.Add([]byte("B : Y\t\r\n\tZ  \r\n"))
	f.Add([]byte("X-H: a : b :c\r\n"))
	f.Fuzz(func(t *testing.T, field []byte) {
		m, err := registry.ParseMessage(append(bytes.Clone(field), "\r\n\r\n"...), registry.Envelope{})
		if err != nil || len(m.Header) != 1 {
			return
		}
		c := Header(Relaxed, m.Header[0].Raw)
		if !bytes.HasSuffix(c, []byte("\r\n")) || bytes.Count(c, []byte("\n")) != 1 {
			t.Fatalf("not one line: %q", c)
		}
		if again := Header(Relaxed, c); !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %q -> %q", c, again)
		}
	})
}
