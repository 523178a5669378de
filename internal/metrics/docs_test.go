package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/plugins/clamav"
	"github.com/elemta/elemta/plugins/rspamd"
	"github.com/elemta/elemta/registry"
)

const (
	metricsDoc = "../../docs/metrics.md"
	alertsFile = "../../docs/prometheus/alerts.yml"
	dashFile   = "../../docs/grafana/elemta.json"
)

// known returns every metric name a server exports: the host's and the
// ones the built-in plugins make (clamav's, built here without I/O).
func known(t *testing.T) []string {
	t.Helper()
	m := New(BuildInfo{})
	m.Server(Sources{})
	_, err := clamav.New(clamav.DefaultConfig(), registry.Host{Metrics: m.ForPlugin("clamav", "clamav")})
	require.NoError(t, err)
	_, err = rspamd.New(rspamd.DefaultConfig(), registry.Host{Metrics: m.ForPlugin("rspamd", "rspamd")})
	require.NoError(t, err)
	return m.Names()
}

var metricRef = regexp.MustCompile(`\b(elemta_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

// exists reports whether ref (maybe a histogram's _bucket, _sum or
// _count series) is a known metric.
func exists(names []string, ref string) bool {
	if slices.Contains(names, ref) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(ref, suffix); ok && slices.Contains(names, base) {
			return true
		}
	}
	return false
}

func TestAlertRules(t *testing.T) {
	names := known(t)
	text, err := os.ReadFile(alertsFile)
	require.NoError(t, err)
	refs := metricRef.FindAllString(string(text), -1)
	require.NotEmpty(t, refs)
	for _, ref := range refs {
		assert.True(t, exists(names, ref), "%s names %s, which no Elemta server exports", alertsFile, ref)
	}
	promtool := testenv.RequireTool(t, "promtool") // a failure under CI=true when missing
	out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
}

func TestDashboard(t *testing.T) {
	names := known(t)
	b, err := os.ReadFile(dashFile)
	require.NoError(t, err)
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.Panels)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			refs := metricRef.FindAllString(tg.Expr, -1)
			assert.NotEmpty(t, refs, "panel %q: %s names no metric", p.Title, tg.Expr)
			for _, ref := range refs {
				assert.True(t, exists(names, ref), "panel %q names %s, which no Elemta server exports", p.Title, ref)
			}
		}
	}
}

// TestMetricsTable: docs/metrics.md tables every elemta_ metric, and only those.
func TestMetricsTable(t *testing.T) {
	names := known(t)
	text, err := os.ReadFile(metricsDoc)
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `(elemta_[a-z0-9_]+)` \\|")
	var tabled []string
	for _, m := range row.FindAllStringSubmatch(string(text), -1) {
		tabled = append(tabled, m[1])
		assert.Contains(t, names, m[1], "%s tables %s, which no Elemta server exports", metricsDoc, m[1])
	}
	for _, n := range names {
		if strings.HasPrefix(n, "elemta_") {
			assert.Contains(t, tabled, n, "%s lacks a row for %s", metricsDoc, n)
		}
	}
}
