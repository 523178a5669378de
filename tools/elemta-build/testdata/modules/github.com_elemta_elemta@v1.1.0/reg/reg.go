// Package reg is a stand-in for the core registry in builder tests.
package reg

import "sort"

var names []string

// Register records a plugin name.
func Register(name string) { names = append(names, name) }

// Names returns the registered names, sorted.
func Names() []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	return out
}
