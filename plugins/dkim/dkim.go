// Package dkim verifies DKIM signatures (RFC 6376, RFC 8301, RFC 8463) at
// post-reception and signs outgoing mail at pre-queue, on top of
// github.com/emersion/go-msgauth/dkim. See README.md.
package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/maildomain"
	"github.com/elemta/elemta/registry"
)

// Plugin is the dkim plugin. Its keys are loaded by Start and read-only
// afterwards, so its methods are safe for concurrent use.
type Plugin struct {
	cfg       Config
	resolver  registry.Resolver
	clock     registry.Clock
	log       *slog.Logger
	headerCan dkim.Canonicalization
	bodyCan   dkim.Canonicalization
	trusted   []netip.Prefix

	keys *dkimkey.Cache // parsed key records, by their text

	defaultKey *signingKey            // selector and private_key, or nil
	domainKeys map[string]*signingKey // per signing domain
}

type signingKey struct {
	selector            string
	key                 *dkimkey.Key
	signUnauthenticated bool
}

// New builds the plugin; keys are loaded by Start. It refuses only what
// Config.Validate refuses (which parsing the config has run already): it
// checks again for callers that build a Config in Go.
func New(cfg Config, host registry.Host) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Plugin{cfg: cfg, resolver: host.Resolver, clock: host.Clock, log: host.Logger, keys: dkimkey.NewCache(cfg.KeyCacheSize)}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.clock == nil {
		p.clock = registry.SystemClock{}
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	h, b, _ := parseCanonicalization(cfg.Canonicalization) // Validate refused the others
	p.headerCan, p.bodyCan = dkim.Canonicalization(h), dkim.Canonicalization(b)
	for _, n := range cfg.TrustedNetworks {
		if pfx, err := netip.ParsePrefix(n); err == nil {
			p.trusted = append(p.trusted, pfx.Masked())
		}
	}
	return p, nil
}

// Start loads every signing key, so a missing, malformed or too short key
// stops startup; world-readable key files are logged as warnings.
func (p *Plugin) Start(ctx context.Context) error {
	if !p.cfg.Sign {
		return nil
	}
	var errs []error
	load := func(what, selector, path string, signUnauth bool) *signingKey {
		k, err := dkimkey.LoadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return nil
		}
		for _, w := range k.Warnings {
			p.log.Warn(w, "key", what)
		}
		return &signingKey{selector: selector, key: k, signUnauthenticated: signUnauth}
	}
	if p.cfg.PrivateKey != "" {
		p.defaultKey = load("default signing key (private_key)", p.cfg.Selector, p.cfg.PrivateKey, false)
	}
	p.domainKeys = map[string]*signingKey{}
	for _, name := range sortedKeys(p.cfg.Domains) {
		d := p.cfg.Domains[name]
		if k := load(fmt.Sprintf("domains.%q", name), d.Selector, d.PrivateKey, d.SignUnauthenticated); k != nil {
			p.domainKeys[name] = k
		}
	}
	return errors.Join(errs...)
}

