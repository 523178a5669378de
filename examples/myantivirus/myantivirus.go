// Package myantivirus is the example plugin of Elemta's original plugin
// documentation ("Plugin Development"), ported to compiled-in plugins.
// The changes from the original are only these: the package is no longer
// main (it is linked in, not built with -buildmode=plugin), the import path
// is github.com/elemta/elemta/registry (imported under the old name
// plugin, so the code below is unchanged), the Config type the original
// left undefined is declared, and `var Plugin MyAntivirusPlugin` became an
// init function calling registry.Register.
package myantivirus

import (
	"context"

	plugin "github.com/elemta/elemta/registry"
)

// Config is the plugin's [plugins.myantivirus] table; it has no keys.
type Config struct{}

type MyAntivirusPlugin struct {
	config *Config
}

func (p *MyAntivirusPlugin) ScanMessage(ctx context.Context, msg *plugin.Message) (*plugin.ScanResult, error) {
	// Implement virus scanning logic
	return &plugin.ScanResult{
		Status:  plugin.StatusClean,
		Details: "No threats detected",
	}, nil
}

func (p *MyAntivirusPlugin) GetInfo() *plugin.PluginInfo {
	return &plugin.PluginInfo{
		Name:    "MyAntivirus",
		Version: "1.0.0",
		Type:    plugin.PluginTypeAntivirus,
	}
}

// Register the plugin (this replaces `var Plugin MyAntivirusPlugin`).
func init() {
	plugin.Register(plugin.Module[Config, *MyAntivirusPlugin]{
		Name:    "myantivirus",
		Version: "1.0.0",
		Types:   []plugin.PluginType{plugin.PluginTypeAntivirus},
		Stages:  []plugin.Stage{plugin.PostReception},
		New: func(cfg Config, _ plugin.Host) (*MyAntivirusPlugin, error) {
			return &MyAntivirusPlugin{config: &cfg}, nil
		},
	})
}
