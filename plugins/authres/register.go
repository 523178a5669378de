package authres

import (
	"fmt"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Writer]{
		Name:        "authres",
		Version:     "1.0.0",
		Description: "one Authentication-Results header (RFC 8601) from the SPF, DKIM, DMARC and ARC results; removes forged ones claiming our authserv-id",
		Types:       []registry.PluginType{registry.PluginTypeCustom},
		Stages:      []registry.Stage{registry.PostReception},
		Consumes: []any{(*registry.SPFResult)(nil), (*registry.DKIMResult)(nil),
			(*registry.DMARCResult)(nil), (*registry.ARCResult)(nil)},
		Config: func() Config { return Config{} },
		New:    New,
	})
}

// Config is the [plugins.authres] table.
type Config struct {
	// AuthservID names this server in the header (RFC 8601 §2.5); empty
	// means the host's name (Host.Hostname).
	AuthservID string `toml:"authserv_id"`
}

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports what New would refuse.
func (c *Config) Validate() error {
	if strings.ContainsAny(c.AuthservID, " \t\r\n;()\"\\") {
		return fmt.Errorf("authserv_id = %q: must be a single token (no spaces, ';', parentheses, quotes or backslashes)", c.AuthservID)
	}
	return nil
}
