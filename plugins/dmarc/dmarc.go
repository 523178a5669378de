// Package dmarc evaluates the DMARC policy (RFC 7489) of a message's
// RFC5322.From domain from the SPF and DKIM results recorded earlier in the
// same processing context. It registers itself as the "dmarc" plugin.
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/mail"
	"regexp"
	"strings"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/elemta/elemta/registry"
)

func errorf(format string, args ...any) error {
	return fmt.Errorf("dmarc: "+format, args...)
}

// Checker is the loaded dmarc plugin.
type Checker struct {
	cfg      Config
	resolver registry.Resolver
	log      *slog.Logger
	// sample returns a number in [0, 100) for pct sampling.
	sample func() int
}

// New builds the plugin from its validated config. It does no I/O.
func New(cfg Config, host registry.Host) (*Checker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Checker{cfg: cfg, resolver: host.Resolver, log: host.Logger, sample: func() int { return rand.IntN(100) }}, nil
}

// SetSampler replaces the pct sampling source (tests): f returns a number
// in [0, 100); a message is subject to the policy when f() < pct.
func (c *Checker) SetSampler(f func() int) { c.sample = f }

// HandleStage implements registry.StageHandler: it evaluates DMARC with the
// SPF and DKIM results found in pc (none found: not aligned).
func (c *Checker) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	spf, _ := registry.Find[*registry.SPFResult](pc)
	dkim, _ := registry.Find[*registry.DKIMResult](pc)
	res := c.Evaluate(ctx, pc.Message, spf, dkim)
	out := &registry.Result{Data: res, Details: details(res)}
	if c.cfg.Enforce && res.Result == registry.AuthFail {
		text := fmt.Sprintf("DMARC policy of %s: message fails authentication", res.PolicyDomain)
		switch res.Policy {
		case "reject":
			out.Verdict = registry.RejectVerdict(550, "5.7.1", text)
		case "quarantine":
			out.Verdict = registry.QuarantineVerdict(text)
		}
	}
	return out, nil
}

// CheckDMARC implements registry.DMARCPlugin. The SPF and DKIM results it
// aligns with come from the ProcessingContext that ctx carries
// (registry.WithProcessingContext; ExecuteStage sets it). Without one
// nothing can align, and a domain with a policy gives fail.
func (c *Checker) CheckDMARC(ctx context.Context, message *registry.Message) (*registry.DMARCResult, error) {
	if message == nil {
		return nil, errorf("check: no message")
	}
	var spf *registry.SPFResult
	var dkim *registry.DKIMResult
	if pc, ok := registry.ProcessingContextFrom(ctx); ok {
		spf, _ = registry.Find[*registry.SPFResult](pc)
		dkim, _ = registry.Find[*registry.DKIMResult](pc)
	}
	return c.Evaluate(ctx, message, spf, dkim), nil
}

