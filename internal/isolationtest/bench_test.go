package isolationtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"

	_ "github.com/elemta/elemta/plugins/clamav"
	_ "github.com/elemta/elemta/plugins/dkim"
)

// BenchmarkIsolation measures one call through the executor, in-process
// and with isolation = "process" side by side in one run: a trivial
// plugin, clamav (real clamd, cache off) and dkim verifying one ed25519
// signature, at 10 KB and 1 MB. The isolated figure includes copying the
// message to the worker and parsing its header there.
func BenchmarkIsolation(b *testing.B) {
	modes := []struct{ name, keys string }{{"inprocess", ""}, {"isolated", "isolation = \"process\"\n"}}
	run := func(b *testing.B, doc string, host registry.Host, raw []byte, stage registry.Stage, check func(*registry.Result) error) {
		m := registrytest.Load(b, doc, host)
		msg, err := registry.ParseMessage(raw, registry.Envelope{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			sr, err := m.ExecuteStage(context.Background(), stage, registry.NewProcessingContext(msg, nil))
			if err != nil {
				b.Fatal(err)
			}
			if err := check(sr.Results[0]); err != nil {
				b.Fatal(err)
			}
		}
	}
	ok := func(r *registry.Result) error { return r.Err }
	for _, mode := range modes {
		b.Run("trivial/"+mode.name, func(b *testing.B) {
			run(b, "[plugins]\nplugins = [\"isotrivial\"]\n[plugins.isotrivial]\n"+mode.keys, registry.Host{}, []byte(sized(200)), registry.PostReception, ok)
		})
	}
	key, zone := dkimKey(b)
	for _, size := range []struct {
		name string
		n    int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		raw := []byte(sized(size.n))
		signed := sign(b, key, raw)
		for _, mode := range modes {
			b.Run(fmt.Sprintf("dkim/%s/%s", size.name, mode.name), func(b *testing.B) {
				host := registry.Host{Resolver: registrytest.NewResolver(b, zone)}
				run(b, "[plugins]\nplugins = [\"dkim\"]\n[plugins.dkim]\n"+mode.keys, host, signed, registry.PostReception, func(r *registry.Result) error {
					if r.Err != nil {
						return r.Err
					}
					if d, _ := r.Data.(*registry.DKIMResult); d == nil || len(d.Signatures) != 1 || d.Signatures[0].Result != registry.AuthPass {
						return fmt.Errorf("dkim: %+v", r.Data)
					}
					return nil
				})
			})
		}
		for _, mode := range modes {
			b.Run(fmt.Sprintf("clamav/%s/%s", size.name, mode.name), func(b *testing.B) {
				tcp := testenv.Require(b, testenv.Clamd)
				doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\n%sservers = [%q]\ncache_size = 0\n", mode.keys, tcp)
				run(b, doc, registry.Host{}, raw, registry.PostReception, ok)
			})
		}
	}
}

// sized is a plain message of about n bytes.
func sized(n int) string {
	head := "From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <b@example.com>\r\n\r\n"
	line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
	return head + strings.Repeat(line, max(n-len(head), 0)/len(line)+1)
}

func dkimKey(b *testing.B) (ed25519.PrivateKey, string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return priv, fmt.Sprintf("bench._domainkey.example.com. 60 IN TXT \"v=DKIM1; k=ed25519; p=%s\"\n", base64.StdEncoding.EncodeToString(pub))
}

func sign(b *testing.B, key crypto.Signer, raw []byte) []byte {
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{Domain: "example.com", Selector: "bench", Signer: key}); err != nil {
		b.Fatal(err)
	}
	return out.Bytes()
}
