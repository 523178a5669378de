package dkimkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestParseRecordAndVerify(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1023)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := fromKey(rk)
	edKey, _ := fromKey(ek)
	rsaTXT, _ := rsaKey.TXTRecord()
	edTXT, _ := edKey.TXTRecord()
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&rk.PublicKey))
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	p := strings.TrimPrefix(rsaTXT, "v=DKIM1; k=rsa; p=")

	for _, tc := range []struct {
		name, txt string
		key       *Key
		algo      string
		wantErr   string
		sentinel  error
	}{
		{"rsa", rsaTXT, rsaKey, "rsa-sha256", "", nil},
		{"rsa without v= and k=", "p=" + p, rsaKey, "rsa-sha256", "", nil},
		{"rsa pkcs1 key (erratum 3017)", "k=rsa; p=" + pkcs1, rsaKey, "rsa-sha256", "", nil},
		{"rsa folded p=", "v=DKIM1; p=" + p[:40] + " " + p[40:], rsaKey, "rsa-sha256", "", nil},
		{"ed25519", edTXT, edKey, "ed25519-sha256", "", nil},
		{"h=sha256 allowed", "v=DKIM1; h=sha1:sha256; p=" + p, rsaKey, "rsa-sha256", "", nil},
		{"h=sha1 only", "v=DKIM1; h=sha1; p=" + p, rsaKey, "rsa-sha256", "h= does not allow", nil},
		{"algorithm mismatch", edTXT, edKey, "rsa-sha256", "does not match", nil},
		{"sha1 algorithm", rsaTXT, rsaKey, "rsa-sha1", "unsupported algorithm", nil},
		{"revoked", "v=DKIM1; p=", nil, "", "key revoked", ErrRevoked},
		{"no p=", "v=DKIM1; k=rsa", nil, "", "no p=", ErrMalformed},
		{"bad version", "v=DKIM2; p=" + p, nil, "", "version", ErrMalformed},
		{"v= not first", "k=rsa; v=DKIM1; p=" + p, nil, "", "not the first", ErrMalformed},
		{"unknown k=", "k=dsa; p=" + p, nil, "", "unknown key type", ErrMalformed},
		{"not for email", "s=tlsrpt; p=" + p, nil, "", "not for email", ErrMalformed},
		{"s=* is fine", "s=*; p=" + p, rsaKey, "rsa-sha256", "", nil},
		{"1023-bit rsa", "p=" + base64.StdEncoding.EncodeToString(smallDER), nil, "", "1023 bits", ErrShortKey},
		{"garbage base64", "p=!!!", nil, "", "p=", ErrMalformed},
		{"ed25519 wrong size", "k=ed25519; p=" + base64.StdEncoding.EncodeToString(make([]byte, 31)), nil, "", "31 bytes", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pk, err := ParseRecord(tc.txt)
			if tc.key == nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, tc.sentinel) {
					t.Fatalf("ParseRecord() = %v, want %v containing %q", err, tc.sentinel, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hashed := SHA256([]byte("data"))
			sig, err := tc.key.Sign(hashed)
			if err != nil {
				t.Fatal(err)
			}
			err = pk.Verify(tc.algo, hashed, sig)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Verify() = %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr == "" {
				if err := pk.Verify(tc.algo, SHA256([]byte("other")), sig); err == nil {
					t.Fatal("signature over other data verified")
				}
			}
		})
	}
}
