package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// node is one Elemta "node": a pluginhost.Manager with the greylist plugin
// loaded from a TOML config, on a store, with a hand-moved clock.
type node struct {
	t     testing.TB
	m     *pluginhost.Manager
	clock *storetest.Clock
	logs  *storetest.LogRecorder
}

// newNode loads greylist with the table body settings (TOML keys of
// [plugins.greylist]) and data directory dir.
func newNode(t testing.TB, settings, dir string, clock *storetest.Clock) *node {
	t.Helper()
	return newNodeWith(t, []string{"greylist"}, settings, dir, clock)
}

// newNodeWith enables the named plugins (in that config order).
func newNodeWith(t testing.TB, plugins []string, settings, dir string, clock *storetest.Clock) *node {
	t.Helper()
	doc := fmt.Sprintf("[plugins]\nplugins = [\"%s\"]\n[plugins.greylist]\n", strings.Join(plugins, `", "`)) + settings
	m, logs := storetest.LoadPlugins(t, doc, dir, clock)
	return &node{t: t, m: m, clock: clock, logs: logs}
}

// rcpt runs pre-reception at RCPT for the last of rcpts.
func (n *node) rcpt(ip, from string, rcpts ...string) *pluginhost.StageResult {
	n.t.Helper()
	return n.run(registry.PhaseRcpt, registry.Envelope{ClientIP: netip.MustParseAddr(ip), MailFrom: from, RcptTo: rcpts})
}

func (n *node) run(phase registry.Phase, env registry.Envelope) *pluginhost.StageResult {
	n.t.Helper()
	return n.runPC(newPC(n.t, phase, env))
}

func (n *node) runPC(pc *registry.ProcessingContext) *pluginhost.StageResult {
	n.t.Helper()
	sr, err := n.m.ExecuteStage(context.Background(), registry.PreReception, pc)
	if err != nil {
		n.t.Fatal(err)
	}
	return sr
}

func newPC(t testing.TB, phase registry.Phase, env registry.Envelope) *registry.ProcessingContext {
	msg, err := registry.ParseMessage([]byte("Subject: test\r\n\r\nbody\r\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	pc := registry.NewProcessingContext(msg, &registry.Session{ID: "s1"})
	pc.Phase = phase
	return pc
}

// spfResult is what the test plugin "spf" reports: the real SPF plugin is
// not linked into this test binary; this one stands for any earlier plugin
// whose *registry.SPFResult greylist reads with registry.Find.
var spfResult atomic.Pointer[registry.SPFResult]

type spfReporter struct{}

func (spfReporter) HandleStage(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
	res := &registry.Result{Verdict: registry.AcceptVerdict()}
	if r := spfResult.Load(); r != nil {
		res.Data = r
	}
	return res, nil
}

func init() {
	registry.Register(registry.Module[struct{}, spfReporter]{
		Name: "spf", Types: []registry.PluginType{registry.PluginTypeCustom},
		Stages:   []registry.Stage{registry.PreReception},
		Produces: []any{(*registry.SPFResult)(nil)}, // as any SPF plugin declares: greylist runs after it
		New:      func(struct{}, registry.Host) (spfReporter, error) { return spfReporter{}, nil },
	})
}

// reply formats a stage verdict as "451 4.7.1 text" ("250 ..." for accept).
func reply(sr *pluginhost.StageResult) string {
	code, enh, text := sr.Verdict.Reply()
	return fmt.Sprintf("%d %s %s", code, enh, text)
}

// storeOf returns the plugin's store (for tests that look inside).
func storeOf(t *testing.T, n *node) store.Store {
	p, ok := n.m.Plugin("greylist")
	if !ok {
		t.Fatal("greylist not loaded")
	}
	return p.(*Greylist).st.Store
}
