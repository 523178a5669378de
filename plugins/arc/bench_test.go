package arc

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

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// BenchmarkVerify3Hops verifies a chain of three ARC sets (RSA-2048) on a
// 10 KB message, next to one DKIM verification (go-msgauth) of the same
// message with the same key, both with an in-memory resolver (a warm cache).
func BenchmarkVerify3Hops(b *testing.B) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "arc.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600); err != nil {
		b.Fatal(err)
	}
	k, _ := dkimkey.LoadFile(keyFile)
	txt, _ := k.TXTRecord()
	res := &fakeResolver{txt: map[string]string{"arc._domainkey.example.org": txt}}

	line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
	body := strings.Repeat(line, 10<<10/len(line)+1)[:10<<10]
	raw := []byte(strings.TrimSuffix(testMsg, "Shall we  meet at noon?\r\n") + body)
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(raw), &dkim.SignOptions{Domain: "example.org", Selector: "arc", Signer: rk,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"from", "to", "subject", "date", "message-id"}}); err != nil {
		b.Fatal(err)
	}
	c := DefaultConfig()
	c.Domain, c.Selector, c.PrivateKey = "example.org", "arc", keyFile
	p := newPlugin(b, c, res)
	msg := signed.Bytes()
	for range 3 {
		m := parse(b, msg, registry.Envelope{})
		if err := p.SealMessage(context.Background(), m); err != nil {
			b.Fatal(err)
		}
		msg = m.Rewrite(nil, nil)
	}
	pc := registry.NewProcessingContext(parse(b, msg, registry.Envelope{}), nil)

	b.Run("arc-3-hops", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			r, err := p.HandleStage(context.Background(), registry.PostReception, pc)
			if err != nil || r.Data.(*registry.ARCResult).Result != registry.AuthPass {
				b.Fatalf("%v %+v", err, r)
			}
		}
	})
	b.Run("dkim-go-msgauth", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) }}
		for b.Loop() {
			v, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
			if err != nil || len(v) != 1 || v[0].Err != nil {
				b.Fatal(err, v)
			}
		}
	})
}
