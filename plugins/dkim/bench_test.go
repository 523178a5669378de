package dkim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// BenchmarkVerifyRSA2048 compares the plugin's verification of one
// rsa-sha256 (2048-bit) signature with go-msgauth's dkim.Verify called
// directly on the same bytes with the same in-memory key lookup.
func BenchmarkVerifyRSA2048(b *testing.B) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "rsa.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600); err != nil {
		b.Fatal(err)
	}
	k, err := dkimkey.LoadFile(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	txt, _ := k.TXTRecord()
	res := &fakeResolver{txt: map[string]string{"bench._domainkey.example.com": txt}}
	cfg := DefaultConfig()
	cfg.Domains = map[string]DomainConfig{"example.com": {Selector: "bench", PrivateKey: keyFile}}
	p := newPlugin(b, cfg, res, nil)

	for _, size := range []struct {
		name  string
		bytes int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
		body := strings.Repeat(line, size.bytes/len(line)+1)[:size.bytes]
		raw := signed(b, p, []byte(strings.TrimSuffix(testMsg, "\r\n")+body), "example.com")
		msg := parse(b, raw, registry.Envelope{})
		pc := registry.NewProcessingContext(msg, nil)

		b.Run(size.name+"/plugin", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				r, err := p.HandleStage(context.Background(), registry.PostReception, pc)
				if err != nil || r.Data.(*registry.DKIMResult).Signatures[0].Result != registry.AuthPass {
					b.Fatalf("%v %+v", err, r)
				}
			}
		})
		b.Run(size.name+"/go-msgauth", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
				return res.LookupTXT(context.Background(), name)
			}}
			for b.Loop() {
				v, err := dkim.VerifyWithOptions(bytes.NewReader(raw), opts)
				if err != nil || v[0].Err != nil {
					b.Fatal(err, v[0].Err)
				}
			}
		})
		// Both in the same loop, alternating which goes first, so that noise
		// from other processes on the machine hits both alike.
		b.Run(size.name+"/ratio", func(b *testing.B) {
			opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
				return res.LookupTXT(context.Background(), name)
			}}
			var plugin, direct time.Duration
			runPlugin := func() {
				start := time.Now()
				if _, err := p.HandleStage(context.Background(), registry.PostReception, pc); err != nil {
					b.Fatal(err)
				}
				plugin += time.Since(start)
			}
			runDirect := func() {
				start := time.Now()
				if _, err := dkim.VerifyWithOptions(bytes.NewReader(raw), opts); err != nil {
					b.Fatal(err)
				}
				direct += time.Since(start)
			}
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					runPlugin()
					runDirect()
				} else {
					runDirect()
					runPlugin()
				}
				i++
			}
			b.ReportMetric(float64(plugin.Nanoseconds())/float64(i), "plugin-ns/op")
			b.ReportMetric(float64(direct.Nanoseconds())/float64(i), "go-msgauth-ns/op")
			b.ReportMetric(float64(plugin)/float64(direct), "overhead-ratio")
		})
	}
}
