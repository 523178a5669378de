package milter_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/config"
	elmilter "github.com/elemta/elemta/internal/milter"
)

func TestParseListen(t *testing.T) {
	for _, tc := range []struct {
		spec, network, address, err string
	}{
		{spec: "inet:127.0.0.1:8891", network: "tcp", address: "127.0.0.1:8891"},
		{spec: "127.0.0.1:8891", network: "tcp", address: "127.0.0.1:8891"},
		{spec: "inet6:[::1]:8891", network: "tcp6", address: "[::1]:8891"},
		{spec: "inet:localhost:0", network: "tcp", address: "localhost:0"},
		{spec: "unix:/run/elemta/milter.sock", network: "unix", address: "/run/elemta/milter.sock"},
		{spec: "local:/run/m.sock", network: "unix", address: "/run/m.sock"},
		{spec: "", err: "empty"},
		{spec: "unix:relative.sock", err: "must be absolute"},
		{spec: "inet:8891", err: "missing port"},
		{spec: "inet::8891", err: "no host"},
	} {
		n, a, err := elmilter.ParseListen(tc.spec)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.spec)
			continue
		}
		require.NoError(t, err, tc.spec)
		assert.Equal(t, [2]string{tc.network, tc.address}, [2]string{n, a}, tc.spec)
	}
}

// TestConfigValidate: each key at and past its boundary, through the
// config file as `config check` reads it.
func TestConfigValidate(t *testing.T) {
	d := elmilter.DefaultConfig()
	require.NoError(t, d.Validate())
	for _, tc := range []struct {
		toml, err string
	}{
		{`listen = "unix:/tmp/x.sock"`, ""},
		{`listen = "unix:x.sock"`, "listen: \"unix:x.sock\": the socket path must be absolute"},
		{`socket_mode = "0777"`, ""},
		{`socket_mode = "1000"`, "socket_mode"},
		{`socket_mode = "rw"`, "socket_mode"},
		{`default_action = "accept"`, ""},
		{`default_action = "reject"`, "default_action \"reject\""},
		{`hostname = ""`, "hostname"},
		{`read_timeout = 0`, "read_timeout 0s: must be positive"},
		{`write_timeout = "-1s"`, "milter.write_timeout: invalid duration -1s"},
		{`stage_timeout = "1s"` + "\n" + `progress_interval = "1s"`, ""},
		{`stage_timeout = "1s"` + "\n" + `progress_interval = "2s"`, "progress_interval 2s: at most stage_timeout (1s)"},
		{`shutdown_timeout = 0`, "shutdown_timeout"},
		{`max_message_size = 1` + "\n" + `max_header_size = 1`, ""},
		{`max_message_size = 0`, "max_message_size 0: must be positive"},
		{`max_header_size = 0`, "max_header_size 0: must be positive"},
		{`max_header_size = 100` + "\n" + `max_message_size = 99`, "max_header_size 100: at most max_message_size (99)"},
		{`max_recipients = 1`, ""},
		{`max_recipients = 0`, "max_recipients 0"},
		{`max_connections = 1`, ""},
		{`max_connections = 0`, "max_connections 0"},
		{`no_such_key = 1`, `unknown key "no_such_key" in [milter]`},
	} {
		cfg, err := config.Parse("m.toml", []byte("[milter]\n"+tc.toml+"\n"))
		if tc.err == "" {
			require.NoError(t, err, tc.toml)
			require.True(t, cfg.HasMilter)
			continue
		}
		require.Error(t, err, tc.toml)
		assert.Contains(t, err.Error(), tc.err, tc.toml)
		if !strings.Contains(tc.err, "unknown key") && !strings.Contains(tc.err, "invalid duration") {
			assert.Regexp(t, `^m\.toml:\d+:\d+: \[milter\]: `, err.Error(), "names the file, the line and the table")
			assert.Equal(t, 1, strings.Count(err.Error(), "[milter]"), "the table is named once")
		}
	}
	cfg, err := config.Parse("m.toml", []byte("[milter]\n"))
	require.NoError(t, err)
	assert.Equal(t, elmilter.DefaultConfig(), cfg.Milter, "an empty table keeps every default")
}