// HealthCheck reports whether the key files can still be loaded.
func (p *Plugin) HealthCheck(ctx context.Context) error {
	if !p.cfg.Sign {
		return nil
	}
	var errs []error
	if p.cfg.PrivateKey != "" {
		if _, err := dkimkey.LoadFile(p.cfg.PrivateKey); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range sortedKeys(p.cfg.Domains) {
		if _, err := dkimkey.LoadFile(p.cfg.Domains[name].PrivateKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// HandleStage verifies at post-reception and signs at pre-queue.
func (p *Plugin) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	switch stage {
	case registry.PostReception:
		if !p.cfg.Verify {
			return &registry.Result{Details: "verification disabled"}, nil
		}
		res, err := p.VerifySignature(ctx, pc.Message)
		if err != nil {
			return nil, err
		}
		return &registry.Result{Data: res, Details: summary(res)}, nil
	case registry.PreQueue:
		if !p.cfg.Sign {
			return &registry.Result{Details: "signing disabled"}, nil
		}
		return p.signStage(ctx, pc.Message)
	}
	return &registry.Result{}, nil
}

// VerifySignature checks every DKIM-Signature field of message, the first
// max_signatures of them cryptographically. It never returns a verdict:
// DMARC and policy plugins decide what a failure means.
func (p *Plugin) VerifySignature(ctx context.Context, message *registry.Message) (*registry.DKIMResult, error) {
	var fields []registry.HeaderField
	for _, f := range message.Header {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			fields = append(fields, f)
		}
	}
	res := &registry.DKIMResult{Signatures: []registry.DKIMSignatureResult{}}
	if len(fields) == 0 {
		return res, nil
	}
	verifs := p.verifyFields(ctx, message, fields)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	res.Signatures = signatureResults(fields, verifs, p.cfg.MaxSignatures)
	return res, nil
}

// signatureResults pairs the DKIM-Signature fields of the message with
// their verifications, in the same order. A pass counts only for the d=
// that was verified: should the two ever read a field differently, the
// signature is a permerror, never a pass reported for a domain it was not
// verified for.
func signatureResults(fields []registry.HeaderField, verifs []verification, maxSignatures int) []registry.DKIMSignatureResult {
	checked := min(len(fields), maxSignatures)
	out := make([]registry.DKIMSignatureResult, 0, len(fields))
	for i, f := range fields {
		t := reportedTags(f.Value)
		sr := registry.DKIMSignatureResult{
			Domain:    strings.ToLower(t.d),
			Selector:  t.s,
			Identity:  t.i,
			Algorithm: strings.ToLower(t.a),
		}
		if sr.Identity == "" && sr.Domain != "" {
			sr.Identity = "@" + sr.Domain
		}
		switch {
		case i >= checked:
			sr.Result = registry.AuthPolicy
			sr.Reason = fmt.Sprintf("not checked: more than max_signatures (%d) signatures", maxSignatures)
		case len(verifs) != checked:
			sr.Result = registry.AuthPermError
			sr.Reason = fmt.Sprintf("internal: %d signature fields, %d verifications", checked, len(verifs))
		default:
			sr.Result, sr.Reason = classify(verifs[i].Err)
			if sr.Result == registry.AuthPass && !strings.EqualFold(verifs[i].Domain, sr.Domain) {
				sr.Result = registry.AuthPermError
				sr.Reason = fmt.Sprintf("internal: verified for d=%s, the field reads d=%s", verifs[i].Domain, sr.Domain)
			}
		}
		out = append(out, sr)
	}
	return out
}

// withSeparator returns m.Raw when its header section ends in a CRLF or
// LF blank line, else a copy with one between header and body.
func withSeparator(m *registry.Message) []byte {
	head, body := m.HeaderBytes(), m.Body()
	switch string(m.Raw[len(head) : len(m.Raw)-len(body)]) {
	case "\r\n", "\n":
		return m.Raw
	}
	out := make([]byte, 0, len(head)+len(body)+4)
	out = append(out, head...)
	switch {
	case bytes.HasSuffix(out, []byte("\r")): // a lone CR ends the last line: complete it, as canon.Header does
		out = append(out, '\n')
	case !bytes.HasSuffix(out, []byte("\n")):
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, body...)
}

// classify maps a verification error to an RFC 8601 result.
func classify(err error) (registry.AuthResult, string) {
	switch err.(type) {
	case nil:
		return registry.AuthPass, ""
	case tempFail:
		return registry.AuthTempError, err.Error()
	case permFail:
		return registry.AuthPermError, err.Error()
	}
	return registry.AuthFail, err.Error()
}

// lookupTXT looks key records up under ctx (none starts once ctx is done).
// registry.Resolver promises to return when its context is done, so a slow
// DNS server cannot hold verification past the plugin's deadline. Errors
// are *net.DNSError, whose Temporary tells temperror from permerror.
func (p *Plugin) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if err := ctx.Err(); err != nil {
			return nil, dnsError(name, err)
		}
		txt, err := p.resolver.LookupTXT(ctx, name)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			return nil, dnsError(name, err)
		}
		return txt, nil
	}
}

