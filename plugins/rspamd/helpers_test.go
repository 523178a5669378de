package rspamd

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// testHost is the host the plugin gets in tests.
var testHost = registry.Host{Hostname: "mx.example.test"}

var testEnvelope = registry.Envelope{
	ClientIP: netip.MustParseAddr("127.0.0.1"),
	HELO:     "mail.example.test",
	MailFrom: "alice@example.test",
	RcptTo:   []string{"bob@example.test", "carol@example.test"},
	AuthUser: "",
}

// message parses raw with env.
func message(t testing.TB, raw []byte, env registry.Envelope) *registry.Message {
	t.Helper()
	m, err := registry.ParseMessage(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startRaw starts a loopback server whose connections handle serves, for
// faults rspamd cannot be made to show.
func startRaw(t *testing.T, handle func(net.Conn)) rawServer {
	return rawServer{registrytest.NewServer(t, handle)}
}

type rawServer struct{ *registrytest.Server }

func (s rawServer) url() string { return "http://" + s.Addr() }

// closedURL returns a loopback URL nothing listens on.
func closedURL(t *testing.T) string { return "http://" + registrytest.ClosedAddr(t) }
