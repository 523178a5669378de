package canon

import (
	"bytes"
	"testing"
)

// referenceBody is the line-at-a-time canonicalizer Body replaced: each
// line cut, trimmed, reduced and written with its own CRLF. FuzzBodyReference
// holds the streaming Body to it.
func referenceBody(a Algorithm, body []byte) []byte {
	var out bytes.Buffer
	pendingBlank, wrote := 0, false
	for len(body) > 0 {
		line, rest, found := bytes.Cut(body, []byte("\n"))
		body = rest
		if found { // a CR with no LF after it, at the very end, is content
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if a == Relaxed {
			var r []byte
			space := false
			for _, c := range line {
				if c == ' ' || c == '\t' {
					space = true
					continue
				}
				if space {
					r = append(r, ' ')
					space = false
				}
				r = append(r, c)
			}
			line = r
		}
		if len(line) == 0 {
			if found {
				pendingBlank++
			}
			continue
		}
		for ; pendingBlank > 0; pendingBlank-- {
			out.WriteString("\r\n")
		}
		out.Write(line)
		out.WriteString("\r\n")
		wrote = true
	}
	if !wrote && a == Simple {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

func FuzzBodyReference(f *testing.F) {
	for _, b := range bodies {
		f.Add([]byte(b.body))
	}
	f.Add([]byte("a\r\n\r\n  \r\nb  c\r\n\n\r\nd\r\r\n\t\r\n"))
	f.Add([]byte("x \r\n\r\ny\n\r\nz"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, a := range []Algorithm{Simple, Relaxed} {
			want := referenceBody(a, body)
			var got bytes.Buffer
			if err := Body(&got, a, body); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("%s: Body(%q) = %q, reference %q", a, body, got.Bytes(), want)
			}
		}
	})
}
