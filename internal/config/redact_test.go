package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
)

func TestRedacted(t *testing.T) {
	if _, ok := pluginhost.Lookup("rspamd"); !ok {
		t.Skip("rspamd is not compiled into this test binary")
	}
	doc := `
[plugins]
plugins = ["rspamd", "rspamd/eu"]
[plugins.rspamd]
url = "http://user:hunter2hunter2@127.0.0.1:11333"
password = "controller-secret-1"
[plugins."rspamd/eu"]
password = "controller-secret-2"
[admin]
token_file = "/etc/elemta/admin.token"
[server]
auth_file = "/etc/elemta/users"
`
	cfg, err := Parse("t.toml", []byte(doc))
	require.NoError(t, err)
	red, err := cfg.Redacted()
	require.NoError(t, err)
	b, err := json.Marshal(red)
	require.NoError(t, err)
	out := string(b)
	for _, secret := range []string{"hunter2hunter2", "controller-secret-1", "controller-secret-2"} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, out, RedactedValue)
	assert.Contains(t, out, "/etc/elemta/admin.token", "a file holding a secret shows as its path")
	assert.Contains(t, out, "/etc/elemta/users")
	plugins := red["plugins"].(map[string]any)
	assert.Equal(t, RedactedValue, plugins["rspamd/eu"].(map[string]any)["password"])
	assert.True(t, strings.Contains(plugins["rspamd"].(map[string]any)["url"].(string), "127.0.0.1:11333"))
	assert.Equal(t, "127.0.0.1:8025", red["admin"].(map[string]any)["listen"], "defaults are filled in")
}

func TestRedactString(t *testing.T) {
	for in, want := range map[string]string{
		"-----BEGIN PRIVATE KEY-----\nMII...": RedactedValue,
		"redis://u:pw@h:6379/0":               "redis://u:redacted@h:6379/0",
		"http://h:1/x":                        "http://h:1/x",
		"plain":                               "plain",
	} {
		assert.Equal(t, want, redactString(in), in)
	}
}

func TestLogPluginLevelsMustNameEnabled(t *testing.T) {
	if _, ok := pluginhost.Lookup("rspamd"); !ok {
		t.Skip("rspamd is not compiled into this test binary")
	}
	_, err := Parse("t.toml", []byte("[plugins]\nplugins = [\"rspamd\"]\n[log]\nplugin_levels = { rspamd = \"debug\", spf = \"debug\", \"rspamd/eu\" = \"info\" }\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin_levels.spf: no such plugin instance")
	assert.Contains(t, err.Error(), "plugin_levels.rspamd/eu: no such plugin instance")
	assert.NotContains(t, err.Error(), "plugin_levels.rspamd:")
}
