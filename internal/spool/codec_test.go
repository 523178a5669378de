package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fullEntry(msg []byte) *Entry {
	return &Entry{
		ID: "0123abc", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Envelope:  Envelope{MailFrom: "a@x", RcptTo: []string{"b@y", "c@y"}, ClientIP: "127.0.0.1", HELO: "h<&>\"\\", TLS: true},
		Results:   []StageResult{{Stage: "s", Plugin: "p", Action: "accept", Details: `"message":"AAAA"}`}},
		Delivered: []string{"b@y"}, Attempts: 2, LastError: "451 \"message\":\"x", Reason: "r",
		Message: msg,
	}
}

// encodeEntry writes the bytes json.Marshal writes, so files of either
// version read the same; decodeEntry reads them back, whatever the
// padding of the base64.
func TestEncodeDecodeEntry(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	msgs := map[string][]byte{"nil": nil, "empty": {}, "1": []byte("a"), "2": []byte("ab"), "3": []byte("abc"),
		"4": []byte("abcd"), "every byte": all, "200 KiB": bytes.Repeat(all, 800)}
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			e := fullEntry(m)
			want, err := json.Marshal(e)
			require.NoError(t, err)
			var b bytes.Buffer
			n, err := encodeEntry(&b, e, nil)
			require.NoError(t, err)
			assert.Equal(t, string(want), b.String())
			assert.Equal(t, int64(len(m)), n)

			var fromWriter bytes.Buffer
			_, err = encodeEntry(&fromWriter, fullEntry(nil), bytes.NewReader(m))
			require.NoError(t, err)
			if m != nil {
				assert.Equal(t, string(want), fromWriter.String(), "the same bytes from an io.WriterTo")
			}

			got := decodeFile(t, b.Bytes())
			var std Entry
			require.NoError(t, json.Unmarshal(want, &std))
			assert.Equal(t, &std, got)
			if m != nil {
				assert.Equal(t, len(m), cap(got.Message), "one buffer of the message's size")
			}
		})
	}
}

func decodeFile(t *testing.T, data []byte) *Entry {
	t.Helper()
	p := filepath.Join(t.TempDir(), "e.json")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	e, err := readEntry(p)
	require.NoError(t, err)
	return e
}

// Files of another shape than encodeEntry's still decode (the slow way),
// and broken ones fail with an error that names the file.
func TestDecodeEntryOtherShapes(t *testing.T) {
	e := fullEntry([]byte("Subject: x\r\n\r\nbody\r\n"))
	std, err := json.Marshal(e)
	require.NoError(t, err)
	indented, err := json.MarshalIndent(e, "", "  ")
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, json.Unmarshal(std, &generic))
	reordered := []byte(`{"message":"` + strings.Split(string(std), `"message":"`)[1][:len("U3ViamVjdDogeA0KDQpib2R5DQo=")] + `",` + strings.TrimPrefix(strings.Split(string(std), `,"message":`)[0], "{") + "}")
	escaped := bytes.Replace(std, []byte(`"message":"U3`), []byte(`"message":"\u00553`), 1)
	for name, data := range map[string][]byte{"indented": indented, "message first": reordered, "escape in the base64": escaped,
		"trailing newline": append(append([]byte(nil), std...), '\n')} {
		t.Run(name, func(t *testing.T) {
			got := decodeFile(t, data)
			assert.Equal(t, "Subject: x\r\n\r\nbody\r\n", string(got.Message))
			assert.Equal(t, e.Envelope, got.Envelope)
			assert.Equal(t, e.LastError, got.LastError)
		})
	}
	for name, data := range map[string][]byte{"truncated": std[:len(std)-10], "not JSON": []byte("garbage"),
		"bad base64": bytes.Replace(std, []byte(`"message":"U3`), []byte(`"message":"*3`), 1), "empty": nil} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.json")
			require.NoError(t, os.WriteFile(p, data, 0o600))
			_, err := readEntry(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "bad.json")
		})
	}
}

