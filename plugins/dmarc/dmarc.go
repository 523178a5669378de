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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/elemta/elemta/pkg/textcache"
	"github.com/elemta/elemta/registry"
)

// Checker is the loaded dmarc plugin.
type Checker struct {
	cfg      Config
	resolver registry.Resolver
	log      *slog.Logger
	// sample returns a number in [0, 100) for pct sampling.
	sample func() int
	// records is parseRecord's answers by record text.
	records *textcache.Cache[*msgdmarc.Record]
}

// New builds the plugin from its validated config. It does no I/O.
func New(cfg Config, host registry.Host) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Checker{cfg: cfg, resolver: host.Resolver, log: host.Logger, sample: func() int { return rand.IntN(100) },
		records: textcache.New(cfg.RecordCacheSize, maxCachedRecord, parseRecord)}, nil
}

// SetSampler replaces the pct sampling source (tests): f returns a number
// in [0, 100); a message is subject to the policy when f() < pct.
func (c *Checker) SetSampler(f func() int) { c.sample = f }

// HandleStage implements registry.StageHandler: it evaluates DMARC with the
// SPF and DKIM results found in pc (none found: not aligned) and, with
// enforce, turns the outcome into a verdict.
func (c *Checker) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	spf, _ := registry.Find[*registry.SPFResult](pc)
	dkim, _ := registry.Find[*registry.DKIMResult](pc)
	o := c.evaluate(ctx, pc.Message, spf, dkim)
	out := &registry.Result{Data: o.res, Details: details(o.res)}
	if c.cfg.Enforce {
		out.Verdict = c.verdict(o)
	}
	return out, nil
}

// verdict is the most severe of what the result's policy, a temperror
// (on_temperror) and the From fields themselves (on_unparseable_from,
// on_multiple_from) call for.
func (c *Checker) verdict(o outcome) registry.Verdict {
	res := o.res
	v := registry.AcceptVerdict()
	switch res.Result {
	case registry.AuthFail:
		text := fmt.Sprintf("DMARC policy of %s: message fails authentication", res.PolicyDomain)
		switch res.Policy {
		case "reject":
			v = registry.RejectVerdict(550, "5.7.1", text)
		case "quarantine":
			v = registry.QuarantineVerdict(text)
		}
	case registry.AuthTempError:
		if c.cfg.OnTempError == registry.TempFail {
			// RFC 3463: 4.4.3, directory server failure.
			v = registry.TempFailVerdict(451, "4.4.3", fmt.Sprintf("DMARC policy of %s temporarily unavailable", res.Domain))
		}
	}
	if o.fromAction > v.Action {
		text := "DMARC: " + o.fromText
		switch o.fromAction {
		case registry.Reject:
			v = registry.RejectVerdict(550, "5.7.1", text)
		case registry.Quarantine:
			v = registry.QuarantineVerdict(text)
		}
	}
	return v
}

