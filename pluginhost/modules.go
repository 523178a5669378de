package pluginhost

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// ModuleInfo is what the registry knows about a compiled-in plugin.
type ModuleInfo struct {
	Name        string
	Version     string
	Description string
	Types       []registry.PluginType
	Stages      []registry.Stage
	// Phases are the pre-reception phases the plugin is called at; nil
	// means every phase.
	Phases []registry.Phase
	After  []string
	Before []string
	// Produces and Consumes name the result types the plugin declares
	// ("*registry.SPFResult").
	Produces, Consumes []string
	// Package is the Go import path of the package that registered it.
	Package string
}

func infoOf(e *catalog.Entry) ModuleInfo {
	types := make([]registry.PluginType, len(e.Types))
	for i, t := range e.Types {
		types[i] = registry.PluginType(t)
	}
	return ModuleInfo{
		Name: e.Name, Version: e.Version, Description: e.Description,
		Types: types, Stages: entryStages(e), Phases: entryPhases(e),
		After: append([]string(nil), e.After...), Before: append([]string(nil), e.Before...),
		Produces: typeNames(e.Produces), Consumes: typeNames(e.Consumes),
		Package: e.Package,
	}
}

func typeNames(types []reflect.Type) []string {
	var names []string
	for _, t := range types {
		names = append(names, t.String())
	}
	return names
}

// entryPhases returns the phases an entry declares (nil: every phase).
func entryPhases(e *catalog.Entry) []registry.Phase {
	var phases []registry.Phase
	for _, p := range e.Phases {
		phases = append(phases, registry.Phase(p))
	}
	return phases
}

// entryStages returns the stages an entry declares.
func entryStages(e *catalog.Entry) []registry.Stage {
	stages := make([]registry.Stage, len(e.Stages))
	for i, s := range e.Stages {
		stages[i] = registry.Stage(s)
	}
	return stages
}

// Modules lists every compiled-in plugin, sorted by name.
func Modules() []ModuleInfo {
	var infos []ModuleInfo
	for _, n := range catalog.Global().Names() {
		e, _ := catalog.Global().Lookup(n)
		infos = append(infos, infoOf(e))
	}
	return infos
}

// Lookup returns what the registry knows about the plugin called name.
func Lookup(name string) (ModuleInfo, bool) {
	e, ok := catalog.Global().Lookup(name)
	if !ok {
		return ModuleInfo{}, false
	}
	return infoOf(e), true
}

// DefaultConfig returns a pointer to a fresh copy of the named plugin's
// default config (the *C of its Module), for tools and tests.
func DefaultConfig(name string) (any, bool) {
	e, ok := catalog.Global().Lookup(name)
	if !ok {
		return nil, false
	}
	return e.NewConfig(), true
}

// CheckManifest reports plugins that the build expected (the generated
// manifest in gen/) but that did not register: a package that forgot to
// call registry.Register, or registered under another name.
func CheckManifest(expected []string) error { return checkManifest(catalog.Global(), expected) }

func checkManifest(c *catalog.Catalog, expected []string) error {
	var missing []string
	for _, n := range expected {
		if _, ok := c.Lookup(n); !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("registry: plugins.yaml selects %s but no package registered that name (registered: %s); check the plugin's init calls registry.Register with the name plugins.yaml gives",
			strings.Join(missing, ", "), strings.Join(c.Names(), ", "))
	}
	return nil
}
