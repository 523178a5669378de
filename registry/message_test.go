package registry

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMessage(t *testing.T) {
	raw := []byte("Received: from a\r\n\tby b; Tue, 1 Dec 2026\r\nFrom: Alice <a@example.test>\r\nSubject:  folded\r\n  subject\r\nX-Empty:\r\n\r\nbody line\r\n")
	m, err := ParseMessage(raw, Envelope{MailFrom: "a@example.test"})
	require.NoError(t, err)
	require.Len(t, m.Header, 4)
	assert.Equal(t, "from a by b; Tue, 1 Dec 2026", m.Header.Get("received"))
	assert.Equal(t, "Received: from a\r\n\tby b; Tue, 1 Dec 2026\r\n", string(m.Header[0].Raw))
	assert.Equal(t, "folded subject", m.Header.Get("Subject"))
	assert.Equal(t, "", m.Header.Get("X-Empty"))
	assert.Equal(t, "body line\r\n", string(m.Body()))
	assert.Equal(t, string(raw[:len(raw)-len("\r\nbody line\r\n")]), string(m.HeaderBytes()))
	assert.Equal(t, &raw[len(raw)-11], &m.Body()[0], "Body is a view of Raw, not a copy")
}

func TestParseMessageEdgeCases(t *testing.T) {
	tests := []struct {
		name, raw, err string
		fields         int
		body           string
	}{
		{name: "bare LF", raw: "A: 1\nB: 2\n\nbody\n", fields: 2, body: "body\n"},
		{name: "no body", raw: "A: 1\r\n", fields: 1, body: ""},
		{name: "empty body", raw: "A: 1\r\n\r\n", fields: 1, body: ""},
		{name: "NUL in body", raw: "A: 1\r\n\r\nx\x00y", fields: 1, body: "x\x00y"},
		{name: "no trailing newline", raw: "A: 1", fields: 1, body: ""},
		{name: "empty", raw: "", err: "empty message"},
		{name: "body without header", raw: "hello world\r\n", err: `line 1: not a header field`},
		{name: "space in name", raw: "A: 1\r\nBad Name: 2\r\n", err: "line 2: not a header field"},
		{name: "leading continuation", raw: " x\r\nA: 1\r\n", err: "line 1: continuation line before any header field"},
		{name: "colon first", raw: ": x\r\n", err: "line 1: not a header field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.raw), Envelope{})
			if tt.err != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrMalformedHeader))
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, m.Header, tt.fields)
			assert.Equal(t, tt.body, string(m.Body()))
		})
	}
}

func TestRewrite(t *testing.T) {
	raw := "Authentication-Results: mx.example; spf=pass\r\nFrom: a@example.test\r\nAuthentication-Results: other; dkim=pass\r\n" +
		"Authentication-Results: mx.example; dkim=pass\r\n\r\nbody \r\n\r\n"
	m, err := ParseMessage([]byte(raw), Envelope{})
	require.NoError(t, err)
	m.AddHeader("DKIM-Signature", "v=1; d=example.test")
	out := m.Rewrite(
		[]Field{{"Authentication-Results", "mx.example; spf=fail"}, {"X-Spam", "no"}},
		[]Removal{{Name: "authentication-results", Index: 0}, {Name: "Authentication-Results", Index: 2}},
	)
	assert.Equal(t, "DKIM-Signature: v=1; d=example.test\r\nAuthentication-Results: mx.example; spf=fail\r\nX-Spam: no\r\n"+
		"From: a@example.test\r\nAuthentication-Results: other; dkim=pass\r\n\r\nbody \r\n\r\n", string(out))

	lf, err := ParseMessage([]byte("A: 1\n\nb\n"), Envelope{})
	require.NoError(t, err)
	assert.Equal(t, "X: y\nA: 1\n\nb\n", string(lf.Rewrite([]Field{{"X", "y"}}, nil)), "added fields follow the message's line ending")
	assert.Equal(t, "A: 1\n\nb\n", string(lf.Rewrite(nil, []Removal{{Name: "Z", Index: -1}})), "no change, same bytes")

	// The line end is the first line's, even when the first field is folded
	// and its last line ends in a lone CR (FuzzSignVerify, 388c1130f5aa18de).
	cr, err := ParseMessage([]byte("From: a@example.com\r\n \r"), Envelope{})
	require.NoError(t, err)
	assert.Equal(t, "X: y\r\nFrom: a@example.com\r\n \r", string(cr.Rewrite([]Field{{"X", "y"}}, nil)))
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("A: 1\r\n\r\nbody"))
	f.Add([]byte("A: 1\n b\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseMessage(raw, Envelope{})
		if err != nil {
			return
		}
		if got := m.Rewrite(nil, nil); string(got) != string(raw) {
			t.Fatalf("rewrite without changes altered the message:\n%q\n%q", raw, got)
		}
	})
}

