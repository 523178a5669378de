package isolationtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

type dnsPlugin struct{ host registry.Host }

// HandleStage looks up a TXT record that exists and one that does not
// through the host's resolver, and logs what it found with attributes.
func (p dnsPlugin) HandleStage(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
	txt, err := p.host.Resolver.LookupTXT(ctx, "_iso.example.org")
	if err != nil {
		return nil, err
	}
	_, err = p.host.Resolver.LookupTXT(ctx, "missing.example.org")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		return nil, fmt.Errorf("missing name: want a not-found *net.DNSError, got %T %v", err, err)
	}
	p.host.Logger.With("zone", "example.org").WithGroup("lookup").Info("looked up", "name", "_iso.example.org", "answers", len(txt))
	return &registry.Result{Details: strings.Join(txt, ","), Score: float64(p.host.Clock.Now().Year())}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, dnsPlugin]{
		Name: "isodns", Description: "looks up DNS and logs", Types: []registry.PluginType{registry.PluginTypeFilter},
		Stages: []registry.Stage{registry.PostReception},
		New:    func(_ struct{}, h registry.Host) (dnsPlugin, error) { return dnsPlugin{h}, nil },
	})
}

type year2031 struct{}

func (year2031) Now() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) }

// DNS goes through the host's resolver (here a test's static zone, which a
// worker could not read on its own), log lines come back to the host's
// logger with their attributes, and the host's clock holds in the worker.
func TestHostServicesAcrossTheBoundary(t *testing.T) {
	var logs bytes.Buffer
	host := registry.Host{
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Resolver: registrytest.NewResolver(t, "_iso.example.org. 60 IN TXT \"v=iso1\"\n"),
		Clock:    year2031{},
	}
	cfg, err := pluginhost.ParseConfig("t.toml", []byte("[plugins]\nplugins = [\"isodns\"]\n[plugins.isodns]\nisolation = \"process\"\n"))
	require.NoError(t, err)
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(host))
	require.NoError(t, m.LoadPlugins(context.Background()))
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, message(0))
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.Len(t, sr.Results, 1)
	r := sr.Results[0]
	require.NoError(t, r.Err)
	assert.Equal(t, "v=iso1", r.Details)
	assert.Equal(t, float64(2031), r.Score)
	line := logs.String()
	for _, want := range []string{"msg=\"looked up\"", "plugin=isodns", "zone=example.org", "lookup.name=_iso.example.org", "lookup.answers=1", "level=INFO"} {
		assert.Contains(t, line, want)
	}
}
