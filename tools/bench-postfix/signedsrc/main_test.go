package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGenSignsDistinctMessages: gen writes n messages, each verifying
// (relaxed/relaxed, d=example.test, s=rsa2048) against the public key, each
// with its own Message-ID and body, each at least the size asked for.
func TestGenSignsDistinctMessages(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.pem")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	record := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)

	corpus := filepath.Join(dir, "corpus")
	require.NoError(t, runGen([]string{"-dir", corpus, "-m", "3", "-l", "2048", "-key", keyFile}))
	msgs, err := readCorpus(corpus)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "rsa2048._domainkey.example.test" {
			return nil, fmt.Errorf("unexpected lookup %q", domain)
		}
		return []string{record}, nil
	}}
	seen := map[string]bool{}
	for _, m := range msgs {
		assert.GreaterOrEqual(t, len(m), 2048)
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m), opts)
		require.NoError(t, err)
		require.Len(t, vs, 1)
		assert.NoError(t, vs[0].Err)
		assert.Contains(t, string(m), "c=relaxed/relaxed")
		i := bytes.Index(m, []byte("Message-ID: "))
		require.GreaterOrEqual(t, i, 0)
		id := string(m[i : i+bytes.IndexByte(m[i:], '\n')])
		seen[id] = true
		body := string(m[bytes.Index(m, []byte("\r\n\r\n")):])
		seen[body] = true
	}
	assert.Len(t, seen, 6, "three Message-IDs and three bodies, all distinct")
}

// TestCheckAuthResults: check passes only when every copy has one field
// with spf=pass, dkim=pass and dmarc=pass, and enough copies.
func TestCheckAuthResults(t *testing.T) {
	const ok = "Authentication-Results: el.example.test;\r\n spf=pass smtp.mailfrom=a@example.test;\r\n dkim=pass header.d=example.test;\r\n dmarc=pass header.from=example.test\r\n"
	tests := []struct {
		name    string
		headers []string
		want    int
		fail    bool
	}{
		{"all pass", []string{ok, ok}, 2, false},
		{"too few", []string{ok}, 2, true},
		{"dkim fail", []string{ok, "Authentication-Results: el.example.test; spf=pass; dkim=fail; dmarc=pass\r\n"}, 2, true},
		{"no dmarc", []string{"Authentication-Results: el.example.test; spf=pass; dkim=pass\r\n"}, 1, true},
		{"no field", []string{"X-Other: dkim=pass dmarc=pass spf=pass\r\n"}, 1, true},
		{"split over two fields", []string{"Authentication-Results: a; spf=pass; dkim=pass\r\nAuthentication-Results: a; dmarc=pass\r\n"}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, h := range tt.headers {
				msg := h + "From: <a@example.test>\r\n\r\nbody\r\n"
				require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte(msg), 0o644))
			}
			err := runCheck([]string{"-dir", dir, "-want", fmt.Sprint(tt.want)})
			if tt.fail {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
