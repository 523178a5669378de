package pluginhost

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

// shapeBase is embedded in shapeDoc without a tag: its keys are shapeDoc's.
type shapeBase struct {
	Shared string `toml:"shared"`
	Name   string `toml:"name"` // shadowed by shapeDoc's own name
}

type shapeNode struct {
	Value int        `toml:"value"`
	Next  *shapeNode `toml:"next"` // a type that holds itself
}

type shapeDoc struct {
	shapeBase
	Name    string                     `toml:"name"`
	Timeout registry.Duration          `toml:"timeout"` // decodes itself
	Skipped string                     `toml:"-"`
	hidden  string                     // unexported: not a key
	Tagged  shapeBase                  `toml:"tagged"`
	Rules   []struct{ Pattern string } `toml:"rules"` // untagged: the Go name, folded
	Levels  map[string]string          `toml:"levels"`
	Tables  map[string]struct{ N int } `toml:"tables"`
	Node    shapeNode                  `toml:"node"`
	Free    any                        `toml:"free"`
	Lists   [][]struct{ A int }        `toml:"lists"`
	Ptr     *struct {
		B int `toml:"b"`
	} `toml:"ptr"`
}

// strictKeys is what go-toml itself lists as unknown when data decodes.
func strictKeys(t *testing.T, data []byte, v any) []UnknownKey {
	t.Helper()
	keys, err := decodeStrict(data, v)
	require.NoError(t, err)
	return keys
}

// TestUnknownKeysAsGoToml: on documents that decode, UnknownKeys lists
// exactly what go-toml's strict mode does, in the same order and place.
func TestUnknownKeysAsGoToml(t *testing.T) {
	for _, doc := range []string{
		``,
		`name = "a"`,
		`nmae = "a"`,
		"shared = \"s\"\nNAME = \"b\"\nSkipped = \"x\"\nhidden = \"y\"",
		"timeout = \"5s\"\n[tagged]\nshared = \"x\"\nname = \"y\"\nother = 1",
		"[[rules]]\npattern = \"a\"\n[[rules]]\nPATTERN = \"b\"\npatern = \"c\"",
		"[levels]\nanything = \"x\"\n[tables.a]\nN = 1\nM = 2",
		"[node]\nvalue = 1\nvalu = 2\n[node.next]\nvalue = 2\n[node.next.next]\nvalue = 3\nextra = 4",
		"free = {a = 1, b = [1, 2]}\nptr = {b = 1, c = 2}",
		"lists = [[{A = 1, Z = 2}], [{A = 3}]]",
		"top = 1\n[unknown]\nx = 1\n[unknown.deeper]\ny = 2",
		"tagged = {shared = \"x\", nope = 1}\nnode.value = 1\nnode.nope = 2",
	} {
		t.Run(doc, func(t *testing.T) {
			want := strictKeys(t, []byte(doc), new(shapeDoc))
			assert.Equal(t, want, UnknownKeys([]byte(doc), new(shapeDoc)))
		})
	}
}

// TestUnknownKeysPastAWrongValue: a value of the wrong type stops go-toml
// before it lists unknown keys; UnknownKeys still finds them, before and
// after the wrong value.
func TestUnknownKeysPastAWrongValue(t *testing.T) {
	doc := []byte("nmae = \"a\"\ntimeout = \"fast\"\nname = 5\n[node]\nvalue = \"x\"\nvalu = 2\n[tagged]\nshred = 1\n")
	err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(new(shapeDoc))
	var sm *toml.StrictMissingError
	require.Error(t, err)
	require.False(t, errors.As(err, &sm), "go-toml reports the wrong value, not the unknown keys")
	assert.Equal(t, []UnknownKey{
		{Key: []string{"nmae"}, Line: 1, Col: 1},
		{Key: []string{"node", "valu"}, Line: 6, Col: 1},
		{Key: []string{"tagged", "shred"}, Line: 8, Col: 1},
	}, UnknownKeys(doc, new(shapeDoc)))
}

// TestUnknownKeysNothingToSay: a document that does not parse, or whose
// shape does not fit (a number where a table is), gets nil: decoding
// reports it.
func TestUnknownKeysNothingToSay(t *testing.T) {
	assert.Nil(t, UnknownKeys([]byte("name = "), new(shapeDoc)))
	assert.Nil(t, UnknownKeys([]byte("node = 5\nnope = 2"), new(shapeDoc)))
}

// FuzzUnknownKeys holds UnknownKeys to go-toml's strict mode on every
// document that decodes into shapeDoc, but for keys deeper than shapeNode
// is unfolded (maxUnfold).
func FuzzUnknownKeys(f *testing.F) {
	f.Add("name = \"a\"\nnmae = 1\n[node.next]\nvalue = 2\nx = 3")
	f.Add("[[rules]]\nPattern = \"a\"\nb = 1\n[levels]\nk = \"v\"")
	f.Add("tagged = {shared = \"x\", nope = 1}\nlists = [[{A = 1, Z = 2}]]")
	f.Fuzz(func(t *testing.T, doc string) {
		keys, err := decodeStrict([]byte(doc), new(shapeDoc))
		if err != nil {
			return
		}
		deep := func(k UnknownKey) bool { return len(k.Key) > maxUnfold }
		keys = slices.DeleteFunc(keys, deep)
		if got := slices.DeleteFunc(UnknownKeys([]byte(doc), new(shapeDoc)), deep); !assert.ObjectsAreEqual(keys, got) {
			t.Fatalf("go-toml: %v\nUnknownKeys: %v", keys, got)
		}
	})
}
