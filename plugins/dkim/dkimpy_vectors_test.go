package dkim

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// TestDKIMPyVectors runs dkimpy's test vectors (testdata/dkimpy, see its
// README.md) through VerifySignature with a fake resolver built from the
// vectors' key records, mirroring dkimpy's own test_dkim.py and
// test_dkim_ed25519.py cases.
func TestDKIMPyVectors(t *testing.T) {
	dir := filepath.Join("testdata", "dkimpy")
	ourRSA := func(t *testing.T) []byte { // dkimpy's test.message signed by us with test.private
		p := newPlugin(t, Config{Sign: true, MaxSignatures: 10, Canonicalization: "relaxed/relaxed", Headers: DefaultHeaders, OversignHeaders: []string{"from"},
			Domains: map[string]DomainConfig{"example.com": {Selector: "test", PrivateKey: privateCopy(t, filepath.Join(dir, "test.private"))}}}, nil, nil)
		return signed(t, p, toCRLF(readFile(t, filepath.Join(dir, "test.message"))), "example.com")
	}
	ourEd := func(key, msg, domain, selector string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			p := newPlugin(t, Config{Sign: true, MaxSignatures: 10, Canonicalization: "relaxed/relaxed", Headers: DefaultHeaders,
				Domains: map[string]DomainConfig{domain: {Selector: selector, PrivateKey: privateCopy(t, filepath.Join(dir, key))}}}, nil, nil)
			return signed(t, p, toCRLF(readFile(t, filepath.Join(dir, msg))), domain)
		}
	}
	file := func(name string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return readFile(t, filepath.Join(dir, name)) }
	}
	gen := func(name string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return readFile(t, filepath.Join("testdata", "generated", name)) }
	}

	tests := []struct {
		name    string
		msg     func(t *testing.T) []byte
		dns     map[string]string // selector._domainkey.domain -> record file
		want    []registry.AuthResult
		reasons []string // substrings of each signature's reason
	}{
		{"rfc8463 appendix A: ed25519 and rsa signatures", file("rfc6376.signed.msg"),
			map[string]string{"brisbane._domainkey.football.example.com": "brisbane.txt", "test._domainkey.football.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthPass, registry.AuthPass}, nil},
		{"rfc8463 appendix A: ed25519 key missing", file("rfc6376.signed.msg"),
			map[string]string{"test._domainkey.football.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthPermError, registry.AuthPass}, []string{"no key for signature", ""}},
		{"rfc8463 appendix A: rsa key truncated (test_bad.txt)", file("rfc6376.signed.msg"),
			map[string]string{"brisbane._domainkey.football.example.com": "brisbane.txt", "test._domainkey.football.example.com": "test_bad.txt"},
			[]registry.AuthResult{registry.AuthPass, registry.AuthPermError}, []string{"", "key syntax error"}},
		{"rfc8463 appendix A: another ed25519 key published", file("rfc6376.signed.msg"),
			map[string]string{"brisbane._domainkey.football.example.com": "ed25519test.dns", "test._domainkey.football.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthFail, registry.AuthPass}, []string{"signature did not verify", ""}},
		{"exim ed25519 third party (ed25519test2.msg)", file("ed25519test2.msg"),
			map[string]string{"sed._domainkey.test.ex": "eximtest.dns"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"degenerate folding (Debian #711751)", file("test2.message"),
			map[string]string{"20120113._domainkey.gmail.com": "gmail-20120113.txt"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"signed by us, test.txt", ourRSA, map[string]string{"test._domainkey.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"signed by us, implicit k= (test2.txt)", ourRSA, map[string]string{"test._domainkey.example.com": "test2.txt"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"signed by us, bad version (badversion.txt)", ourRSA, map[string]string{"test._domainkey.example.com": "badversion.txt"},
			[]registry.AuthResult{registry.AuthPermError}, []string{"version"}},
		{"signed by us, unknown k= (badk.txt)", ourRSA, map[string]string{"test._domainkey.example.com": "badk.txt"},
			[]registry.AuthResult{registry.AuthPermError}, []string{"unsupported key algorithm"}},
		{"signed by us, truncated key (test_bad.txt)", ourRSA, map[string]string{"test._domainkey.example.com": "test_bad.txt"},
			[]registry.AuthResult{registry.AuthPermError}, []string{"key syntax error"}},
		{"signed by us, gmail's key published instead", ourRSA, map[string]string{"test._domainkey.example.com": "gmail-20120113.txt"},
			[]registry.AuthResult{registry.AuthFail}, []string{"signature did not verify"}},
		{"signed by us, s=tlsrpt key refused for email", ourRSA, map[string]string{"test._domainkey.example.com": "test_tlsrpt.txt"},
			[]registry.AuthResult{registry.AuthPermError}, []string{"inappropriate service"}},
		{"signed by us, no key record", ourRSA, nil,
			[]registry.AuthResult{registry.AuthPermError}, []string{"no key for signature"}},
		{"ed25519 signed by us (ed25519test.key)", ourEd("ed25519test.key", "ed25519test.msg", "example.net", "test"),
			map[string]string{"test._domainkey.example.net": "ed25519test.dns"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"ed25519 signed by us with the RFC 8032 key (brisbane)", ourEd("rfc8032_7_1.key", "rfc6376.msg", "football.example.com", "brisbane"),
			map[string]string{"brisbane._domainkey.football.example.com": "brisbane.txt"},
			[]registry.AuthResult{registry.AuthPass}, nil},
		{"rsa-sha1 refused (RFC 8301 §3.1)", gen("rsa-sha1.msg"), map[string]string{"test._domainkey.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthPermError}, []string{"sha1"}},
		{"l= refused as go-msgauth does", gen("length-tag.msg"), map[string]string{"test._domainkey.example.com": "test.txt"},
			[]registry.AuthResult{registry.AuthFail}, []string{"body length"}},
		{"unsigned message", file("test.message"), nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := &fakeResolver{txt: map[string]string{}}
			for name, f := range tc.dns {
				res.txt[name] = record(t, f)
			}
			p := newPlugin(t, DefaultConfig(), res, nil)
			got, err := p.VerifySignature(context.Background(), parse(t, tc.msg(t), registry.Envelope{}))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(results(got), tc.want) {
				t.Fatalf("results = %v, want %v (%+v)", results(got), tc.want, got.Signatures)
			}
			for i, want := range tc.reasons {
				if r := got.Signatures[i].Reason; !strings.Contains(r, want) || (want == "" && r != "") {
					t.Errorf("signature %d reason = %q, want %q", i, r, want)
				}
			}
		})
	}
}

// TestRFC8463Key checks that brisbane.txt is the public half of RFC 8032
// §7.1 test 1 (rfc8032_7_1.key), so the appendix A vector means what it says.
func TestRFC8463Key(t *testing.T) {
	k, err := dkimkey.Parse(readFile(t, filepath.Join("testdata", "dkimpy", "rfc8032_7_1.key")))
	if err != nil {
		t.Fatal(err)
	}
	pub := base64.StdEncoding.EncodeToString(k.Signer.Public().(ed25519.PublicKey))
	if want := record(t, "brisbane.txt"); !strings.HasSuffix(want, "p="+pub) {
		t.Fatalf("brisbane.txt = %q, RFC 8032 key gives p=%s", want, pub)
	}
}