// A field folded over many lines is unfolded in linear time: a hostile
// header of 20,000 continuation lines (240 KB) must not allocate gigabytes
// (the quadratic version did, about 2.4 GB).
func TestParseMessageManyContinuationLines(t *testing.T) {
	raw := []byte("Subject: x\r\n" + strings.Repeat(" continued\r\n", 20000) + "\r\nbody\r\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := ParseMessage(raw, Envelope{})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Len(t, m.Header.Get("Subject"), len("x")+20000*len(" continued"))
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(20<<20), "bytes allocated while parsing")
}

// ParseMessage does not copy the message: Name and unfolded Value are
// substrings of one copy of the header section (never of Raw, which the
// caller owns), the Header slice is allocated once at its final size, and
// only a folded Value is built anew. Changing raw afterwards changes no
// string.
func TestParseMessageSharesHeaderCopy(t *testing.T) {
	raw := []byte("From: a@example.test\r\nSubject: one\r\n two\r\nX-Empty:\r\nTo:  b@example.test \r\n\r\nbody\r\n")
	m, err := ParseMessage(raw, Envelope{})
	require.NoError(t, err)
	require.Len(t, m.Header, 4)
	assert.Equal(t, 4, cap(m.Header), "Header sized exactly")
	hdr := unsafe.StringData(m.Header[0].Name)
	within := func(s string) bool {
		if s == "" {
			return true
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		base := uintptr(unsafe.Pointer(hdr))
		return p >= base && p < base+uintptr(len(m.HeaderBytes()))
	}
	for _, f := range m.Header {
		assert.True(t, within(f.Name), "Name %q is a substring of the header copy", f.Name)
	}
	assert.True(t, within(m.Header[0].Value))
	assert.Equal(t, "b@example.test", m.Header[3].Value)
	assert.True(t, within(m.Header[3].Value))
	assert.Equal(t, "one two", m.Header[1].Value)
	assert.False(t, within(m.Header[1].Value), "a folded Value is a new string")
	assert.NotEqual(t, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&raw[0])), "not a view of raw")

	copy(raw, "XXXX")
	assert.Equal(t, "From", m.Header[0].Name, "the caller's buffer is not aliased")

	allocs := testing.AllocsPerRun(20, func() {
		if _, err := ParseMessage(raw, Envelope{}); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 4.0, "Message, Header slice, header copy, one folded Value")
}

// WriteRewritten writes what Rewrite returns, and reports its length and
// the writer's error.
func TestWriteRewritten(t *testing.T) {
	raw := "A: 1\r\nX-Remove: y\r\nB: 2\r\n folded\r\n\r\nbody\r\n"
	m, err := ParseMessage([]byte(raw), Envelope{})
	require.NoError(t, err)
	m.AddHeader("Sig", "s")
	add := []Field{{"X-New", "n"}}
	rm := []Removal{{Name: "x-remove", Index: -1}}
	want := m.Rewrite(add, rm)
	var b strings.Builder
	n, err := m.Rewriter(add, rm).WriteTo(&b)
	require.NoError(t, err)
	assert.Equal(t, string(want), b.String())
	assert.Equal(t, int64(len(want)), n)
	assert.Equal(t, "Sig: s\r\nX-New: n\r\nA: 1\r\nB: 2\r\n folded\r\n\r\nbody\r\n", b.String())

	for limit := range len(want) {
		fw := &failWriter{left: limit}
		n, err := m.WriteRewritten(fw, add, rm)
		require.ErrorIs(t, err, errFull, "limit %d", limit)
		assert.Equal(t, int64(limit), n, "bytes reported written before the failure")
	}
}

// WriteRewritten allocates nothing per field: a header of 10,000 fields
// costs the same few allocations as one of two.
func TestWriteRewrittenAllocs(t *testing.T) {
	raw := []byte(strings.Repeat("X-Trace: hop\r\n", 10000) + "Subject: x\r\n\r\nbody\r\n")
	m, err := ParseMessage(raw, Envelope{})
	require.NoError(t, err)
	rm := []Removal{{Name: "x-trace", Index: 3}, {Name: "subject", Index: -1}}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := m.WriteRewritten(io.Discard, []Field{{"A", "b"}}, rm); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 6.0)
	out := string(m.Rewrite(nil, rm))
	assert.Equal(t, len(raw)-len("X-Trace: hop\r\n")-len("Subject: x\r\n"), len(out))
}

var errFull = errors.New("full")

type failWriter struct{ left int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errFull
	}
	w.left -= len(p)
	return len(p), nil
}
