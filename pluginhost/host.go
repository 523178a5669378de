package pluginhost

import (
	"log/slog"
	"net"

	"github.com/elemta/elemta/registry"
)

// withDefaults returns h with every nil field set to its production default.
func withDefaults(h registry.Host) registry.Host {
	if h.Logger == nil {
		h.Logger = slog.Default()
	}
	if h.Resolver == nil {
		h.Resolver = net.DefaultResolver
	}
	if h.Clock == nil {
		h.Clock = registry.SystemClock{}
	}
	if h.Hostname == "" {
		h.Hostname = "localhost"
	}
	if h.AuthservID == "" {
		h.AuthservID = h.Hostname
	}
	if h.Metrics == nil {
		h.Metrics = registry.NopMetrics{}
	}
	if h.DataDir == "" {
		h.DataDir = "var"
	}
	return h
}

// numStages is the number of processing stages.
var numStages = len(registry.Stages())
