package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elemta/elemta/registry"
)

const testMsg = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <lunch-1@example.com>\r\n" +
	"\r\n" +
	"Shall we  meet at noon?\r\n" +
	"\r\n"

// testKeys returns a resolver publishing dkimpy's RSA test key as
// rsa._domainkey.example.com and its ed25519 key as ed._domainkey.example.com,
// and a config signing example.com with the key named by algo.
func testKeys(t testing.TB, algo, canon string) (Config, *fakeResolver) {
	dir := filepath.Join("testdata", "dkimpy")
	res := &fakeResolver{txt: map[string]string{
		"rsa._domainkey.example.com": record(t, "test.txt"),
		"ed._domainkey.example.com":  record(t, "ed25519test.dns"),
	}}
	cfg := DefaultConfig()
	cfg.Canonicalization = canon
	switch algo {
	case "rsa-sha256":
		cfg.Domains = map[string]DomainConfig{"example.com": {Selector: "rsa", PrivateKey: privateCopy(t, filepath.Join(dir, "test.private"))}}
	case "ed25519-sha256":
		cfg.Domains = map[string]DomainConfig{"example.com": {Selector: "ed", PrivateKey: privateCopy(t, filepath.Join(dir, "ed25519test.key"))}}
	default:
		t.Fatalf("unknown algorithm %s", algo)
	}
	return cfg, res
}

func TestSignVerifyTamper(t *testing.T) {
	tampers := []struct {
		name string
		edit func(string) string
		want registry.AuthResult
	}{
		{"untouched", func(s string) string { return s }, registry.AuthPass},
		{"LF line ends", func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }, registry.AuthPass},
		{"body changed", func(s string) string { return strings.Replace(s, "noon", "one", 1) }, registry.AuthFail},
		{"body line added", func(s string) string { return s + "P.S. bring cash\r\n" }, registry.AuthFail},
		{"signed header changed", func(s string) string { return strings.Replace(s, "Subject: Lunch", "Subject: Dinner", 1) }, registry.AuthFail},
		{"second From added (oversigned)", func(s string) string {
			return strings.Replace(s, "To: Bob", "From: Mallory <m@evil.example>\r\nTo: Bob", 1)
		}, registry.AuthFail},
		{"unsigned header added", func(s string) string { return strings.Replace(s, "To: Bob", "X-Extra: yes\r\nTo: Bob", 1) }, registry.AuthPass},
	}
	for _, algo := range []string{"rsa-sha256", "ed25519-sha256"} {
		for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
			cfg, res := testKeys(t, algo, canon)
			p := newPlugin(t, cfg, res, nil)
			out := string(signed(t, p, []byte(testMsg), "example.com"))
			if !strings.Contains(out, "a="+algo+";") || !strings.Contains(out, "c="+canon+";") {
				t.Fatalf("%s %s: signature lacks a=/c=: %s", algo, canon, out)
			}
			for _, tc := range tampers {
				t.Run(algo+"/"+canon+"/"+tc.name, func(t *testing.T) {
					got, err := p.VerifySignature(context.Background(), parse(t, []byte(tc.edit(out)), registry.Envelope{}))
					if err != nil {
						t.Fatal(err)
					}
					if len(got.Signatures) != 1 || got.Signatures[0].Result != tc.want {
						t.Fatalf("got %+v, want one %s", got.Signatures, tc.want)
					}
					s := got.Signatures[0]
					if s.Domain != "example.com" || s.Algorithm != algo || s.Identity != "@example.com" {
						t.Errorf("signature fields %+v", s)
					}
				})
			}
		}
	}
}

// TestMaxSignatures checks the cap at its boundary: max_signatures
// signatures are all checked, one more is reported as not checked.
func TestMaxSignatures(t *testing.T) {
	cfg, res := testKeys(t, "ed25519-sha256", "relaxed/relaxed")
	signer := newPlugin(t, cfg, res, nil)
	const limit = 3
	raw := []byte(testMsg)
	for range limit + 1 {
		raw = signed(t, signer, raw, "example.com")
	}
	for _, tc := range []struct {
		name  string
		sigs  int
		want  []registry.AuthResult
		looks int
	}{
		{"at the cap", limit, slices.Repeat([]registry.AuthResult{registry.AuthPass}, limit), limit},
		{"one over the cap", limit + 1, append(slices.Repeat([]registry.AuthResult{registry.AuthPass}, limit), registry.AuthPolicy), limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// drop the oldest signatures down to tc.sigs
			m := parse(t, raw, registry.Envelope{})
			msg := m.Rewrite(nil, []registry.Removal{{Name: "DKIM-Signature", Index: tc.sigs}})
			for range limit + 1 - tc.sigs - 1 {
				m = parse(t, msg, registry.Envelope{})
				msg = m.Rewrite(nil, []registry.Removal{{Name: "DKIM-Signature", Index: tc.sigs}})
			}
			vcfg := DefaultConfig()
			vcfg.MaxSignatures = limit
			r := &fakeResolver{txt: res.txt}
			v := newPlugin(t, vcfg, r, nil)
			got, err := v.VerifySignature(context.Background(), parse(t, msg, registry.Envelope{}))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(results(got), tc.want) || len(r.seen) != tc.looks {
				t.Fatalf("results %v after %d lookups, want %v after %d", results(got), len(r.seen), tc.want, tc.looks)
			}
			if tc.sigs > limit && !strings.Contains(got.Signatures[limit].Reason, "max_signatures (3)") {
				t.Errorf("reason %q", got.Signatures[limit].Reason)
			}
		})
	}
}

