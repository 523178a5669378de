// The entry file's encoding: JSON, written and read with the message
// streamed, so that neither side holds the message twice.

package spool

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// messageTail is how json.Marshal ends an Entry without a message: the
// message field is last.
const messageTail = `"message":null}`

// encodeEntry writes e as json.Marshal would (the same bytes), its message
// from msg when not nil, else from e.Message, base64-encoded on the fly:
// only e's other fields are marshalled in memory. It returns the message's
// size.
func encodeEntry(w io.Writer, e *Entry, msg io.WriterTo) (int64, error) {
	head := *e
	head.Message = nil
	data, err := json.Marshal(&head)
	if err != nil {
		return 0, fmt.Errorf("encode entry: %w", err)
	}
	if !bytes.HasSuffix(data, []byte(messageTail)) {
		return 0, fmt.Errorf("encode entry: the message field is not last: %.60q", data[max(0, len(data)-60):])
	}
	if msg == nil {
		if e.Message == nil {
			_, err := w.Write(data)
			return 0, err
		}
		msg = bytes.NewReader(e.Message)
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	bw.Write(data[:len(data)-len("null}")])
	bw.WriteByte('"')
	enc := base64.NewEncoder(base64.StdEncoding, bw)
	n, err := msg.WriteTo(enc)
	if err != nil {
		return n, fmt.Errorf("write message: %w", err)
	}
	if err := enc.Close(); err != nil {
		return n, err
	}
	bw.WriteString(`"}`)
	return n, bw.Flush()
}

// writers are encodeEntry's buffers, shared by the spool's writes.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// decodeEntry reads an entry file. The fields before the message are
// decoded as JSON; the message, last and base64, is decoded straight into
// one buffer of its size. A file of another shape (message not last,
// escapes in it) is decoded by encoding/json whole, the slow way.
func decodeEntry(f *os.File) (*Entry, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	e, err := decodeStreamed(f, st.Size())
	if err == nil {
		return e, nil
	}
	if !errors.Is(err, errShape) {
		return nil, err
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		return nil, err
	}
	var whole Entry
	if err := json.Unmarshal(data, &whole); err != nil {
		return nil, err
	}
	return &whole, nil
}

// errShape: the file is not as encodeEntry writes it.
var errShape = errors.New("not in the streamed shape")

func decodeStreamed(f *os.File, size int64) (*Entry, error) {
	dec := json.NewDecoder(f)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errShape
	}
	head := []byte{'{'}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errShape
		}
		key, ok := t.(string)
		if !ok {
			return nil, errShape
		}
		if key == "message" {
			msg, err := decodeMessage(f, size, dec.InputOffset())
			if err != nil {
				return nil, err
			}
			var e Entry
			if err := json.Unmarshal(append(head, messageTail...), &e); err != nil {
				return nil, err
			}
			e.Message = msg
			return &e, nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errShape
		}
		k, _ := json.Marshal(key)
		head = append(append(append(append(head, k...), ':'), v...), ',')
	}
	return nil, errShape // no message: the slow way says what it makes of it
}

// decodeMessage decodes the message value that follows the key ending at
// off: `:"<base64>"}` up to the end of the file.
func decodeMessage(f *os.File, size, off int64) ([]byte, error) {
	var win [64]byte
	n, _ := f.ReadAt(win[:], off)
	rest := bytes.TrimLeft(win[:n], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, errShape
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return nil, errShape // null: the slow way
	}
	start := off + int64(n-len(rest)) + 1
	tn, _ := f.ReadAt(win[:], max(start, size-int64(len(win))))
	tail := bytes.TrimRight(win[:tn], " \t\r\n")
	if !bytes.HasSuffix(tail, []byte(`"}`)) {
		return nil, errShape
	}
	end := max(start, size-int64(tn)) + int64(len(tail)) - 2 // the closing quote
	if end < start {
		return nil, errShape
	}
	want := base64.StdEncoding.DecodedLen(int(end - start))
	body := tail[:len(tail)-2]
	for i := 0; i < 2 && end-start > int64(i) && bytes.HasSuffix(body, []byte("=")); i++ { // padding
		body = body[:len(body)-1]
		want--
	}
	buf := make([]byte, max(want, 0))
	r := base64.NewDecoder(base64.StdEncoding, io.NewSectionReader(f, start, end-start))
	got, err := io.ReadFull(r, buf)
	if err != nil {
		return nil, errShape // a quote or escape inside: not only base64
	}
	if extra, err := r.Read(win[:1]); extra != 0 || err != io.EOF {
		return nil, errShape
	}
	return buf[:got], nil
}
