package pluginhost

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/elemta/elemta/registry"
)

// handlerOf returns how to run impl at a stage: its own HandleStage, or,
// for a plugin that implements only a capability interface (the original
// module's antivirus and antispam plugins), an adapter around ScanMessage;
// nil when it has neither.
func handlerOf(impl any, types []registry.PluginType) registry.StageHandler {
	if h, ok := impl.(registry.StageHandler); ok {
		return h
	}
	switch {
	case slices.Contains(types, registry.PluginTypeAntivirus):
		return scanAdapter{scan: impl.(registry.AntivirusPlugin).ScanMessage, what: "virus"}
	case slices.Contains(types, registry.PluginTypeAntispam):
		return scanAdapter{scan: impl.(registry.AntispamPlugin).ScanMessage, what: "spam"}
	}
	return nil
}

// scanAdapter runs a ScanMessage method as a stage: infected rejects with
// 554 5.7.1, clean accepts, a scan error is an error (on_error applies).
type scanAdapter struct {
	scan func(context.Context, *registry.Message) (*registry.ScanResult, error)
	what string
}

func (a scanAdapter) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	sr, err := a.scan(ctx, pc.Message)
	if err != nil {
		return nil, err
	}
	if sr == nil {
		return nil, fmt.Errorf("ScanMessage returned no result and no error")
	}
	res := &registry.Result{Data: sr, Score: sr.Score, Details: sr.Details}
	switch sr.Status {
	case registry.StatusClean:
	case registry.StatusInfected:
		text := a.what + " detected"
		if len(sr.Threats) > 0 {
			text += ": " + strings.Join(sr.Threats, ", ")
		}
		res.Verdict = registry.RejectVerdict(554, "5.7.1", text)
	case registry.StatusError:
		return nil, fmt.Errorf("scan error: %s", sr.Details)
	default:
		return nil, fmt.Errorf("unknown scan status %q", sr.Status)
	}
	return res, nil
}
