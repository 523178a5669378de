package subjectguard

import (
	"context"

	"github.com/elemta/elemta/registry"
)

type Config struct {
	Forbidden string `toml:"forbidden"`
}

type Guard struct{ cfg Config }

func (g *Guard) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if pc.Message.Header.Get("Subject") == g.cfg.Forbidden {
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "forbidden subject")}, nil
	}
	return &registry.Result{}, nil
}

func init() {
	registry.Register(registry.Module[Config, *Guard]{
		Name:        "subjectguard",
		Description: "rejects messages whose subject is the forbidden one",
		Types:       []registry.PluginType{registry.PluginTypeFilter},
		Stages:      []registry.Stage{registry.PostReception},
		New:         func(cfg Config, _ registry.Host) (*Guard, error) { return &Guard{cfg}, nil },
	})
}
