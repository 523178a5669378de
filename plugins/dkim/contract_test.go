package dkim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// contractKey writes a fresh Ed25519 key to a 0600 PKCS#8 file and returns
// its path and the parsed key.
func contractKey(t *testing.T) (string, *dkimkey.Key) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "contract.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := dkimkey.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, k
}

// TestContract checks the plugin against the registry's contract kit, in
// process and isolated, signing at pre-queue for the (authenticated) sample
// sender with a key made here and verifying at post-reception against the
// same key published in the resolver's zone. Beside the kit's sample
// messages it verifies a message that carries a valid signature and one
// whose body was changed after signing, so both runs compare a pass and a
// fail, not only "no signature".
func TestContract(t *testing.T) {
	path, key := contractKey(t)
	txt, err := key.TXTRecord()
	if err != nil {
		t.Fatal(err)
	}
	res := registrytest.NewResolver(t, fmt.Sprintf("contract._domainkey.example.org. IN TXT %q\n", txt))

	msgs := registrytest.SampleMessages()
	var signedMsg bytes.Buffer
	if err := dkim.Sign(&signedMsg, bytes.NewReader(msgs[0]), &dkim.SignOptions{
		Domain: "example.org", Selector: "contract", Signer: key.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	}); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(signedMsg.Bytes(), []byte("Noon"), []byte("Nine"), 1)
	msgs = append(msgs, signedMsg.Bytes(), tampered)

	env := registrytest.SampleEnvelope()
	env.AuthUser = "alice"
	registrytest.Run(t, "dkim", New, registrytest.Options{
		Host:     registry.Host{Resolver: res},
		Config:   fmt.Sprintf("selector = \"contract\"\nprivate_key = %q", path),
		Messages: msgs,
		Envelope: &env,
		// go-msgauth stamps t= with the system clock (Host.Clock cannot
		// reach it), and b= signs it: the two runs may straddle a second.
		Normalize: func(r *registry.Result) {
			for i, f := range r.AddHeaders {
				if f.Name == "DKIM-Signature" {
					r.AddHeaders[i].Value = stampRE.ReplaceAllString(f.Value, "$1=*")
				}
			}
		},
		Configs: []string{
			fmt.Sprintf("trusted_networks = [\"192.0.2.0/24\"]\n[domains.\"example.org\"]\nselector = \"contract\"\nprivate_key = %q\nsign_unauthenticated = true", path),
			fmt.Sprintf("selector = \"contract\"\nprivate_key = %q\ndomain = \"example.org\"\nexpiration = \"24h\"\ncanonicalization = \"simple/simple\"", path),
			"verify = true\nsign = false",
			// Values Validate refuses.
			"max_signatures = 0",
			"max_signatures = 101",
			`canonicalization = "loose/simple"`,
			`headers = ["subject"]`,
			`headers = ["from", "x:y"]`,
			`oversign_headers = [""]`,
			`selector = "s1"`,
			fmt.Sprintf("private_key = %q", path),
			`domain = "example.org"`,
			fmt.Sprintf("selector = \"bad selector\"\nprivate_key = %q", path),
			fmt.Sprintf("selector = \"s\"\nprivate_key = %q\ndomain = \"exa mple.org\"", path),
			fmt.Sprintf("[domains.\"Example.ORG\"]\nselector = \"s\"\nprivate_key = %q", path),
			"[domains.\"example.org\"]\nselector = \"s\"",
			`trusted_networks = ["192.0.2.0/33"]`,
		},
	})
}

// stampRE finds the t= and b= tags of a DKIM-Signature value (b= to its
// end, folded lines and all).
var stampRE = regexp.MustCompile(`\b(t|b)=[^;]*`)
