// Package spf checks the SPF policy (RFC 7208) of the MAIL FROM and HELO
// identities of an SMTP session, records a Received-SPF header and, when
// configured, turns a result into a verdict. It registers itself as the
// "spf" plugin of the registry.
package spf

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"unicode/utf8"

	blitiri "blitiri.com.ar/go/spf"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/maildomain"
	"github.com/elemta/elemta/pkg/textcache"
	"github.com/elemta/elemta/registry"
)

// Checker is the loaded spf plugin.
type Checker struct {
	cfg      Config
	instance string // Host.Instance: whose result to reuse at PhaseMessage
	resolver registry.Resolver
	hostname string
	log      *slog.Logger
	// records remembers validateRecord's answer by record text.
	records *textcache.Cache[struct{}]
	// options are the library's options but the context, made once.
	options []blitiri.Option
}

// New builds the plugin from its config. It does no I/O and refuses only
// what Config.Validate refuses (which parsing the config has run already):
// it checks again for callers that build a Config in Go.
func New(cfg Config, host registry.Host) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, instance: cmp.Or(host.Instance, "spf"), resolver: host.Resolver, hostname: host.Hostname, log: host.Logger,
		records: textcache.New(cfg.RecordCacheSize, maxCachedRecord, func(rec string) (struct{}, error) { return struct{}{}, validateRecord(rec) })}
	c.options = []blitiri.Option{
		blitiri.WithResolver(dnsAdapter{c.resolver, c.records}),
		blitiri.OverrideLookupLimit(uint(cfg.LookupLimit)),
		blitiri.OverrideVoidLookupLimit(uint(cfg.VoidLookupLimit)),
	}
	return c, nil
}

// CheckSPF implements registry.SPFPlugin: it checks whether ip may send
// mail for domain. domain may also be a sender address (local@domain); a
// bare domain is checked as the HELO identity, with the sender
// postmaster@domain (RFC 7208 §2.3).
func (c *Checker) CheckSPF(ctx context.Context, ip string, domain string) (*registry.SPFResult, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("check %s: client address: %w", domain, err)
	}
	if strings.Contains(domain, "@") {
		_, d := splitAddress(domain)
		return c.check(ctx, addr, domain, d, domain, "mailfrom"), nil
	}
	return c.check(ctx, addr, domain, domain, "postmaster@"+domain, "helo"), nil
}

// HandleStage implements registry.StageHandler for pre-reception. The check
// runs once per transaction: at PhaseMail in an SMTP session, or at
// PhaseMessage for offline scans. At PhaseMessage a result this instance
// recorded in the context at PhaseMail is reused, not checked (nor
// annotated) again.
// Other phases do nothing.
func (c *Checker) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	switch pc.Phase {
	case registry.PhaseMail:
	case registry.PhaseMessage:
		if prev, ok := registry.FindFrom[*registry.SPFResult](pc, c.instance); ok { // this instance's, not the first one's
			return &registry.Result{Data: prev, Details: "spf: " + string(prev.Result) + " (checked at MAIL FROM)"}, nil
		}
	default:
		return &registry.Result{Details: "spf: nothing to check before MAIL FROM / after it"}, nil
	}
	env := pc.Message.Envelope
	if !env.ClientIP.IsValid() {
		return nil, errors.New("no client IP address in the envelope")
	}
	res := c.Evaluate(ctx, env.ClientIP, env.HELO, env.MailFrom)
	out := &registry.Result{
		Data:    res,
		Details: "spf: " + res.Identity + "=" + string(res.Result) + " for " + res.Domain + " from " + res.IP,
		AddHeaders: []registry.Field{{Name: "Received-SPF",
			Value: headerfold.Value("Received-SPF", c.receivedSPF(res, env.HELO, env.MailFrom), headerfold.EOL(pc.Message.Raw))}},
	}
	if res.HELO != nil {
		out.Details += "; helo=" + string(res.HELO.Result)
	}
	out.Verdict = c.verdict(res)
	return out, nil
}

