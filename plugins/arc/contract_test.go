package arc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// contractKey writes a fresh Ed25519 key to a 0600 PKCS#8 file and returns
// its path and DNS key record.
func contractKey(t *testing.T) (path, txt string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "contract.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := dkimkey.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if txt, err = k.TXTRecord(); err != nil {
		t.Fatal(err)
	}
	return path, txt
}

// TestContract checks the plugin against the registry's contract kit, in
// process and isolated, sealing every message at pre-queue with a key made
// here and validating chains at post-reception against the same key
// published in the resolver's zone. Beside the kit's sample messages it
// validates a message this plugin sealed (a passing chain) and the same
// message with its body changed (a failing one), on a clock that stands
// still so that both runs write the same t= tags.
func TestContract(t *testing.T) {
	path, txt := contractKey(t)
	res := registrytest.NewResolver(t, fmt.Sprintf("contract._domainkey.example.net. IN TXT %q\n", txt))
	clk := storetest.NewClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	config := fmt.Sprintf("domain = \"example.net\"\nselector = \"contract\"\nprivate_key = %q\nauthserv_id = \"mx.example.net\"", path)

	// A message sealed by this plugin, for a chain that validates.
	cfg, _ := registrytest.Settings[Config](t, "[plugins]\nplugins = [\"arc\"]\n[plugins.arc]\n"+config, "arc")
	sealer, err := New(*cfg, registry.Host{Resolver: res, Clock: clk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sealer.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := registrytest.SampleMessages()
	m, err := registry.ParseMessage(msgs[0], registrytest.SampleEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if err := sealer.SealMessage(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	sealed := m.Rewrite(nil, nil)
	tampered := []byte(string(sealed[:len(sealed)-len("Noon at the usual place?\r\n")]) + "Nine at the usual place?\r\n")
	msgs = append(msgs, sealed, tampered)

	registrytest.Run(t, "arc", New, registrytest.Options{
		Host:     registry.Host{Resolver: res, Clock: clk},
		Config:   config,
		Messages: msgs,
		Configs: []string{
			config + "\nseal_for = \"chained\"",
			config + "\nseal_for = \"unauthenticated\"\nmax_instances = 10",
			"verify = false",
			// Values Validate refuses.
			"max_instances = 0",
			"max_instances = 51",
			`domain = "example.net"`,
			fmt.Sprintf("domain = \"exa mple.net\"\nselector = \"s\"\nprivate_key = %q", path),
			fmt.Sprintf("domain = \"example.net\"\nselector = \"s s\"\nprivate_key = %q", path),
			`authserv_id = "mx example"`,
			`seal_for = "some"`,
			`headers = ["subject"]`,
			`headers = ["from", "arc-seal"]`,
		},
	})
}
