package dkimkey

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestCache(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)

	c := NewCache(2)
	a, err := c.Parse(rec)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Parse(rec); b != a {
		t.Fatal("the second parse of the same text is not the cached key")
	}
	if _, err := c.Parse("v=DKIM1; p="); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
	if _, err := c.Parse("v=DKIM1; p="); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked, cached: %v", err)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}
	if _, err := c.Parse(rec + " "); err != nil { // a third text: the cache stays at its bound
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d after a third record, want the bound 2", c.Len())
	}
	long := rec + "; n=" + strings.Repeat("x", MaxCachedRecord)
	big := NewCache(10)
	if _, err := big.Parse(long); err != nil {
		t.Fatal(err)
	}
	if big.Len() != 0 {
		t.Fatal("a record over MaxCachedRecord was cached")
	}
	if _, err := NewCache(0).Parse(rec); err != nil {
		t.Fatal(err)
	}
	if NewCache(0).Len() != 0 {
		t.Fatal("a zero cache holds records")
	}
}