// Evaluate checks the identities of one SMTP transaction: the MAIL FROM
// identity (for the null sender, postmaster@HELO, RFC 7208 §2.4) and, when
// check_helo is set and HELO names a domain, the HELO identity (§2.3). The
// returned result is the MAIL FROM one, with the HELO result in its HELO
// field; for the null sender the MAIL FROM check is the HELO check and
// Identity is "helo".
func (c *Checker) Evaluate(ctx context.Context, ip netip.Addr, helo, mailFrom string) *registry.SPFResult {
	helo = strings.TrimSuffix(strings.TrimSpace(helo), ".")
	var heloRes *registry.SPFResult
	if c.cfg.CheckHELO && helo != "" && !strings.HasPrefix(helo, "[") {
		heloRes = c.check(ctx, ip, helo, helo, "postmaster@"+helo, "helo")
	}
	if mailFrom == "" {
		if heloRes != nil {
			return heloRes
		}
		return c.check(ctx, ip, helo, helo, "postmaster@"+helo, "helo")
	}
	local, domain := splitAddress(mailFrom)
	if local == "" {
		// RFC 7208 §4.3: an empty local-part is treated as "postmaster".
		mailFrom = "postmaster" + mailFrom
	}
	res := c.check(ctx, ip, helo, domain, mailFrom, "mailfrom")
	res.HELO = heloRes
	return res
}

// check runs check_host(ip, domain, sender) through blitiri's library;
// helo is the session's HELO name, for the %{h} macro.
func (c *Checker) check(ctx context.Context, ip netip.Addr, helo, domain, sender, identity string) *registry.SPFResult {
	res := &registry.SPFResult{Identity: identity, Domain: domain, IP: ip.String()}
	if strings.ContainsFunc(domain, func(r rune) bool { return r >= utf8.RuneSelf }) {
		// An internationalized domain in UTF-8 (SMTPUTF8 mail): its
		// record is published at the A-label (RFC 8616 §4), and the
		// library would look up the UTF-8 name as it stands.
		a, err := maildomain.Canonical(domain)
		if err != nil {
			res.Result = registry.AuthNone
			res.Explanation = fmt.Sprintf("%q is not a valid internationalized domain name: %v", domain, err)
			return res
		}
		if i := strings.LastIndexByte(sender, '@'); i >= 0 {
			sender = sender[:i+1] + a
		}
		domain, res.Domain = a, a
	}
	// RFC 7208 §4.3: a malformed or single-label domain gives "none"
	// without any lookup.
	if why := malformedDomain(domain); why != "" {
		res.Result = registry.AuthNone
		res.Explanation = fmt.Sprintf("%q is not a valid domain for SPF: %s", domain, why)
		return res
	}
	opts := append(make([]blitiri.Option, 0, len(c.options)+1), blitiri.WithContext(ctx))
	r, err := blitiri.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender, append(opts, c.options...)...)
	res.Result = registry.AuthResult(r)
	// The library reports a cancelled or expired context as a permanent
	// error; for us it is transient.
	if r == blitiri.PermError && ctx.Err() != nil {
		res.Result = registry.AuthTempError
		err = fmt.Errorf("%w: %w", err, ctx.Err())
	}
	switch res.Result {
	case registry.AuthTempError, registry.AuthPermError:
		if err != nil {
			res.Explanation = fmt.Sprintf("check %s: %v", domain, err)
		}
		c.log.Debug("spf error", "identity", identity, "domain", domain, "ip", res.IP, "result", res.Result, "err", err)
	}
	return res
}

// verdict turns the MAIL FROM identity's result into the configured action.
func (c *Checker) verdict(res *registry.SPFResult) registry.Verdict {
	action := c.cfg.Action(res.Result)
	if action == registry.Accept {
		return registry.AcceptVerdict() // no text to build
	}
	text := fmt.Sprintf("SPF %s for %s from %s", res.Result, res.Domain, res.IP)
	switch action {
	case registry.Reject:
		// RFC 7372: 5.7.23 SPF validation failed, 5.7.24 SPF validation error.
		enh := "5.7.23"
		if res.Result == registry.AuthPermError || res.Result == registry.AuthTempError {
			enh = "5.7.24"
		}
		return registry.RejectVerdict(550, enh, text)
	case registry.TempFail:
		return registry.TempFailVerdict(451, "4.7.24", text)
	case registry.Quarantine:
		return registry.QuarantineVerdict(text)
	}
	return registry.AcceptVerdict()
}

