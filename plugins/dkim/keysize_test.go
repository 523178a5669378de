//go:debug rsa1024min=0

package dkim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/registry"
)

// TestMinimumRSAKey checks RFC 8301 §3.2 at its boundary: a signature by a
// 1024-bit key verifies, one by a 1023-bit key is a permerror. go-msgauth
// counts whole bytes and would accept 1017-1023 bits; the plugin does not.
// (The go:debug line lets crypto/rsa make the short keys for the test.)
func TestMinimumRSAKey(t *testing.T) {
	for _, tc := range []struct {
		bits   int
		want   registry.AuthResult
		reason string
	}{
		{1024, registry.AuthPass, ""},
		{1023, registry.AuthPermError, "RSA key too short: 1023 bits"}, // go-msgauth alone would pass it
		{1016, registry.AuthPermError, "too short"},
	} {
		t.Run(fmt.Sprint(tc.bits), func(t *testing.T) {
			k, err := rsa.GenerateKey(rand.Reader, tc.bits)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := dkim.Sign(&out, strings.NewReader(testMsg), &dkim.SignOptions{Domain: "example.com", Selector: "k", Signer: k,
				HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
				t.Fatal(err)
			}
			res := &fakeResolver{txt: map[string]string{"k._domainkey.example.com": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}}
			got, err := newPlugin(t, DefaultConfig(), res, nil).VerifySignature(context.Background(), parse(t, out.Bytes(), registry.Envelope{}))
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Signatures[0]; s.Result != tc.want || !strings.Contains(s.Reason, tc.reason) {
				t.Fatalf("got %+v, want %s (%s)", s, tc.want, tc.reason)
			}
		})
	}
}