// blockingResolver answers only when its context is done (or, as a
// failsafe for a broken plugin, after ten seconds).
type blockingResolver struct {
	fakeResolver
	entered chan struct{}
}

func (r *blockingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.entered <- struct{}{}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, errors.New("lookup was not given the plugin's context")
	}
}

// TestLookupHonoursContext proves that the lookup runs under the caller's
// context although go-msgauth's hook has none: cancelling the context while
// the lookup is in flight ends verification with the context's error.
func TestLookupHonoursContext(t *testing.T) {
	cfg, res := testKeys(t, "rsa-sha256", "relaxed/relaxed")
	raw := signed(t, newPlugin(t, cfg, res, nil), []byte(testMsg), "example.com")
	br := &blockingResolver{entered: make(chan struct{}, 1)}
	p := newPlugin(t, DefaultConfig(), br, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-br.entered // the lookup is in flight
		cancel()
	}()
	_, err := p.VerifySignature(ctx, parse(t, raw, registry.Envelope{}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// A context already done starts no lookup at all.
	if _, err := p.VerifySignature(ctx, parse(t, raw, registry.Envelope{})); !errors.Is(err, context.Canceled) || len(br.entered) != 0 {
		t.Fatalf("err = %v, lookups started %d", err, len(br.entered))
	}
}

func TestDNSErrors(t *testing.T) {
	cfg, res := testKeys(t, "rsa-sha256", "relaxed/relaxed")
	raw := signed(t, newPlugin(t, cfg, res, nil), []byte(testMsg), "example.com")
	for _, tc := range []struct {
		name string
		err  error
		want registry.AuthResult
	}{
		{"servfail", &net.DNSError{Err: "server misbehaving", IsTemporary: true}, registry.AuthTempError},
		{"timeout", &net.DNSError{Err: "i/o timeout", IsTimeout: true}, registry.AuthTempError},
		{"wrapped dns error", fmt.Errorf("resolver: %w", &net.DNSError{Err: "server misbehaving", IsTemporary: true}), registry.AuthTempError},
		{"unknown resolver error", errors.New("cache broken"), registry.AuthTempError},
		{"nxdomain", &net.DNSError{Err: "no such host", IsNotFound: true}, registry.AuthPermError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeResolver{errs: map[string]error{"rsa._domainkey.example.com": tc.err}}
			got, err := newPlugin(t, DefaultConfig(), r, nil).VerifySignature(context.Background(), parse(t, raw, registry.Envelope{}))
			if err != nil {
				t.Fatal(err)
			}
			if got.Signatures[0].Result != tc.want {
				t.Fatalf("got %+v, want %s", got.Signatures[0], tc.want)
			}
		})
	}
}

func TestSignStage(t *testing.T) {
	dir := filepath.Join("testdata", "dkimpy")
	rsaKey := privateCopy(t, filepath.Join(dir, "test.private"))
	edKey := privateCopy(t, filepath.Join(dir, "ed25519test.key"))
	base := func() Config {
		c := DefaultConfig()
		c.Selector, c.PrivateKey = "default", rsaKey
		c.TrustedNetworks = []string{"192.0.2.0/24"}
		c.Domains = map[string]DomainConfig{
			"example.com": {Selector: "ed", PrivateKey: edKey},
			"example.org": {Selector: "org", PrivateKey: rsaKey, SignUnauthenticated: true},
		}
		return c
	}
	msgFrom := func(from string) string { return strings.Replace(testMsg, "alice@example.com", from, 1) }
	auth := registry.Envelope{AuthUser: "alice"}
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		msg    string
		env    registry.Envelope
		want   string // "<d=> <s=>" of the signature, "" for none
		detail string
	}{
		{"authenticated, domain key", nil, testMsg, auth, "example.com ed", "signed d=example.com s=ed a=ed25519-sha256"},
		{"authenticated, subdomain uses parent key", nil, msgFrom("a@news.example.com"), auth, "example.com ed", ""},
		{"authenticated, other domain gets default key", nil, msgFrom("a@other.test"), auth, "other.test default", "a=rsa-sha256"},
		{"authenticated, default key with fixed domain", func(c *Config) { c.Domain = "relay.example.net" }, msgFrom("a@other.test"), auth, "relay.example.net default", ""},
		{"unauthenticated", nil, testMsg, registry.Envelope{ClientIP: netip.MustParseAddr("198.51.100.1")}, "", "neither authenticated nor in trusted_networks"},
		{"trusted network", nil, testMsg, registry.Envelope{ClientIP: netip.MustParseAddr("192.0.2.9")}, "example.com ed", ""},
		{"trusted network, v4-mapped", nil, testMsg, registry.Envelope{ClientIP: netip.MustParseAddr("::ffff:192.0.2.9")}, "example.com ed", ""},
		{"unauthenticated, sign_unauthenticated domain", nil, msgFrom("a@example.org"), registry.Envelope{}, "example.org org", ""},
		{"unauthenticated, default key only", nil, msgFrom("a@other.test"), registry.Envelope{}, "", "neither authenticated"},
		{"no key at all", func(c *Config) { c.Selector, c.PrivateKey = "", "" }, msgFrom("a@other.test"), auth, "", "no key for other.test"},
		{"no From", nil, strings.Replace(testMsg, "From: Alice <alice@example.com>\r\n", "", 1), auth, "", "0 From fields"},
		{"two From addresses", nil, msgFrom("a@example.com, b@example.com"), auth, "", "not a single address"},
		{"signing disabled", func(c *Config) { c.Sign = false }, testMsg, auth, "", "signing disabled"},
		// d= is never UTF-8 (RFC 8616 §4): an internationalized From
		// domain signs as its A-label, with the key of that name.
		{"UTF-8 From domain, its A-label's key", func(c *Config) {
			c.Domains["xn--bcher-kva.example"] = DomainConfig{Selector: "idn", PrivateKey: edKey}
		}, msgFrom("a@Bücher.example"), auth, "xn--bcher-kva.example idn", ""},
		{"UTF-8 From domain, default key", nil, msgFrom("a@bücher.example"), auth, "xn--bcher-kva.example default", ""},
		{"From domain no IDN", nil, msgFrom("a@b\u200dc.example"), auth, "", "not a valid internationalized domain name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			p := newPlugin(t, cfg, &fakeResolver{}, nil)
			pc := registry.NewProcessingContext(parse(t, []byte(tc.msg), tc.env), nil)
			r, err := p.HandleStage(context.Background(), registry.PreQueue, pc)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.Details, tc.detail) {
				t.Errorf("details %q, want %q", r.Details, tc.detail)
			}
			if tc.want == "" {
				if len(r.AddHeaders) != 0 {
					t.Fatalf("signed: %+v", r.AddHeaders)
				}
				return
			}
			if len(r.AddHeaders) != 1 || r.AddHeaders[0].Name != "DKIM-Signature" {
				t.Fatalf("AddHeaders = %+v", r.AddHeaders)
			}
			if tags := parseTags(r.AddHeaders[0].Value); tags["d"]+" "+tags["s"] != tc.want {
				t.Fatalf("signature %q, want d= s= %q", r.AddHeaders[0].Value, tc.want)
			}
		})
	}
}

