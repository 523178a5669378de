package resolver

// The libraries that consume the resolver inspect its errors with type
// assertions on *net.DNSError (blitiri.com.ar/go/spf v1.6.0: isNotFound,
// isTemporary; go-msgauth v0.7.0 dkim and dmarc: net.Error.Temporary and
// IsNotFound). These tests run them on top of the resolver and check the
// results they derive: none/permerror/temperror for SPF, no policy and
// tempfail for DMARC, pass/permfail/tempfail for DKIM.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"
)

// compatResolver serves ok.test from a static zone and sends every other
// name to a server that answers SERVFAIL, with one attempt of 200ms.
func compatResolver(t *testing.T, extra ...string) *Resolver {
	t.Helper()
	zone := strings.Join(append([]string{
		"ok.test. 300 IN SOA ns.ok.test. h.ok.test. 1 3600 600 86400 60",
		`ok.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`soft.ok.test. 300 IN TXT "v=spf1 ~all"`,
		`void.ok.test. 300 IN TXT "v=spf1 a:v1.ok.test a:v2.ok.test a:v3.ok.test -all"`,
		`broken.ok.test. 300 IN TXT "v=spf1 include:servfail.test -all"`,
		`_dmarc.ok.test. 300 IN TXT "v=DMARC1; p=reject"`,
	}, extra...), "\n") + "\n"
	path := filepath.Join(t.TempDir(), "compat.zone")
	if err := os.WriteFile(path, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newFakeServer(t, rcodeHandler(dns.RcodeServerFailure))
	return newTestResolver(t, Config{Static: path, Attempts: 1}, newClock(), srv)
}

func TestSPFResults(t *testing.T) {
	r := compatResolver(t)
	tests := []struct {
		ip, sender string
		want       spf.Result
	}{
		{"192.0.2.7", "a@ok.test", spf.Pass},
		{"203.0.113.5", "a@ok.test", spf.Fail},
		{"203.0.113.5", "a@soft.ok.test", spf.SoftFail},
		{"192.0.2.7", "a@nxdomain.ok.test", spf.None},    // NXDOMAIN
		{"192.0.2.7", "a@void.ok.test", spf.PermError},   // 3 void lookups (NXDOMAIN) > 2
		{"192.0.2.7", "a@servfail.test", spf.TempError},  // SERVFAIL
		{"192.0.2.7", "a@broken.ok.test", spf.TempError}, // SERVFAIL inside include
	}
	for _, tc := range tests {
		t.Run(tc.sender+"/"+tc.ip, func(t *testing.T) {
			got, err := spf.CheckHostWithSender(net.ParseIP(tc.ip), "helo.test", tc.sender,
				spf.WithResolver(r), spf.WithContext(context.Background()))
			if got != tc.want {
				t.Fatalf("spf = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestDMARCLookup(t *testing.T) {
	r := compatResolver(t)
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		return r.LookupTXT(context.Background(), name)
	}}
	if rec, err := dmarc.LookupWithOptions("ok.test", opts); err != nil || rec.Policy != dmarc.PolicyReject {
		t.Fatalf("ok.test: %+v, %v", rec, err)
	}
	if _, err := dmarc.LookupWithOptions("nxdomain.ok.test", opts); !errors.Is(err, dmarc.ErrNoPolicy) {
		t.Fatalf("NXDOMAIN: %v, want ErrNoPolicy", err)
	}
	if _, err := dmarc.LookupWithOptions("servfail.test", opts); !dmarc.IsTempFail(err) {
		t.Fatalf("SERVFAIL: %v, want a temporary failure", err)
	}
}

func TestDKIMVerify(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := compatResolver(t, `s1._domainkey.ok.test. 300 IN TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`)
	msg := "From: a@ok.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
	sign := func(domain string) []byte {
		var out bytes.Buffer
		if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "s1", Signer: priv}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return r.LookupTXT(context.Background(), name)
	}}
	tests := []struct {
		domain string
		check  func(error) bool
		want   string
	}{
		{"ok.test", func(err error) bool { return err == nil }, "pass"},
		{"nxdomain.ok.test", dkim.IsPermFail, "permfail (no key)"},
		{"servfail.test", dkim.IsTempFail, "tempfail"},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(sign(tc.domain)), opts)
			if err != nil || len(vs) != 1 {
				t.Fatalf("verify: %v, %d results", err, len(vs))
			}
			if !tc.check(vs[0].Err) {
				t.Fatalf("result error %v, want %s", vs[0].Err, tc.want)
			}
		})
	}
}
