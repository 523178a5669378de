package pluginhost

import (
	"errors"
	"fmt"
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
// that decode their own config tables use it for the same error format.
func TOMLError(file string, data []byte, err error) error {
	return positionedIn(file, data, "", err)
}

// positionedIn is positioned for errors of custom decoders (Duration),
// which go-toml returns without a position: it finds the first key under
// table prefix whose value is written as the one that failed.
func positionedIn(file string, data []byte, prefix string, err error) error {
	var ve *catalog.ValueError
	if !errors.As(err, &ve) {
		return positioned(file, err)
	}
	want := strings.TrimSpace(ve.Raw)
	for e := range walkTOML(data) {
		raw, ok := e.value()
		if ok && (prefix == "" || strings.HasPrefix(e.key, prefix+".")) && strings.TrimSpace(string(raw)) == want {
			pos := e.valuePos()
			return fmt.Errorf("%s:%d:%d: %s: %w", file, pos.Line, pos.Column, e.key, ve.Err)
		}
	}
	if prefix == "" {
		return fmt.Errorf("%s: %w", file, ve.Err)
	}
	return fmt.Errorf("%s: %s: %w", file, prefix, ve.Err)
}