func TestHeaderKeys(t *testing.T) {
	for _, tc := range []struct {
		name     string
		headers  []string
		oversign []string
		msg      string
		want     string
	}{
		{"defaults", DefaultHeaders, []string{"from"}, testMsg, "from:from:subject:date:to:message-id"},
		{"present twice", []string{"from", "to"}, nil, strings.Replace(testMsg, "To: Bob", "To: Carol <c@example.org>\r\nTo: Bob", 1), "from:to:to"},
		{"oversign absent field", []string{"from"}, []string{"from", "reply-to"}, testMsg, "from:from:reply-to"},
		{"case folded and deduplicated", []string{"From", "SUBJECT", "subject"}, []string{"FROM"}, testMsg, "from:from:subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plugin{cfg: Config{Headers: tc.headers, OversignHeaders: tc.oversign}}
			if got := strings.Join(p.headerKeys(parse(t, []byte(tc.msg), registry.Envelope{}).Header), ":"); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"max_signatures 1", func(c *Config) { c.MaxSignatures = 1 }, ""},
		{"max_signatures 0", func(c *Config) { c.MaxSignatures = 0 }, "max_signatures = 0"},
		{"max_signatures 100", func(c *Config) { c.MaxSignatures = 100 }, ""},
		{"max_signatures 101", func(c *Config) { c.MaxSignatures = 101 }, "between 1 and 100"},
		{"canonicalization relaxed", func(c *Config) { c.Canonicalization = "relaxed" }, ""},
		{"canonicalization bogus", func(c *Config) { c.Canonicalization = "loose/simple" }, "canonicalization"},
		{"headers without from", func(c *Config) { c.Headers = []string{"to"} }, "must include \"from\""},
		{"bad header name", func(c *Config) { c.OversignHeaders = []string{"x y"} }, "not a header field name"},
		{"selector without key", func(c *Config) { c.Selector = "s" }, "go together"},
		{"domain without default key", func(c *Config) { c.Domain = "example.com" }, "no default key"},
		{"domain entry without key", func(c *Config) { c.Domains = map[string]DomainConfig{"example.com": {Selector: "s"}} }, "selector and private_key are required"},
		{"uppercase domain", func(c *Config) { c.Domains = map[string]DomainConfig{"Example.com": {Selector: "s", PrivateKey: "k"}} }, "lowercase"},
		{"bad network", func(c *Config) { c.TrustedNetworks = []string{"10.0.0.1"} }, "trusted_networks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestStartKeyProblems(t *testing.T) {
	dir := filepath.Join("testdata", "dkimpy")
	worldReadable := privateCopy(t, filepath.Join(dir, "test.private"))
	if err := chmod(worldReadable, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     string
		wantErr string
		wantLog string
	}{
		{"good key", privateCopy(t, filepath.Join(dir, "test.private")), "", ""},
		{"missing", filepath.Join(t.TempDir(), "nope.key"), "default signing key (private_key): dkimkey: load", ""},
		{"malformed", privateCopy(t, filepath.Join(dir, "test.txt")), "malformed key", ""},
		{"world-readable", worldReadable, "", "world-readable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Selector, cfg.PrivateKey = "s", tc.key
			var logs bytes.Buffer
			p, err := New(cfg, registry.Host{Logger: newLogger(&logs), Resolver: &fakeResolver{}})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Start(context.Background())
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Start() = %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(logs.String(), tc.wantLog) || (tc.wantLog == "" && logs.Len() > 0) {
				t.Fatalf("logs %q, want %q", logs.String(), tc.wantLog)
			}
			if hc := p.HealthCheck(context.Background()); (hc == nil) != (tc.wantErr == "") {
				t.Fatalf("HealthCheck() = %v", hc)
			}
		})
	}
}

// TestLineEnds signs messages stored with CRLF and with bare LF line ends;
// each verifies as written out and after conversion to the other form (as
// the SMTP client will send CRLF).
func TestLineEnds(t *testing.T) {
	lf := strings.ReplaceAll(testMsg, "\r\n", "\n")
	for _, algo := range []string{"rsa-sha256", "ed25519-sha256"} {
		for _, canon := range []string{"simple/simple", "relaxed/relaxed"} {
			cfg, res := testKeys(t, algo, canon)
			p := newPlugin(t, cfg, res, nil)
			for name, msg := range map[string]string{"crlf": testMsg, "lf": lf} {
				out := signed(t, p, []byte(msg), "example.com")
				if name == "lf" && bytes.Contains(out, []byte("\r")) {
					t.Fatalf("%s/%s: CR in the signed LF message", algo, canon)
				}
				for _, form := range [][]byte{out, toCRLF(out)} {
					got, err := p.VerifySignature(context.Background(), parse(t, form, registry.Envelope{}))
					if err != nil || got.Signatures[0].Result != registry.AuthPass {
						t.Fatalf("%s/%s/%s: %+v %v", algo, canon, name, got, err)
					}
				}
			}
		}
	}
}

// reportedTags is parseTags for the four tags a result reports.
func TestReportedTagsMatchParseTags(t *testing.T) {
	for _, v := range []string{
		"v=1; a=rsa-sha256; d=Example.test; s=sel; i=@example.test; bh=abc; b=de f",
		"d = example.test ; s= se l ;a=rsa-sha256; d=second.test; s=second",
		"d=example.test; x; s=; a",
		"",
		"b=only; bh=these",
	} {
		tags := parseTags(v)
		got := reportedTags(v)
		want := sigReport{d: tags["d"], s: tags["s"], i: tags["i"], a: tags["a"]}
		if got != want {
			t.Errorf("reportedTags(%q) = %+v, want %+v", v, got, want)
		}
	}
}