// PutMessage stores what the io.WriterTo writes; when it fails, nothing is
// queued and nothing is left in tmp/.
func TestPutMessage(t *testing.T) {
	s := open(t, t.TempDir())
	e := entry("a@x", "b@y")
	e.Message = nil
	id, n, err := s.PutMessage(e, false, bytes.NewReader([]byte("Subject: w\r\n\r\nb\r\n")))
	require.NoError(t, err)
	assert.Equal(t, int64(17), n)
	got, err := s.Get(id)
	require.NoError(t, err)
	assert.Equal(t, "Subject: w\r\n\r\nb\r\n", string(got.Message))

	_, _, err = s.PutMessage(entry("a@x", "b@y"), false, failingWriterTo{})
	require.ErrorIs(t, err, errBroken)
	assert.Len(t, s.List(), 1)
	tmp, err := os.ReadDir(filepath.Join(s.Root(), tmpDir))
	require.NoError(t, err)
	assert.Empty(t, tmp)
}

var errBroken = errors.New("broken source")

type failingWriterTo struct{}

func (failingWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, _ := w.Write(bytes.Repeat([]byte("x"), 100<<10))
	return int64(n), errBroken
}

// Incoming: in memory up to IncomingInMemory, then in a file unlinked at
// once; read back into a buffer of its size either way.
func TestIncoming(t *testing.T) {
	s := open(t, t.TempDir())
	for _, size := range []int{0, 30, IncomingInMemory, IncomingInMemory + 1, 3*IncomingInMemory + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			in := s.NewIncoming()
			want := make([]byte, size)
			for i := range want {
				want[i] = byte(i * 7)
			}
			for p := want; len(p) > 0; {
				n := min(len(p), 1000)
				w, err := in.Write(p[:n])
				require.NoError(t, err)
				require.Equal(t, n, w)
				p = p[n:]
			}
			assert.Equal(t, int64(size), in.Size())
			assert.Equal(t, size > IncomingInMemory, in.f != nil, "in a file only past IncomingInMemory")
			tmp, err := os.ReadDir(filepath.Join(s.Root(), tmpDir))
			require.NoError(t, err)
			assert.Empty(t, tmp, "unlinked at creation")
			b, err := in.Bytes()
			require.NoError(t, err)
			assert.Equal(t, string(want), string(b))
			assert.Equal(t, size, cap(b))
			require.NoError(t, in.Close())
			require.NoError(t, in.Close(), "twice")
		})
	}
}

// FuzzDecodeEntry: whatever the file holds, the streamed decoding agrees
// with encoding/json (same entry, or both fail).
func FuzzDecodeEntry(f *testing.F) {
	good, _ := json.Marshal(fullEntry([]byte("Subject: x\r\n\r\nbody\r\n")))
	f.Add(good)
	f.Add([]byte(`{"id":"a","message":"QQ=="}`))
	f.Add([]byte(`{"message":"QQ==","id":"a"}`))
	f.Add([]byte(`{"id":"a","message":null}`))
	f.Add([]byte(`{"id":"a","message":"QQ="}`))
	f.Add([]byte(`{"id":"a","message":"Q\u0051=="}`))
	f.Add([]byte(`{"id":"a","message":"QQ=="} {"x":1}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "e.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readEntry(p)
		var want Entry
		werr := json.Unmarshal(data, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: streamed %v, encoding/json %v", data, err, werr)
		}
		if err == nil && !bytes.Equal(got.Message, want.Message) {
			t.Fatalf("%q: message %q, encoding/json %q", data, got.Message, want.Message)
		}
		if err == nil {
			got.Message, want.Message = nil, nil
			if !assert.ObjectsAreEqual(&want, got) {
				t.Fatalf("%q: entry %+v, encoding/json %+v", data, got, want)
			}
		}
	})
}
