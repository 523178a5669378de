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

// OwnedHeaders implements registry.HeaderOwner. Should the plugin ever
// fail (it does no I/O: a panic or a timeout), the host removes every
// incoming Authentication-Results field, not only those naming our
// authserv-id (RFC 8601 §5 allows removing them all): the check of the
// authserv-id is the plugin's, and a field naming us must never survive.
func (c *Config) OwnedHeaders() []string { return []string{HeaderName} }

var _ registry.HeaderOwner = (*Config)(nil)

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports what New would refuse.
func (c *Config) Validate() error {
	if strings.ContainsAny(c.AuthservID, " \t\r\n;()\"\\") {
		return fmt.Errorf("authserv_id = %q: must be a single token (no spaces, ';', parentheses, quotes or backslashes)", c.AuthservID)
	}
	return nil
}
