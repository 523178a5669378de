package pluginhost

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/elemta/elemta/internal/catalog"
)

// producerWarnings names each result type that enabled instances consume
// (Module.Consumes) and two or more other enabled instances publish
// (Module.Produces). registry.Find, which the built-in consumers use,
// returns the first publisher's result in config order: with spf and
// spf/strict both enabled, dmarc and authres read spf's, whatever
// spf/strict found. That is a legitimate setup only if it is meant, so
// config check says which one is read instead of leaving it to be found
// in the mail. ids are the enabled instances in config order.
func producerWarnings(cat *catalog.Catalog, file string, ids []string) []string {
	entries := make([]*catalog.Entry, len(ids))
	for i, id := range ids {
		typ, _, _ := catalog.ParseID(id)
		entries[i], _ = cat.Lookup(typ)
	}
	var warnings []string
	var seen []reflect.Type
	for _, consumer := range entries {
		if consumer == nil {
			continue
		}
		for _, t := range consumer.Consumes {
			if slices.Contains(seen, t) {
				continue
			}
			seen = append(seen, t)
			var consumers, producers []string
			for i, e := range entries {
				switch {
				case e == nil:
				case publishes(e, t):
					producers = append(producers, ids[i])
				case slices.Contains(e.Consumes, t):
					consumers = append(consumers, ids[i])
				}
			}
			if len(producers) < 2 || len(consumers) == 0 {
				continue
			}
			verb, them := "read", "them"
			if len(consumers) == 1 {
				verb, them = "reads", "it"
			}
			warnings = append(warnings, fmt.Sprintf(
				"%s: %s %s %v, which %d enabled instances publish (%s): registry.Find gives %s %s's, the first in plugins.plugins; "+
					"the others' reach only a plugin that reads them with registry.FindAll or FindFrom. "+
					"Put the instance whose result should count first, or enable one",
				file, strings.Join(consumers, ", "), verb, t, len(producers), strings.Join(producers, ", "), them, producers[0]))
		}
	}
	return warnings
}

// publishes reports whether e produces a result of type t: t itself, or,
// for an interface type, a type that implements it (as consumesFrom).
func publishes(e *catalog.Entry, t reflect.Type) bool {
	for _, p := range e.Produces {
		if p == t || t.Kind() == reflect.Interface && p.Implements(t) {
			return true
		}
	}
	return false
}