func details(r *registry.DMARCResult) string {
	s := fmt.Sprintf("dmarc: %s for %s", r.Result, r.Domain)
	if r.PolicyDomain != "" {
		s += fmt.Sprintf(" (policy of %s: p=%s, spf aligned=%t, dkim aligned=%t)", r.PolicyDomain, r.Policy, r.SPFAligned, r.DKIMAligned)
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Evaluate runs DMARC for msg given the SPF result of the MAIL FROM identity
// and the DKIM results (either may be nil). A From field with several
// addresses, or several From fields, are evaluated per distinct domain and
// the worst outcome returned: the strictest failing policy first (RFC 7489
// §6.6.1).
func (c *Checker) Evaluate(ctx context.Context, msg *registry.Message, spf *registry.SPFResult, dkim *registry.DKIMResult) *registry.DMARCResult {
	domains, err := fromDomains(msg.Header, c.cfg.MaxFromDomains+1)
	if err != nil {
		return &registry.DMARCResult{Result: registry.AuthPermError, Reason: err.Error()}
	}
	if len(domains) == 0 {
		return &registry.DMARCResult{Result: registry.AuthNone, Reason: "no RFC5322.From domain"}
	}
	if len(domains) > c.cfg.MaxFromDomains {
		return &registry.DMARCResult{Result: registry.AuthPermError, Domain: domains[0],
			Reason: fmt.Sprintf("more than max_from_domains = %d From domains", c.cfg.MaxFromDomains)}
	}
	var worst *registry.DMARCResult
	for _, d := range domains {
		r := c.evaluateDomain(ctx, d, spf, dkim)
		if worst == nil || severity(r) > severity(worst) {
			worst = r
		}
	}
	return worst
}

// severity orders outcomes across several From domains: a failure with the
// strictest policy is worst.
func severity(r *registry.DMARCResult) int {
	switch r.Result {
	case registry.AuthFail:
		return map[string]int{"none": 5, "quarantine": 6, "reject": 7}[r.Policy]
	case registry.AuthTempError:
		return 4
	case registry.AuthPermError:
		return 3
	case registry.AuthPass:
		return 2
	}
	return 1
}

// evaluateDomain runs DMARC for one author domain.
func (c *Checker) evaluateDomain(ctx context.Context, domain string, spf *registry.SPFResult, dkim *registry.DKIMResult) *registry.DMARCResult {
	res := &registry.DMARCResult{Domain: domain}
	rec, policyDomain, err := c.discover(ctx, domain)
	switch {
	case errors.Is(err, errNoPolicy):
		res.Result, res.Reason = registry.AuthNone, err.Error()
		return res
	case errors.Is(err, errTemp):
		res.Result, res.Reason = registry.AuthTempError, err.Error()
		return res
	case err != nil:
		res.Result, res.PolicyDomain, res.Reason = registry.AuthPermError, policyDomain, err.Error()
		return res
	}
	res.PolicyDomain = policyDomain
	res.SPFAligned = spf != nil && spf.Result == registry.AuthPass && aligned(domain, spf.Domain, rec.SPFAlignment)
	if dkim != nil {
		for _, s := range dkim.Signatures {
			if s.Result == registry.AuthPass && aligned(domain, s.Domain, rec.DKIMAlignment) {
				res.DKIMAligned = true
				break
			}
		}
	}
	policy := rec.Policy
	if !strings.EqualFold(domain, policyDomain) && rec.SubdomainPolicy != "" {
		policy = rec.SubdomainPolicy // found at the organizational domain (§6.6.3 step 3)
	}
	res.Policy = string(policy)
	if res.SPFAligned || res.DKIMAligned {
		res.Result = registry.AuthPass
		return res
	}
	res.Result = registry.AuthFail
	res.Reason = "neither SPF nor DKIM passed aligned with the From domain"
	if rec.Percent != nil && *rec.Percent < 100 && policy != msgdmarc.PolicyNone {
		if n := c.sample(); n >= *rec.Percent {
			// Not sampled (§6.6.4): apply the next less strict policy.
			if policy == msgdmarc.PolicyReject {
				res.Policy = "quarantine"
			} else {
				res.Policy = "none"
			}
			res.Reason += fmt.Sprintf("; pct=%d: not sampled, p=%s applied as %s", *rec.Percent, policy, res.Policy)
		}
	}
	return res
}

var (
	errNoPolicy = errors.New("no DMARC policy")
	errTemp     = errors.New("DMARC record temporarily unavailable")
)

// discover finds the DMARC record for domain: at _dmarc.<domain>, else at
// _dmarc.<organizational domain> (RFC 7489 §6.6.3).
func (c *Checker) discover(ctx context.Context, domain string) (*msgdmarc.Record, string, error) {
	rec, err := c.lookup(ctx, domain)
	if !errors.Is(err, errNoPolicy) {
		return rec, domain, err
	}
	org, oerr := publicsuffix.EffectiveTLDPlusOne(domain)
	if oerr != nil || strings.EqualFold(org, domain) {
		return nil, domain, fmt.Errorf("%w for %s", errNoPolicy, domain)
	}
	rec, err = c.lookup(ctx, org)
	if errors.Is(err, errNoPolicy) {
		return nil, org, fmt.Errorf("%w for %s or its organizational domain %s", errNoPolicy, domain, org)
	}
	return rec, org, err
}

var versionTag = regexp.MustCompile(`^v[ \t]*=[ \t]*DMARC1[ \t]*(;|$)`)

// lookup fetches and parses the record at _dmarc.<domain>.
func (c *Checker) lookup(ctx context.Context, domain string) (*msgdmarc.Record, error) {
	name := "_dmarc." + domain
	txts, err := c.resolver.LookupTXT(ctx, name)
	if err != nil {
		// NXDOMAIN and NODATA mean no record; any other failure (timeout,
		// SERVFAIL, a cancelled context) may pass: temperror.
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, fmt.Errorf("%w at %s", errNoPolicy, name)
		}
		return nil, fmt.Errorf("%w: lookup %s: %w", errTemp, name, err)
	}
	var records []string
	for _, t := range txts {
		if versionTag.MatchString(t) {
			records = append(records, t)
		}
	}
	switch len(records) {
	case 0:
		return nil, fmt.Errorf("%w at %s", errNoPolicy, name)
	case 1:
	default:
		// §6.6.3 step 5: several records end policy discovery.
		return nil, fmt.Errorf("%w: %d DMARC records at %s", errNoPolicy, len(records), name)
	}
	rec, err := parseRecord(records[0])
	if err != nil {
		return nil, fmt.Errorf("parse record at %s: %w", name, err)
	}
	return rec, nil
}

// parseRecord parses a DMARC record with go-msgauth, after applying RFC
// 7489 §6.6.3 step 6: a record without a valid p (or with an invalid sp)
// but with a rua tag is read as p=none; without rua it is discarded.
func parseRecord(txt string) (*msgdmarc.Record, error) {
	tags := map[string]string{}
	var order []string
	for _, part := range strings.Split(txt, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			if strings.TrimSpace(part) == "" {
				continue
			}
			return nil, fmt.Errorf("malformed tag %q", strings.TrimSpace(part))
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; !dup {
			order = append(order, k)
		}
		tags[k] = strings.TrimSpace(v)
	}
	validPolicy := func(p string) bool { return p == "none" || p == "quarantine" || p == "reject" }
	p, hasP := tags["p"]
	sp, hasSP := tags["sp"]
	if !hasP || !validPolicy(p) || hasSP && !validPolicy(sp) {
		if !hasValidURI(tags["rua"]) {
			return nil, fmt.Errorf("%w: no valid p tag and no rua", errNoPolicy)
		}
		tags["p"] = "none"
		if !hasP {
			order = append(order, "p")
		}
		if hasSP && !validPolicy(sp) {
			delete(tags, "sp")
		}
	}
	var b strings.Builder
	for _, k := range order {
		if v, ok := tags[k]; ok {
			fmt.Fprintf(&b, "%s=%s;", k, v)
		}
	}
	return msgdmarc.Parse(b.String())
}

// hasValidURI reports whether a rua value holds at least one URI with a
// scheme (RFC 7489 §6.4 dmarc-uri).
func hasValidURI(rua string) bool {
	for _, u := range strings.Split(rua, ",") {
		u = strings.TrimSpace(u)
		if i := strings.IndexByte(u, ':'); i > 0 && i < len(u)-1 {
			return true
		}
	}
	return false
}

// aligned compares an authenticated domain with the From domain: equal
// (strict) or with the same organizational domain (relaxed, §3.1).
func aligned(from, authenticated string, mode msgdmarc.AlignmentMode) bool {
	from, authenticated = normalize(from), normalize(authenticated)
	if authenticated == "" {
		return false
	}
	if from == authenticated {
		return true
	}
	if mode == msgdmarc.AlignmentStrict {
		return false
	}
	return orgDomain(from) == orgDomain(authenticated)
}

func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

func normalize(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// fromDomains returns the distinct domains of every address of every From
// field, in order, stopping at limit domains (a hostile message can carry
// many thousands, and each new one is compared with those found). Zero From
// fields give none; an unparsable one an error.
func fromDomains(h registry.Header, limit int) ([]string, error) {
	var domains []string
	for _, v := range h.Values("From") {
		addrs, err := mail.ParseAddressList(v)
		if err != nil {
			d := lenientDomain(v)
			if d == "" {
				return nil, fmt.Errorf("parse From %q: %w", v, err)
			}
			addrs = []*mail.Address{{Address: "x@" + d}}
		}
		for _, a := range addrs {
			i := strings.LastIndexByte(a.Address, '@')
			if i < 0 {
				return nil, fmt.Errorf("From address %q has no domain", a.Address)
			}
			d := normalize(a.Address[i+1:])
			if d == "" {
				return nil, fmt.Errorf("From address %q has no domain", a.Address)
			}
			if !contains(domains, d) {
				domains = append(domains, d)
				if len(domains) >= limit {
					return domains, nil
				}
			}
		}
	}
	return domains, nil
}

// lenientDomain finds the domain of a From value net/mail rejects (bad
// display names are common): the text after the last '@' up to '>' or the
// end, when it looks like a domain.
var lenientAddr = regexp.MustCompile(`@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)\s*>?\s*$`)

func lenientDomain(v string) string {
	m := lenientAddr.FindStringSubmatch(v)
	if m == nil || !strings.Contains(m[1], ".") {
		return ""
	}
	return m[1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
