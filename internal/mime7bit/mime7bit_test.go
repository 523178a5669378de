package mime7bit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// leaves decodes msg the way a MIME reader does and returns each leaf
// part's media type and decoded body.
func leaves(t *testing.T, raw []byte) []string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	return walk(t, m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, 0)
}

func walk(t *testing.T, ctype, cte string, body io.Reader, depth int) []string {
	t.Helper()
	require.Less(t, depth, 30)
	media, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		media = "text/plain"
	}
	switch {
	case strings.HasPrefix(media, "multipart/"):
		var out []string
		r := multipart.NewReader(body, params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return out
			}
			require.NoError(t, err)
			out = append(out, walk(t, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1)...)
		}
	case media == "message/rfc822":
		m, err := mail.ReadMessage(body)
		require.NoError(t, err)
		return walk(t, m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, depth+1)
	}
	switch strings.ToLower(cte) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	require.NoError(t, err)
	// Line ends are CRLF on the wire; QP and a reader of 8bit agree on the text.
	return []string{media + ": " + strings.ReplaceAll(string(b), "\r\n", "\n")}
}

const mixed = "From: a@example.org\r\nTo: b@example.net\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
	"This is a multipart message.\r\n" +
	"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln = 100 €\r\n" +
	"--b1\r\nContent-Type: text/plain\r\n\r\nplain ascii, untouched\r\n" +
	"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\xff\xfe binary-ish\r\n" +
	"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInnen: ä\r\n" +
	"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>é</p>\r\n--b2--\r\n" +
	"--b1--\r\nepilogue\r\n"

func TestConvert(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // substrings of the output
	}{
		{"7-bit message unchanged", "Subject: x\r\n\r\nhello\r\n", nil},
		{"plain 8-bit, no MIME", "Subject: x\r\n\r\nGrüße\r\n", []string{"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"}},
		{"not UTF-8", "Subject: x\r\n\r\nCaf\xe9\r\n", []string{"charset=unknown-8bit", "Caf=E9"}},
		{"8bit text part", "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nä\r\n", []string{"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A4\r\n"}},
		{"long ASCII line", "Subject: x\r\n\r\n" + strings.Repeat("a", 1200) + "\r\n", []string{"Content-Transfer-Encoding: quoted-printable", "=\r\n"}},
		{"mixed", mixed, []string{"--b1\r\nContent-Type: text/plain\r\n\r\nplain ascii, untouched\r\n--b1\r\n", "This is a multipart message.\r\n", "--b1--\r\nepilogue\r\n", "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: 7bit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Convert([]byte(tt.in))
			require.NoError(t, err)
			assert.False(t, Needs(out), "7-bit:\n%s", out)
			if tt.want == nil {
				assert.Equal(t, tt.in, string(out))
			}
			for _, w := range tt.want {
				assert.Contains(t, string(out), w)
			}
			assert.Equal(t, leaves(t, []byte(tt.in)), leaves(t, out), "the same content, decoded")
		})
	}
}

func TestConvertImpossible(t *testing.T) {
	for name, in := range map[string]string{
		"8-bit header":           "Subject: Grüße\r\n\r\nä\r\n",
		"long header line":       "Subject: " + strings.Repeat("s", 1000) + "\r\n\r\nx\r\n",
		"8-bit preamble":         "Content-Type: multipart/mixed; boundary=b\r\n\r\npré\r\n--b\r\n\r\nx\r\n--b--\r\n",
		"broken base64":          "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\r\n",
		"no boundary":            "Content-Type: multipart/mixed\r\n\r\nä\r\n",
		"boundary never appears": "Content-Type: multipart/mixed; boundary=b\r\n\r\nä\r\n",
		"message/global":         "Content-Type: message/global\r\n\r\nSubject: ä\r\n\r\nä\r\n",
		"too deep":               strings.Repeat("Content-Type: message/rfc822\r\n\r\n", MaxDepth+2) + "\r\nä\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Convert([]byte(in))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrImpossible), "%v", err)
		})
	}
}

func FuzzConvert(f *testing.F) {
	f.Add([]byte(mixed))
	f.Add([]byte("Subject: x\r\n\r\nGrüße\r\n"))
	f.Add([]byte("Subject: " + strings.Repeat("s", 1000) + "\r\n\r\nx\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xff\r\n--b\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Convert(in)
		if err != nil {
			if !errors.Is(err, ErrImpossible) {
				t.Fatalf("error %v does not wrap ErrImpossible", err)
			}
			return
		}
		if Needs(out) {
			t.Fatalf("not 7-bit: %q -> %q", in, out)
		}
	})
}

// BenchmarkConvert measures the conversion of a 1 MiB multipart message:
// a UTF-8 text part and an 8-bit attachment.
func BenchmarkConvert(b *testing.B) {
	text := strings.Repeat("Grüße aus Köln, schöne Straße. ", 16384)
	bin := strings.Repeat("\xc3\xa9\xff\x00\x10 binary\r\n", 32768)
	msg := []byte("From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + bin + "\r\n--b--\r\n")
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Convert(msg); err != nil {
			b.Fatal(err)
		}
	}
}
