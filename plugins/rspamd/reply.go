package rspamd

import (
	"encoding/json"
	"fmt"
	"io"
)

// skippedLists are the members of rspamd's reply that list what it found
// in the message. rspamd always sends them (up to its max_urls, 10240 by
// default), so their size is the sender's choice: 10,500 URLs with
// 190-octet host names, a 2 MB message, make a 2 MB reply. Elemta does not
// use them; they are skipped as they stream by, so they never count
// against max_reply_size and a spammer cannot turn the reply into an
// error (on_error, accept by default).
var skippedLists = map[string]bool{"urls": true, "emails": true}

// decodeReply reads rspamd's JSON reply from r: at most maxReply bytes
// outside the skipped lists and maxLists bytes in them.
func decodeReply(r io.Reader, maxReply, maxLists int64) (*Reply, error) {
	cr := &countingReader{r: io.LimitReader(r, maxReply+maxLists+1)}
	dec := json.NewDecoder(cr)
	fail := func(err error) (*Reply, error) {
		if cr.n > maxReply+maxLists {
			return nil, fmt.Errorf("%w: reply longer than max_reply_size + max_reply_lists_size (%d bytes)", ErrReply, maxReply+maxLists)
		}
		return nil, fmt.Errorf("%w: decode JSON: %w", ErrReply, err)
	}
	if t, err := dec.Token(); err != nil {
		return fail(err)
	} else if t != json.Delim('{') {
		return fail(fmt.Errorf("reply is %v, not an object", t))
	}
	kept := map[string]json.RawMessage{}
	var lists int64
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := t.(string) // object keys are strings
		if skippedLists[key] {
			start := dec.InputOffset()
			if err := skipValue(dec); err != nil {
				return fail(err)
			}
			if lists += dec.InputOffset() - start; lists > maxLists {
				return nil, fmt.Errorf("%w: urls and emails longer than max_reply_lists_size (%d bytes)", ErrReply, maxLists)
			}
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail(err)
		}
		if dec.InputOffset()-lists > maxReply {
			return nil, fmt.Errorf("%w: reply longer than max_reply_size (%d bytes)", ErrReply, maxReply)
		}
		kept[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fail(err)
	}
	if dec.InputOffset()-lists > maxReply {
		return nil, fmt.Errorf("%w: reply longer than max_reply_size (%d bytes)", ErrReply, maxReply)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(fmt.Errorf("data after the reply object"))
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return fail(err)
	}
	var rep Reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return fail(err)
	}
	return &rep, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// skipValue reads one JSON value from dec without keeping it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