// dnsError returns err as a *net.DNSError, which tells a temporary failure
// (temperror) from a missing key (permerror).
// Errors that are not a DNS answer count as temporary.
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	return &net.DNSError{Err: "lookup " + name + ": " + err.Error(), Name: name, IsTimeout: timeout, IsTemporary: true}
}

// signStage signs message when its sender is authorized and a key applies.
func (p *Plugin) signStage(ctx context.Context, message *registry.Message) (*registry.Result, error) {
	from, err := fromDomain(message)
	if err != nil {
		return &registry.Result{Details: "not signed: " + err.Error()}, nil
	}
	env := message.Envelope
	authorized := env.AuthUser != "" || p.trustedClient(env.ClientIP)
	domain, sk := p.keyFor(from)
	switch {
	case sk != nil && sk != p.defaultKey && (authorized || sk.signUnauthenticated):
	case sk == p.defaultKey && sk != nil && authorized:
		if p.cfg.Domain != "" {
			domain = p.cfg.Domain
		}
	case sk == nil:
		return &registry.Result{Details: fmt.Sprintf("not signed: no key for %s", from)}, nil
	default:
		return &registry.Result{Details: "not signed: sender neither authenticated nor in trusted_networks"}, nil
	}
	field, err := p.sign(ctx, message, domain, sk)
	if err != nil {
		return nil, err
	}
	return &registry.Result{
		AddHeaders: []registry.Field{field},
		Details:    fmt.Sprintf("signed d=%s s=%s a=%s", domain, sk.selector, sk.key.Algorithm),
	}, nil
}

// SignMessage signs message for domain with that domain's key (or the
// default key) and records the DKIM-Signature with message.AddHeader.
func (p *Plugin) SignMessage(ctx context.Context, message *registry.Message, domain string) error {
	domain, err := maildomain.Canonical(domain)
	if err != nil {
		return fmt.Errorf("sign for %s: not a valid internationalized domain name: %w", domain, err)
	}
	d, sk := p.keyFor(domain)
	if sk == nil {
		return fmt.Errorf("sign for %s: no signing key configured (or Start not called)", domain)
	}
	if sk == p.defaultKey {
		d = domain
	}
	field, err := p.sign(ctx, message, d, sk)
	if err != nil {
		return err
	}
	message.AddHeader(field.Name, field.Value)
	return nil
}

// keyFor returns the signing domain and key for mail from domain: the
// [domains] entry of domain or of its closest parent, else the default key.
func (p *Plugin) keyFor(domain string) (string, *signingKey) {
	for d := domain; d != ""; {
		if k, ok := p.domainKeys[d]; ok {
			return d, k
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok || !strings.Contains(rest, ".") {
			break // never sign with a key for a bare TLD
		}
		d = rest
	}
	return domain, p.defaultKey
}

func (p *Plugin) trustedClient(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	return slices.ContainsFunc(p.trusted, func(pfx netip.Prefix) bool { return pfx.Contains(ip) })
}

// sign computes the DKIM-Signature field for message.
func (p *Plugin) sign(ctx context.Context, message *registry.Message, domain string, sk *signingKey) (registry.Field, error) {
	if err := ctx.Err(); err != nil {
		return registry.Field{}, fmt.Errorf("sign for %s: %w", domain, err)
	}
	opts := &dkim.SignOptions{
		Domain:                 domain,
		Selector:               sk.selector,
		Signer:                 sk.key.Signer,
		HeaderCanonicalization: p.headerCan,
		BodyCanonicalization:   p.bodyCan,
		HeaderKeys:             p.headerKeys(message.Header),
	}
	if p.cfg.Expiration > 0 {
		opts.Expiration = p.clock.Now().Add(p.cfg.Expiration.D())
	}
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return registry.Field{}, fmt.Errorf("sign for %s: %w", domain, err)
	}
	// go-msgauth fails to read a header section that does not end in a
	// CRLF or LF blank line (all header and no body, RFC 5322 §3.5, or a
	// lone CR).
	raw := withSeparator(message)
	if _, err := s.Write(raw); err != nil {
		s.Close()
		return registry.Field{}, fmt.Errorf("sign for %s: %w", domain, err)
	}
	if err := s.Close(); err != nil {
		return registry.Field{}, fmt.Errorf("sign for %s: %w", domain, err)
	}
	name, value, _ := strings.Cut(s.Signature(), ":")
	value = strings.TrimSuffix(strings.TrimLeft(value, " "), "\r\n")
	if !bytes.HasSuffix(firstLine(message.Raw), []byte("\r\n")) {
		value = strings.ReplaceAll(value, "\r\n", "\n") // Rewrite uses the message's own line ends
	}
	return registry.Field{Name: name, Value: value}, nil
}