// CheckDMARC implements registry.DMARCPlugin. The SPF and DKIM results it
// aligns with come from the ProcessingContext that ctx carries
// (registry.WithProcessingContext; ExecuteStage sets it). Without one
// nothing can align, and a domain with a policy gives fail.
func (c *Checker) CheckDMARC(ctx context.Context, message *registry.Message) (*registry.DMARCResult, error) {
	if message == nil {
		return nil, errors.New("check: no message")
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
	s := "dmarc: " + string(r.Result) + " for " + r.Domain
	if r.PolicyDomain != "" {
		s += " (policy of " + r.PolicyDomain + ": p=" + r.Policy + ", spf aligned=" + strconv.FormatBool(r.SPFAligned) +
			", dkim aligned=" + strconv.FormatBool(r.DKIMAligned) + ")"
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
	return c.evaluate(ctx, msg, spf, dkim).res
}

// outcome is a message's DMARC result and what its From fields alone call
// for under enforce: fromAction is on_unparseable_from when the From fields
// cannot be reduced to author domains that were all evaluated, and the
// on_multiple_from action when they name several; Accept otherwise.
type outcome struct {
	res        *registry.DMARCResult
	fromAction registry.Action
	fromText   string
}

func (c *Checker) evaluate(ctx context.Context, msg *registry.Message, spf *registry.SPFResult, dkim *registry.DKIMResult) outcome {
	a := authorDomains(msg.Header, c.cfg.MaxFromDomains)
	var out outcome
	problem := a.problem
	if problem != "" {
		out.fromAction, out.fromText = c.cfg.OnUnparseableFrom, "the From field does not name author domains that can all be evaluated"
	}
	if len(a.domains) > 1 && c.cfg.OnMultipleFrom != MultipleFromStrictest {
		act, _ := registry.ParseAction(c.cfg.OnMultipleFrom) // validated
		if act > out.fromAction {
			out.fromAction, out.fromText = act, "the From field names several author domains"
		}
		problem = strings.TrimPrefix(problem+"; ", "; ") + fmt.Sprintf("%d From domains (on_multiple_from = %s)", len(a.domains), c.cfg.OnMultipleFrom)
	}
	if len(a.domains) == 0 {
		if a.fields == 0 {
			out.res = &registry.DMARCResult{Result: registry.AuthNone, Reason: "no RFC5322.From field"}
		} else {
			out.res = &registry.DMARCResult{Result: registry.AuthPermError, Reason: problem}
		}
		return out
	}
	var worst *registry.DMARCResult
	for _, r := range c.evaluateAll(ctx, a.domains, spf, dkim) {
		if worst == nil || severity(r) > severity(worst) {
			worst = r
		}
	}
	if problem != "" {
		// A failure or a transient error of an evaluated domain stays what
		// it is; otherwise the From fields themselves are the error: the
		// domains not evaluated might have failed.
		if worst.Result != registry.AuthFail && worst.Result != registry.AuthTempError {
			worst = &registry.DMARCResult{Result: registry.AuthPermError, Domain: worst.Domain}
		}
		worst.Reason = strings.TrimPrefix(worst.Reason+"; ", "; ") + problem
	}
	out.res = worst
	return out
}

// severity orders outcomes across several From domains: a failure with a
// reject or quarantine policy is worst, then a transient error (its
// domain's policy is unknown and may be reject), then a failure under
// p=none.
func severity(r *registry.DMARCResult) int {
	switch r.Result {
	case registry.AuthFail:
		return map[string]int{"none": 4, "quarantine": 6, "reject": 7}[r.Policy]
	case registry.AuthTempError:
		return 5
	case registry.AuthPermError:
		return 3
	case registry.AuthPass:
		return 2
	}
	return 1
}

// evaluateAll evaluates every domain at once, under a deadline earlier
// than ctx's by a quarter of the time left, at most lookupMargin. The executor abandons a plugin at its deadline and
// applies on_error (accept by default): one From domain whose DNS never
// answers, chosen by the sender, would otherwise cost the whole evaluation
// and the failure of the spoofed domain beside it. Now the spoofed domain
// is looked up at the same time, and the slow one ends as a temperror
// while there is time to return it.
func (c *Checker) evaluateAll(ctx context.Context, domains []string, spf *registry.SPFResult, dkim *registry.DKIMResult) []*registry.DMARCResult {
	cancel := context.CancelFunc(func() {})
	if d, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, d.Add(-min(time.Until(d)/4, lookupMargin)))
	}
	defer cancel()
	results := make([]*registry.DMARCResult, len(domains))
	if len(domains) == 1 { // nothing to look up beside it: no goroutine
		results[0] = c.evaluateDomain(ctx, domains[0], spf, dkim)
		return results
	}
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Go(func() { results[i] = c.evaluateDomain(ctx, d, spf, dkim) })
	}
	wg.Wait()
	return results
}

// lookupMargin is the most time kept back from the plugin's timeout for
// returning the result once the lookups are cut short.
const lookupMargin = 2 * time.Second

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
	rec, err := c.records.Get(records[0]) // shared: never modified
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
	b.Grow(len(txt) + len("p=none;"))
	for _, k := range order {
		if v, ok := tags[k]; ok {
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
			b.WriteByte(';')
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

// normalize puts an authenticated domain in the form From domains have
// (A-labels, lower case, no root dot), so an SMTPUTF8 MAIL FROM domain
// aligns with the same From domain.
func normalize(d string) string {
	if ascii, err := domainOf(d); err == nil {
		return ascii
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}
