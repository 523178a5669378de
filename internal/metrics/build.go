package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo labels elemta_build_info.
type BuildInfo struct {
	Version, Revision string
}

func buildInfoGauge(b BuildInfo) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "elemta_build_info",
		Help: "Always 1: the version and VCS revision of this binary and the Go release it was built with."},
		[]string{"version", "revision", "goversion"})
	g.WithLabelValues(orUnknown(b.Version), orUnknown(b.Revision), runtime.Version()).Set(1)
	return g
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