// headerKeys lists the h= tag: each configured field as often as it is
// present, oversigned fields once more.
func (p *Plugin) headerKeys(h registry.Header) []string {
	count := map[string]int{}
	for _, f := range h {
		count[strings.ToLower(f.Name)]++
	}
	var keys []string
	seen := map[string]bool{}
	for _, name := range append(slices.Clone(p.cfg.Headers), p.cfg.OversignHeaders...) {
		name = strings.ToLower(name)
		if seen[name] {
			continue
		}
		seen[name] = true
		n := count[name]
		if slices.ContainsFunc(p.cfg.OversignHeaders, func(o string) bool { return strings.EqualFold(o, name) }) {
			n++
		}
		for range n {
			keys = append(keys, name)
		}
	}
	return keys
}

// fromDomain returns the domain of the message's single From address.
func fromDomain(m *registry.Message) (string, error) {
	froms := m.Header.Values("From")
	if len(froms) != 1 {
		return "", fmt.Errorf("%d From fields, want 1", len(froms))
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) != 1 {
		return "", fmt.Errorf("From %q is not a single address", froms[0])
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("From %q has no domain", froms[0])
	}
	// An internationalized domain signs as its A-label (RFC 8616 §4: d=
	// is never UTF-8), so a [domains] entry names it that way.
	d, err := maildomain.Canonical(addrs[0].Address[at+1:])
	if err != nil {
		return "", fmt.Errorf("From domain %q is not a valid internationalized domain name: %w", d, err)
	}
	return d, nil
}

// parseTags parses a DKIM tag list (RFC 6376 §3.2), removing white space
// from values. Malformed entries are skipped: go-msgauth reports them.
func parseTags(s string) map[string]string {
	tags := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; !dup {
			tags[k] = strings.Join(strings.Fields(v), "")
		}
	}
	return tags
}

// sigReport holds the tags of a signature field that its result reports.
type sigReport struct{ d, s, i, a string }

// reportedTags reads d=, s=, i= and a= as parseTags does (the first of
// each, white space removed) without building the map of every tag or
// reducing the b= and bh= values, which it skips.
func reportedTags(s string) sigReport {
	var r sigReport
	var seen [4]bool
	for len(s) > 0 {
		var part string
		part, s, _ = strings.Cut(s, ";")
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		var dst *string
		switch k = strings.TrimSpace(k); k {
		case "d":
			dst = &r.d
		case "s":
			dst = &r.s
		case "i":
			dst = &r.i
		case "a":
			dst = &r.a
		default:
			continue
		}
		if n := strings.IndexByte("dsia", k[0]); !seen[n] {
			seen[n] = true
			*dst = strings.Join(strings.Fields(v), "")
		}
	}
	return r
}

func summary(r *registry.DKIMResult) string {
	if len(r.Signatures) == 0 {
		return "dkim=none (no signatures)"
	}
	var b strings.Builder
	for i, s := range r.Signatures {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("dkim=" + string(s.Result) + " d=" + s.Domain + " s=" + s.Selector)
		if s.Reason != "" {
			b.WriteString(" (" + s.Reason + ")")
		}
	}
	return b.String()
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1]
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
