package main

// The files of a new plugin. They build and pass their tests as written;
// the example logic (add a header field) is there to be replaced.

const registerTmpl = `package {{.Package}}

import (
	"fmt"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Plugin]{
		Name:        "{{.Name}}",
		Version:     "0.1.0",
		Description: {{printf "%q" .Description}},
		Types:       []registry.PluginType{registry.{{.TypeConst}}},
		Stages:      []registry.Stage{registry.{{.StageConst}}},
		Config:      DefaultConfig,
		New:         New,
	})
}

// Config is the [plugins.{{.Name}}] table. Every field needs a toml tag; an
// unknown key in the table is an error naming the file and line.
type Config struct {
	// Header is the field added to every message; "" adds none.
	Header string ` + "`toml:\"header\"`" + `
	// Value is the added field's value.
	Value string ` + "`toml:\"value\"`" + `
}

// DefaultConfig returns the defaults, used for keys the config leaves out.
func DefaultConfig() Config {
	return Config{Header: "{{.Header}}", Value: "seen"}
}

// New checks cfg and builds the plugin. It must not do I/O: open
// connections in a Start(ctx) method (registry.Starter) and release them
// in Close (registry.Closer).
func New(cfg Config, host registry.Host) (*Plugin, error) {
	if cfg.Header != "" && !validFieldName(cfg.Header) {
		return nil, fmt.Errorf("{{.Name}}: header %q is not a valid header field name", cfg.Header)
	}
	if strings.ContainsAny(cfg.Value, "\r\n") {
		return nil, fmt.Errorf("{{.Name}}: value must be one line")
	}
	return &Plugin{cfg: cfg}, nil
}

// validFieldName reports whether s is a header field name (RFC 5322: printable
// US-ASCII except ':').
func validFieldName(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' || r == ':' {
			return false
		}
	}
	return s != ""
}
`

const pluginTmpl = `// Package {{.Package}} is the {{.Name}} plugin: {{.Description}}.
// See README.md.
package {{.Package}}

import (
	"context"

	"github.com/elemta/elemta/registry"
)

// Plugin is the {{.Name}} plugin. Its methods may be called for many
// messages at once.
type Plugin struct {
	cfg Config
}

// HandleStage runs at {{.Stage}}. It must return soon after ctx is cancelled.
func (p *Plugin) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &registry.Result{Verdict: registry.AcceptVerdict(), Details: "accepted"}
	if p.cfg.Header != "" {
		res.AddHeaders = []registry.Field{ {Name: p.cfg.Header, Value: p.cfg.Value} }
	}
	return res, nil
}
`

const testTmpl = `package {{.Package}}

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestContract checks the plugin against the registry's contract.
func TestContract(t *testing.T) {
	registrytest.Run(t, "{{.Name}}", New, registrytest.Options{})
}

func TestHandleStage(t *testing.T) {
	raw, err := os.ReadFile("testdata/message.eml")
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  Config
		want []registry.Field
	}{
		{"defaults", DefaultConfig(), []registry.Field{ {Name: "{{.Header}}", Value: "seen"} }},
		{"custom field", Config{Header: "X-Checked", Value: "yes"}, []registry.Field{ {Name: "X-Checked", Value: "yes"} }},
		{"no field", Config{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg, registry.Host{})
			require.NoError(t, err)
			msg, err := registry.ParseMessage(raw, registrytest.SampleEnvelope())
			require.NoError(t, err)
			res, err := p.HandleStage(context.Background(), registry.{{.StageConst}}, registry.NewProcessingContext(msg, nil))
			require.NoError(t, err)
			assert.Equal(t, registry.Accept, res.Verdict.Action)
			assert.Equal(t, tt.want, res.AddHeaders)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"field name with a space", Config{Header: "X Bad"}, "not a valid header field name"},
		{"field name with a colon", Config{Header: "X-Bad:"}, "not a valid header field name"},
		{"value on two lines", Config{Header: "X-Ok", Value: "a\r\nb"}, "value must be one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, registry.Host{})
			assert.ErrorContains(t, err, tt.err)
		})
	}
}
`

const readmeTmpl = `# {{.Name}}

{{.Description}}.

Runs at ` + "`{{.Stage}}`" + ` (plugin type ` + "`{{.Type}}`" + `). It needs no external service.

## Configuration

` + "```toml" + `
[plugins]
plugins = ["{{.Name}}"]

[plugins.{{.Name}}]
header = "{{.Header}}"
value = "seen"
` + "```" + `

| key | default | meaning |
| --- | --- | --- |
| ` + "`header`" + ` | ` + "`\"{{.Header}}\"`" + ` | header field added to every message; ` + "`\"\"`" + ` adds none |
| ` + "`value`" + ` | ` + "`\"seen\"`" + ` | the field's value (one line) |

Every plugin also takes ` + "`timeout`, `on_error` and `stages`" + ` (see the main README).

## Results

Accepts every message and adds the configured field.

## Limits

None yet.

## Tests

` + "```sh" + `
{{.TestCmd}}
` + "```" + `

` + "`TestContract`" + ` runs the registry's contract kit (` + "`registry/registrytest`" + `).
`

const messageTmpl = "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: {{.Name}} test\r\nMessage-ID: <{{.Package}}-1@example.org>\r\n\r\nHello.\r\n"

const testdataTmpl = `Test messages for the {{.Name}} plugin. message.eml is a plain message that
every configuration accepts.
`
