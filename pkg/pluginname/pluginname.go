// Package pluginname is the one rule for the name of an Elemta plugin: the
// name it registers under (registry.Register), the name of its entry and
// of a variant in plugins.yaml (tools/genplugins, tools/elemta-build), and
// the name the scaffold (tools/newplugin) turns into a directory and a Go
// package. It is a package of its own, importing nothing but the standard
// library, so that a tool can check a name without linking the registry.
//
// A name is lowercase ASCII letters, digits, '-' and '_', starts with a
// letter, and is not one of the keys of the [plugins] config table (a
// plugin's settings live in [plugins.<name>], next to those keys):
//
//	pluginname.Check("greylist")  // nil
//	pluginname.Check("9x")        // invalid name: ... starting with a letter
//	pluginname.Check("plugins")   // name is reserved: a key of the [plugins] table
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version. The rule may
// accept more names in a minor version, never fewer.
package pluginname

import (
	"errors"
	"fmt"
	"slices"
)

// Pattern is the syntax of a name as a regular expression, for
// documentation and for tools that cannot import Go (an editor schema):
// Check is the rule.
const Pattern = `^[a-z][a-z0-9_-]*$`

// ErrInvalid is wrapped by the error of a name that breaks the syntax,
// ErrReserved by that of a reserved name.
var (
	ErrInvalid  = errors.New("invalid name")
	ErrReserved = errors.New("name is reserved")
)

// reserved are the keys of the [plugins] table itself.
var reserved = []string{"enabled", "directory", "plugins", "max_concurrency", "idle_workers", "default_timeout"}

// Reserved returns the names no plugin may take: the keys of the
// [plugins] config table.
func Reserved() []string { return slices.Clone(reserved) }

// Check returns nil when name may name a plugin, else an error wrapping
// ErrInvalid or ErrReserved that says what is wrong. The error does not
// repeat the name: callers say which plugin, file or line it is.
func Check(name string) error {
	if !syntax(name) {
		return fmt.Errorf("%w: use lowercase letters, digits, '-' and '_', starting with a letter", ErrInvalid)
	}
	if slices.Contains(reserved, name) {
		return fmt.Errorf("%w: a key of the [plugins] table", ErrReserved)
	}
	return nil
}

// Valid reports whether Check(name) is nil.
func Valid(name string) bool { return Check(name) == nil }

// syntax is Pattern, without a regexp (it runs for every name at startup
// and in every fuzz iteration of the plugins.yaml parser).
func syntax(name string) bool {
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
