package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// adapterFor returns how to run a plugin that implements only a capability
// interface (the original module's antivirus and antispam plugins) at a
// stage, or nil when its types offer no such adapter.
func adapterFor(types []PluginType) func(p any) StageHandler {
	switch {
	case slices.Contains(types, PluginTypeAntivirus):
		return func(p any) StageHandler { return scanAdapter{scan: p.(AntivirusPlugin).ScanMessage, what: "virus"} }
	case slices.Contains(types, PluginTypeAntispam):
		return func(p any) StageHandler { return scanAdapter{scan: p.(AntispamPlugin).ScanMessage, what: "spam"} }
	}
	return nil
}

// scanAdapter runs a ScanMessage method as a stage: infected rejects with
// 554 5.7.1, clean accepts, a scan error is an error (on_error applies).
type scanAdapter struct {
	scan func(context.Context, *Message) (*ScanResult, error)
	what string
}

func (a scanAdapter) HandleStage(ctx context.Context, _ Stage, pc *ProcessingContext) (*Result, error) {
	sr, err := a.scan(ctx, pc.Message)
	if err != nil {
		return nil, err
	}
	if sr == nil {
		return nil, fmt.Errorf("ScanMessage returned no result and no error")
	}
	res := &Result{Data: sr, Score: sr.Score, Details: sr.Details}
	switch sr.Status {
	case StatusClean:
	case StatusInfected:
		text := a.what + " detected"
		if len(sr.Threats) > 0 {
			text += ": " + strings.Join(sr.Threats, ", ")
		}
		res.Verdict = RejectVerdict(554, "5.7.1", text)
	case StatusError:
		return nil, fmt.Errorf("scan error: %s", sr.Details)
	default:
		return nil, fmt.Errorf("unknown scan status %q", sr.Status)
	}
	return res, nil
}
