package milter

import (
	"fmt"
	"slices"
	"strings"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// deliveryStages are the stages milter mode does not have: the MTA
// delivers, not Elemta.
var deliveryStages = []registry.Stage{registry.PreDelivery, registry.PostDelivery}

// StageWarnings names the enabled plugin instances that run, in whole or
// in part, at a stage milter mode does not have (pre-delivery,
// post-delivery): `config check` prints them for a file with a [milter]
// table.
func StageWarnings(cfg *pluginhost.Config) []string {
	if cfg == nil || !cfg.Enabled {
		return nil
	}
	var out []string
	for _, name := range cfg.Plugins {
		settings, err := cfg.Settings(name)
		if err != nil {
			continue // reported by the plugin config's own checks
		}
		var lost, kept []string
		for _, st := range settings.Stages {
			if slices.Contains(deliveryStages, st) {
				lost = append(lost, st.String())
			} else {
				kept = append(kept, st.String())
			}
		}
		switch {
		case len(lost) == 0:
		case len(kept) == 0:
			out = append(out, fmt.Sprintf("[milter]: plugin %s runs only at %s, which milter mode does not have (the MTA delivers): `elemta milter` never runs it",
				name, strings.Join(lost, " and ")))
		default:
			out = append(out, fmt.Sprintf("[milter]: plugin %s: its %s stage does not exist in milter mode (the MTA delivers); `elemta milter` runs it at %s only",
				name, strings.Join(lost, " and "), strings.Join(kept, " and ")))
		}
	}
	return out
}
