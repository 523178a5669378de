// Package catalog is the table of compiled-in plugins that
// registry.Register writes and pluginhost reads. It lives under internal so
// that a plugin author never sees constructors or host types: registry
// turns a typed registry.Module into an Entry, pluginhost builds instances
// from Entries. It imports neither, so its fields use plain types (a
// PluginType as string, a Stage as int, a Host as any).
package catalog

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/elemta/elemta/pkg/pluginname"
)

// Entry is a registered plugin with its type parameters erased.
type Entry struct {
	Name, Version, Description string
	// Package is the Go import path of the package that registered it.
	Package string
	// Types holds registry.PluginType values, Stages registry.Stage values.
	Types  []string
	Stages []int
	After  []string
	Before []string
	// Produces and Consumes are the result types (the Data of a
	// registry.Result) the plugin publishes and reads.
	Produces, Consumes []reflect.Type
	// NewConfig returns a *C holding the defaults.
	NewConfig func() any
	// Build calls the plugin's New with a *C from NewConfig and a
	// registry.Host.
	Build func(cfg any, host any) (any, error)
	// Impl is the type New returns (the P of the Module): the host's
	// stand-in for an isolated instance implements what it implements.
	Impl reflect.Type
}

// Catalog holds registered plugins by name.
type Catalog struct {
	mu      sync.RWMutex
	entries map[string]*Entry
}

// New returns an empty catalog.
func New() *Catalog { return &Catalog{entries: map[string]*Entry{}} }

var (
	global    = New()
	target    atomic.Pointer[Catalog]
	captureMu sync.Mutex
)

func init() { target.Store(global) }

// Global is the catalog init functions register into.
func Global() *Catalog { return global }

// Target is the catalog registry.Register adds to: Global, or the one a
// Capture is filling.
func Target() *Catalog { return target.Load() }

// Capture runs f with a fresh catalog as Target and returns it, so tests
// can register modules with registry.Register without touching Global.
// Captures are serialised; a panic in f propagates after Target is restored.
func Capture(f func()) *Catalog {
	captureMu.Lock()
	defer captureMu.Unlock()
	c := New()
	prev := target.Swap(c)
	defer target.Store(prev)
	f()
	return c
}

// Add registers e, refusing a name registered before.
func (c *Catalog) Add(e *Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.entries[e.Name]; ok {
		return fmt.Errorf("registry: plugin %q registered by %s: already registered by %s", e.Name, e.Package, prev.Package)
	}
	c.entries[e.Name] = e
	return nil
}

// Remove forgets the named entry (for tests).
func (c *Catalog) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, name)
}

// Lookup returns the entry called name.
func (c *Catalog) Lookup(name string) (*Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[name]
	return e, ok
}

// Names returns the registered plugin names, sorted.
func (c *Catalog) Names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := make([]string, 0, len(c.entries))
	for n := range c.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Reserved are the keys of the [plugins] table itself, which no plugin
// may take as name.
var Reserved = pluginname.Reserved()

// CheckName reports whether s is a valid plugin name (pkg/pluginname: the
// one name rule, shared with plugins.yaml and the scaffold). The name of an
// instance ("contentfilter/strict") follows it too.
func CheckName(s string) error {
	switch err := pluginname.Check(s); {
	case errors.Is(err, pluginname.ErrReserved):
		return fmt.Errorf("name %q is reserved for a key of the [plugins] table", s)
	case err != nil:
		return fmt.Errorf("invalid name %q: use lowercase letters, digits, '-' and '_', starting with a letter", s)
	}
	return nil
}

// ParseID splits an instance ID, "type" or "type/name", checking both
// parts with CheckName.
func ParseID(id string) (typ, name string, err error) {
	typ, name, hasName := strings.Cut(id, "/")
	if err := CheckName(typ); err != nil {
		return "", "", fmt.Errorf("plugin instance %q: %w", id, err)
	}
	if hasName {
		if err := CheckName(name); err != nil {
			return "", "", fmt.Errorf("plugin instance %q: instance name: %w", id, err)
		}
	}
	return typ, name, nil
}

// ValueError is an error of a custom TOML decoder (registry.Duration),
// which go-toml reports without a position; Raw lets the config parser
// find the key it came from.
type ValueError struct {
	Raw string
	Err error
}

func (e *ValueError) Error() string { return e.Err.Error() }
func (e *ValueError) Unwrap() error { return e.Err }

// RecordResult records a result (a *registry.Result) in a
// *registry.ProcessingContext together with its plugin instance's position
// in config order, which registry.Find and FindAll sort by. registry sets
// it in its init; pluginhost's executor calls it.
var RecordResult func(pc, res any, order int)

// ResultOrders returns the config positions RecordResult stored with the
// results of a *registry.ProcessingContext, in the order of its Results
// (for the host to carry them to an isolated plugin's process). registry
// sets it in its init.
var ResultOrders func(pc any) []int
