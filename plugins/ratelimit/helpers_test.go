package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// node is one Elemta "node": a pluginhost.Manager with the ratelimit plugin
// loaded from a TOML config, on a store, with a hand-moved clock.
type node struct {
	t     testing.TB
	m     *pluginhost.Manager
	clock *storetest.Clock
	logs  *storetest.LogRecorder
}

// newNode loads ratelimit with settings (the [plugins.ratelimit] body,
// which may be followed by [[plugins.ratelimit.limits]] tables).
func newNode(t testing.TB, settings, dir string, clock *storetest.Clock) *node {
	t.Helper()
	doc := "[plugins]\nplugins = [\"ratelimit\"]\n[plugins.ratelimit]\n" + settings
	m, logs := storetest.LoadPlugins(t, doc, dir, clock)
	return &node{t: t, m: m, clock: clock, logs: logs}
}

func (n *node) plugin() *RateLimit {
	p, ok := n.m.Plugin("ratelimit")
	if !ok {
		n.t.Fatal("ratelimit not loaded")
	}
	return p.(*RateLimit)
}

func (n *node) run(pc *registry.ProcessingContext) *pluginhost.StageResult {
	n.t.Helper()
	sr, err := n.m.ExecuteStage(context.Background(), registry.PreReception, pc)
	if err != nil {
		n.t.Fatal(err)
	}
	return sr
}

func newPC(t testing.TB, session string, phase registry.Phase, env registry.Envelope) *registry.ProcessingContext {
	msg, err := registry.ParseMessage([]byte("Subject: test\r\n\r\nbody\r\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	pc := registry.NewProcessingContext(msg, &registry.Session{ID: session})
	pc.Phase = phase
	return pc
}

func reply(sr *pluginhost.StageResult) string {
	code, enh, text := sr.Verdict.Reply()
	return fmt.Sprintf("%d %s %s", code, enh, text)
}