// receivedSPF formats the Received-SPF field value of RFC 7208 §9.1.
func (c *Checker) receivedSPF(res *registry.SPFResult, helo, mailFrom string) string {
	sender := mailFrom
	if sender == "" {
		sender = "postmaster@" + res.Domain
	}
	var comment string
	switch res.Result {
	case registry.AuthPass:
		comment = "domain of " + sender + " designates " + res.IP + " as permitted sender"
	case registry.AuthFail:
		comment = "domain of " + sender + " does not designate " + res.IP + " as permitted sender"
	case registry.AuthSoftFail:
		comment = "domain of transitioning " + sender + " does not designate " + res.IP + " as permitted sender"
	case registry.AuthNeutral:
		comment = res.IP + " is neither permitted nor denied by domain of " + sender
	case registry.AuthNone:
		comment = "domain of " + sender + " does not designate permitted sender hosts"
	case registry.AuthTempError:
		comment = "error in processing during lookup of " + sender
	case registry.AuthPermError:
		comment = "domain of " + sender + " uses an invalid SPF record"
	}
	var b strings.Builder
	b.Grow(256)
	for _, part := range [...]string{string(res.Result), " (", commentSafe(c.hostname), ": ", commentSafe(comment),
		") receiver=", kvValue(c.hostname), "; client-ip=", kvValue(res.IP), "; envelope-from=", quoted(mailFrom), ";"} {
		b.WriteString(part)
	}
	if helo != "" {
		b.WriteString(" helo=" + kvValue(helo) + ";")
	}
	if res.Explanation != "" && (res.Result == registry.AuthPermError || res.Result == registry.AuthTempError) {
		b.WriteString(" problem=" + quoted(res.Explanation) + ";")
	}
	b.WriteString(" identity=" + res.Identity)
	return b.String()
}

// dnsAdapter hands the host's resolver to the SPF library, which only
// recognises a bare *net.DNSError: a wrapped one is unwrapped, and a
// context error becomes a timeout, so both still give temperror/none as
// RFC 7208 §4.4 and §4.3 require rather than permerror.
type dnsAdapter struct {
	r       registry.Resolver
	records *textcache.Cache[struct{}] // validateRecord by text
}

// LookupTXT also validates the SPF record among the answers (when there
// is exactly one) and answers a permanent error for an invalid one: the
// library turns that into permerror, for the checked domain and for an
// include or redirect target alike.
func (a dnsAdapter) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := a.r.LookupTXT(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	var spf []string
	for _, txt := range v {
		if l := strings.ToLower(txt); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			spf = append(spf, txt)
		}
	}
	if len(spf) == 1 {
		if _, err := a.records.Get(spf[0]); err != nil {
			return nil, &net.DNSError{Err: err.Error(), Name: name}
		}
	}
	return v, nil
}

func (a dnsAdapter) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := a.r.LookupMX(ctx, name)
	return v, dnsError(name, err)
}

func (a dnsAdapter) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := a.r.LookupIPAddr(ctx, host)
	return v, dnsError(host, err)
}

func (a dnsAdapter) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := a.r.LookupAddr(ctx, addr)
	return v, dnsError(addr, err)
}

func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	// An error the resolver did not classify: treat as transient.
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

// malformedDomain says why domain cannot be an SPF domain (RFC 7208 §4.3),
// or "" when it can.
func malformedDomain(domain string) string {
	d := strings.TrimSuffix(domain, ".")
	if d == "" {
		return "empty"
	}
	if !strings.Contains(d, ".") {
		return "not a multi-label domain name"
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" {
			return "empty label"
		}
		if len(l) > 63 {
			return "label longer than 63 octets"
		}
	}
	if len(d) > 253 {
		return "longer than 253 octets"
	}
	return ""
}

// splitAddress splits local@domain at the last '@'.
func splitAddress(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], strings.TrimSuffix(addr[i+1:], ".")
}

// commentSafe makes s fit in a header comment: no control characters
// (line breaks included), no unbalanced parentheses, no backslashes.
func commentSafe(s string) string {
	return commentEscaper.Replace(noCTL(s))
}

// commentEscaper is built once, as quoteEscaper is.
var commentEscaper = strings.NewReplacer("(", "[", ")", "]", "\\", "/")

// kvValue writes v as a dot-atom when it is one, else as a quoted-string.
func kvValue(v string) string {
	if isDotAtom(v) {
		return v
	}
	return quoted(v)
}

// quoteEscaper escapes a quoted-string's backslashes and quotes; built once
// (a Replacer builds its tables on first use, which cost more than the
// replacing itself when made per call).
var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, `\"`)

func quoted(v string) string {
	return `"` + quoteEscaper.Replace(noCTL(v)) + `"`
}

// noCTL replaces control characters with spaces: HELO and MAIL FROM come
// from the client (go-smtp keeps "EHLO a\x00b"), and a header field may hold
// none (RFC 5322 qtext, §3.2.4, and ctext, §3.2.2, exclude them).
func noCTL(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// isDotAtom reports whether s is an RFC 5322 dot-atom-text.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		default:
			return false
		}
	}
	return true
}
