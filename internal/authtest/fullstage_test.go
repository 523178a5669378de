package authtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/pkg/testenv/dnstest"
	_ "github.com/elemta/elemta/plugins/dkim"
	"github.com/elemta/elemta/registry"
)

const fullStage = `[plugins]
plugins = ["spf", "dkim", "dmarc", "authres"]
[plugins.dmarc]
enforce = true
`

// signedMessage returns a message of about size bytes from example.test,
// DKIM-signed (rsa-sha256, relaxed/relaxed) with the test zone's rsa2048 key.
func signedMessage(tb testing.TB, size int) *registry.Message {
	tb.Helper()
	key, err := dkimkey.LoadFile(filepath.Join(testenv.Require(tb, testenv.Keys), "rsa2048.pem"))
	require.NoError(tb, err)
	line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
	body := strings.Repeat(line, size/len(line)+1)[:size-size%len(line)]
	raw := "From: Alice <alice@example.test>\r\nTo: <b@elemta.test>\r\nSubject: benchmark\r\nMessage-ID: <bench@example.test>\r\n\r\n" + body
	var signed bytes.Buffer
	err = dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{
		Domain: "example.test", Selector: "rsa2048", Signer: key.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	require.NoError(tb, err)
	msg, err := registry.ParseMessage(signed.Bytes(), registry.Envelope{
		ClientIP: netip.MustParseAddr("127.0.0.1"), HELO: "mail.example.test", MailFrom: "bounce@example.test", RcptTo: []string{"b@elemta.test"},
	})
	require.NoError(tb, err)
	return msg
}

// TestFullAuthStage checks what the benchmark below measures: SPF, DKIM
// and DMARC all pass on the signed message, against the real test DNS.
func TestFullAuthStage(t *testing.T) {
	m := manager(t, fullStage, dnstest.Resolver(t))
	pc, post, out := receive(t, m, signedMessage(t, 10<<10))
	d, ok := registry.Find[*registry.DKIMResult](pc)
	require.True(t, ok)
	require.Len(t, d.Signatures, 1)
	require.Equal(t, registry.AuthPass, d.Signatures[0].Result, d.Signatures[0].Reason)
	dm, _ := registry.Find[*registry.DMARCResult](pc)
	require.Equal(t, registry.AuthPass, dm.Result)
	require.True(t, dm.DKIMAligned && dm.SPFAligned)
	require.Equal(t, registry.Accept, post.Verdict.Action)
	hdr, _, _ := strings.Cut(string(out), "\r\n\r\n")
	hdr = headerfold.Unfold(hdr) // the fields we add are folded
	require.Contains(t, hdr, "Authentication-Results: mx.elemta.test; spf=pass smtp.mailfrom=bounce@example.test; "+
		"dkim=pass header.a=rsa-sha256 header.d=example.test header.i=@example.test header.s=rsa2048; dmarc=pass header.from=example.test")
}

// BenchmarkFullAuthStage is issue 4's benchmark: the whole authentication
// work of one transaction (spf at MAIL FROM; dkim verify of an RSA-2048
// signature, dmarc and authres after DATA) through the executor, with
// Elemta's own resolver (internal/resolver) and its cache warm, on 10 KB and
// 1 MB messages. BenchmarkVerifyRSA2048 in plugins/dkim holds dkim alone
// against go-msgauth's dkim.Verify.
//
// In the same run, `…/floor` is what any verifier must do: one RSA-2048
// verification and one SHA-256 pass over the message; `…/go-msgauth` is
// go-msgauth's dkim.Verify alone on the same message, its key from the same
// resolver. `…/ratios` runs the three in one loop, rotating which goes
// first, and reports stage/floor and stage/go-msgauth.
func BenchmarkFullAuthStage(b *testing.B) {
	resolver := dnstest.Resolver(b)
	m := manager(b, fullStage, resolver)
	key, err := dkimkey.LoadFile(filepath.Join(testenv.Require(b, testenv.Keys), "rsa2048.pem"))
	require.NoError(b, err)
	pub := key.Signer.Public().(*rsa.PublicKey)
	digest := sha256.Sum256([]byte("floor"))
	sig, err := key.Sign(digest[:])
	require.NoError(b, err)
	for _, size := range []struct {
		name  string
		bytes int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		msg := signedMessage(b, size.bytes)
		stage := func() {
			pc := registry.NewProcessingContext(msg, nil)
			pc.Phase = registry.PhaseMail
			if _, err := m.ExecuteStage(context.Background(), registry.PreReception, pc); err != nil {
				b.Fatal(err)
			}
			pc.Phase = registry.PhaseMessage
			if _, err := m.ExecuteStage(context.Background(), registry.PostReception, pc); err != nil {
				b.Fatal(err)
			}
			if d, _ := registry.Find[*registry.DMARCResult](pc); d == nil || d.Result != registry.AuthPass || !d.DKIMAligned {
				b.Fatalf("unexpected outcome: %+v", d)
			}
		}
		floor := func() {
			sha256.Sum256(msg.Raw)
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
				b.Fatal(err)
			}
		}
		opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) { return resolver.LookupTXT(context.Background(), name) }}
		msgauth := func() {
			v, err := dkim.VerifyWithOptions(bytes.NewReader(msg.Raw), opts)
			if err != nil || v[0].Err != nil {
				b.Fatal(err, v)
			}
		}
		receive(b, m, msg) // warm the DNS cache
		for _, c := range []struct {
			name string
			fn   func()
		}{{"/stage", stage}, {"/floor", floor}, {"/go-msgauth", msgauth}} {
			b.Run(size.name+c.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(msg.Raw)))
				for b.Loop() {
					c.fn()
				}
			})
		}
		fns := []func(){stage, floor, msgauth}
		b.Run(size.name+"/ratios", func(b *testing.B) { ratios(b, fns, func(f func()) { f() }) })
		// The same in blocks of 32 calls of each: every function runs with
		// its own code and data in the caches, as in its own benchmark
		// (above, one call of each in turn leaves the caches to whichever
		// ran last), and the blocks still alternate, so drift cancels.
		b.Run(size.name+"/block-ratios", func(b *testing.B) {
			ratios(b, fns, func(f func()) {
				for range 32 {
					f()
				}
			})
		})
		// 4 callers per processor, 4 calls each: the cores are busy, as
		// under concurrent sessions, so no hand-off wakes an idle one.
		b.Run(size.name+"/parallel-ratios", func(b *testing.B) {
			callers := 4 * runtime.GOMAXPROCS(0)
			ratios(b, fns, func(f func()) {
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range 4 {
							f()
						}
					})
				}
				wg.Wait()
			})
		})
	}
}

// ratios times stage, floor and go-msgauth (fns, in that order) in one
// loop, each round running each through run, starting one later every
// round so that none always follows the same one, and reports the stage
// over the other two.
func ratios(b *testing.B, fns []func(), run func(func())) {
	var took [3]time.Duration
	for i := 0; b.Loop(); i++ {
		for k := range fns {
			j := (i + k) % len(fns)
			start := time.Now()
			run(fns[j])
			took[j] += time.Since(start)
		}
	}
	b.ReportMetric(float64(took[0])/float64(took[1]), "stage/floor")
	b.ReportMetric(float64(took[0])/float64(took[2]), "stage/go-msgauth")
}
