package serve_test

import (
	"testing"

	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/plugins/rspamd"
)

// TestRspamdDefaultMaxSizeCoversServer: with the defaults, every message
// the server accepts is checked by rspamd. A smaller max_size let a spammer
// pad a message past it: on_size_limit "error", then on_error accept.
// (It lives here, not in plugins/rspamd, because a plugin's tests import
// nothing from internal/.)
func TestRspamdDefaultMaxSizeCoversServer(t *testing.T) {
	if got, server := rspamd.DefaultConfig().MaxSize, serve.DefaultConfig().MaxMessageSize; got < server {
		t.Fatalf("rspamd max_size default %d is below the server's max_message_size default %d", got, server)
	}
}
