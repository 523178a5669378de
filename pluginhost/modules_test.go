package pluginhost

import (
	"testing"

	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckManifest(t *testing.T) {
	c := newCatalog(module(registry.Module[struct{}, scanner]{Name: "clamav", Types: []registry.PluginType{registry.PluginTypeAntivirus},
		New: func(struct{}, registry.Host) (scanner, error) { return scanner{}, nil }}))
	assert.NoError(t, checkManifest(c, []string{"clamav"}))
	err := checkManifest(c, []string{"clamav", "rspamd"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugins.yaml selects rspamd but no package registered that name (registered: clamav)")
}
