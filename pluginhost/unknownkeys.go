package pluginhost

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// UnknownKey is a key of a TOML document that the type it was decoded into
// has no field for.
type UnknownKey struct {
	// Key is the key's path from the top of the document.
	Key       []string
	Line, Col int
}

// UnknownKeys returns the keys of data that decoding it into a value of
// v's type (a pointer to a struct) with DisallowUnknownFields rejects,
// whether or not other values of data fail to decode. go-toml lists
// unknown keys (StrictMissingError) only when everything else decoded, so
// a config with a wrong value and a misspelt key would otherwise be
// reported one error at a time. UnknownKeys decodes data into a type of
// the same keys whose values take anything, so go-toml itself decides what
// is unknown, by its own rules (case folding, embedded structs). It
// returns nil when data does not parse or a value does not fit even that
// shape (a table where v has a list): decoding reports those.
func UnknownKeys(data []byte, v any) []UnknownKey {
	lax := reflect.New(laxShape(reflect.TypeOf(v), map[reflect.Type]int{}))
	err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(lax.Interface())
	var sm *toml.StrictMissingError
	if !errors.As(err, &sm) {
		return nil
	}
	keys := make([]UnknownKey, len(sm.Errors))
	for i, e := range sm.Errors {
		keys[i].Line, keys[i].Col = e.Position()
		keys[i].Key = e.Key()
	}
	return keys
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[unstable.Unmarshaler]()
	anyType         = reflect.TypeFor[any]()
)

// maxUnfold is how many times laxShape unfolds a struct type that holds
// itself on one branch (a Go type cannot): below that, its values take
// anything, and unknown keys there go unreported.
const maxUnfold = 8

// laxShape returns a type with t's TOML keys whose values take anything:
// a value that decodes itself (UnmarshalTOML, UnmarshalText) or is no
// table or list of them becomes any. open counts the struct types being
// shaped on the branch (see maxUnfold).
func laxShape(t reflect.Type, open map[reflect.Type]int) reflect.Type {
	if t.Implements(tomlUnmarshaler) || reflect.PointerTo(t).Implements(tomlUnmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return anyType
	}
	switch t.Kind() {
	case reflect.Pointer:
		return laxShape(t.Elem(), open)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return anyType
		}
		return reflect.MapOf(t.Key(), laxShape(t.Elem(), open))
	case reflect.Slice, reflect.Array:
		return reflect.SliceOf(laxShape(t.Elem(), open))
	case reflect.Struct:
		if open[t] >= maxUnfold {
			return anyType
		}
		open[t]++
		defer func() { open[t]-- }()
		var fields []reflect.StructField
		taken := map[string]bool{}
		laxFields(t, open, taken, &fields)
		return reflect.StructOf(fields)
	}
	return anyType
}

// laxFields appends the shaped fields of struct t, as go-toml finds them:
// a field tagged "-" or unexported is not a key; an embedded struct without
// a tag name lends its fields, after t's own (a shallower name wins).
func laxFields(t reflect.Type, open map[reflect.Type]int, taken map[string]bool, fields *[]reflect.StructField) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag, tagged := f.Tag.Lookup("toml")
		if tagged && tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() != reflect.Struct {
				continue
			}
			if name == "" {
				embedded = append(embedded, ft)
				continue
			}
		} else if f.PkgPath != "" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if taken[name] {
			continue
		}
		taken[name] = true
		*fields = append(*fields, reflect.StructField{
			Name: fmt.Sprintf("F%d", len(*fields)),
			Type: laxShape(ft, open),
			Tag:  reflect.StructTag(fmt.Sprintf("toml:%q", name)),
		})
	}
	for _, e := range embedded {
		if open[e] > 0 { // embeds itself: its fields are t's already (as go-toml)
			continue
		}
		open[e]++
		laxFields(e, open, taken, fields)
		open[e]--
	}
}
