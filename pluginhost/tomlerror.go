package pluginhost

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/pelletier/go-toml/v2"
)

// positioned turns a go-toml error into "file:line:col: key: message".
func positioned(file string, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := de.Key(); len(k) > 0 {
			msg = strings.Join(k, ".") + ": " + msg
		}
		return fmt.Errorf("%s:%d:%d: %s", file, line, col, msg)
	}
	return fmt.Errorf("%s: %w", file, err)
}

// TOMLError formats an error of go-toml decoding data (named file) as
// "file:line:col: key: message", including errors of this package's custom
// decoders (Duration), which go-toml reports without a position. Hosts
// that decode their own config tables use it for the same error format;
// decode repeats their decode into a fresh value (see positionedIn).
func TOMLError(file string, data []byte, err error, decode func([]byte) error) error {
	return positionedIn(file, data, "", err, decode)
}

// positionedIn is positioned for errors of custom decoders (Duration),
// which go-toml returns bare, naming neither key nor position: it finds
// the keys under table prefix whose value, or a value in whose inline
// table or array, is written as the one that failed. When several are,
// decode (which decodes a document into a fresh value as the failed decode
// did) says which: go-toml stops at the first key that fails, so it is
// the first whose document, cut after it, fails too. Without decode, or
// when no cut fails, it is the first. Within the key, the error is at the
// value that failed, or at the key's value when several inside it could
// have.
func positionedIn(file string, data []byte, prefix string, err error, decode func([]byte) error) error {
	var ve *catalog.ValueError
	if !errors.As(err, &ve) {
		return positioned(file, err)
	}
	want := strings.TrimSpace(ve.Raw)
	type candidate struct {
		key  tomlValue   // the key's own value
		vals []tomlValue // the values written as want
		end  int         // where a document holding the key, whole, may end
	}
	var cands []candidate
	open := -1 // the candidate whose end is the next entry's line
	for e := range walkTOML(data) {
		if open >= 0 {
			cands[open].end, open = e.lineStart(), -1
		}
		if prefix != "" && !strings.HasPrefix(e.key, prefix+".") {
			continue
		}
		var c candidate
		for v := range e.values() {
			if v.key == e.key {
				c.key = v
			}
			if len(v.raw) > 0 && strings.TrimSpace(string(v.raw)) == want {
				c.vals = append(c.vals, v)
			}
		}
		if len(c.vals) > 0 {
			c.end, open = len(data), len(cands)
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		if prefix == "" {
			return fmt.Errorf("%s: %w", file, ve.Err)
		}
		return fmt.Errorf("%s: %s: %w", file, prefix, ve.Err)
	}
	c := cands[0]
	if len(cands) > 1 && decode != nil {
		i := sort.Search(len(cands), func(i int) bool {
			var again *catalog.ValueError
			return errors.As(decode(data[:cands[i].end]), &again) &&
				strings.TrimSpace(again.Raw) == want && again.Err.Error() == ve.Err.Error()
		})
		if i < len(cands) {
			c = cands[i]
		}
	}
	at := c.key
	if len(c.vals) == 1 {
		at = c.vals[0]
	}
	return fmt.Errorf("%s:%d:%d: %s: %w", file, at.pos.Line, at.pos.Column, at.key, ve.Err)
}
