// Package greylist refuses mail from an unknown (client network, sender,
// recipient) triplet with a temporary failure and lets the retry through:
// real MTAs retry, most spam engines do not.
package greylist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/elemta/elemta/pkg/clientnet"
	"github.com/elemta/elemta/pkg/maildomain"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/registry"
)

// Greylist is the plugin. It is safe for concurrent use.
type Greylist struct {
	cfg    Config
	host   registry.Host
	exempt clientnet.List
	// exemptDomains is exempt_recipient_domains normalized once
	// (maildomain.Normalize, a leading dot kept): each recipient is
	// compared with them, not converted again per entry.
	exemptDomains []string

	st *store.Handle
}

// New builds the plugin from its config; the store is opened by Start. It
// refuses only what Config.Validate refuses (which parsing the config has
// run already): it checks again for callers that build a Config in Go.
func New(cfg Config, host registry.Host) (*Greylist, error) {
	nets, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	g := &Greylist{cfg: cfg, host: host, exempt: nets}
	for _, d := range cfg.ExemptRecipientDomains {
		sub, dot := strings.CutPrefix(d, ".")
		if dot {
			g.exemptDomains = append(g.exemptDomains, "."+maildomain.Normalize(sub))
		} else {
			g.exemptDomains = append(g.exemptDomains, maildomain.Normalize(d))
		}
	}
	g.st = store.NewHostHandle(cfg.Config, host, filepath.Join(host.DataDir, "greylist", "greylist.db"))
	return g, nil
}

// Start opens the store. An unreachable Redis does not stop start-up: it is
// logged (once) and on_error applies to checks until it answers.
func (g *Greylist) Start(ctx context.Context) error { return g.st.Open(ctx) }

// HealthCheck reports whether the store answers.
func (g *Greylist) HealthCheck(ctx context.Context) error { return g.st.Ping(ctx) }

// Close closes the store; safe without Start and twice.
func (g *Greylist) Close() error { return g.st.Close() }

// Decision is the outcome for one recipient.
type Decision struct {
	Recipient string
	// Status is the store's verdict on the triplet; zero when exempt.
	Status store.GreylistStatus
	// Exempt says why the recipient was not greylisted ("" when it was checked).
	Exempt string
	// RetryAt is when a refused triplet may pass.
	RetryAt time.Time
}

// Pass reports whether the recipient may receive the message.
func (d Decision) Pass() bool { return d.Exempt != "" || d.Status.Pass() }

// HandleStage greylists at RCPT time the recipient being added (the last of
// RcptTo) and, in an offline scan (PhaseMessage), every recipient. Other
// SMTP phases pass untouched.
func (g *Greylist) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	var rcpts []string
	switch pc.Phase {
	case registry.PhaseRcpt:
		if n := len(env.RcptTo); n > 0 {
			rcpts = env.RcptTo[n-1:]
		}
	case registry.PhaseMessage:
		rcpts = env.RcptTo
	default:
		return &registry.Result{Verdict: registry.AcceptVerdict(), Details: "greylist: nothing to check before RCPT"}, nil
	}
	if why := g.sessionExemption(pc); why != "" {
		return &registry.Result{Verdict: registry.AcceptVerdict(), Details: "greylist: exempt: " + why}, nil
	}
	now := g.host.Clock.Now()
	var refused []Decision
	var details []string
	for _, rcpt := range rcpts {
		d, err := g.Check(ctx, env, rcpt, now)
		if err != nil {
			return nil, err
		}
		if d.Exempt != "" {
			details = append(details, fmt.Sprintf("%s: exempt (%s)", d.Recipient, d.Exempt))
		} else {
			details = append(details, fmt.Sprintf("%s: %s", d.Recipient, d.Status))
		}
		if !d.Pass() {
			refused = append(refused, d)
		}
	}
	res := &registry.Result{Verdict: registry.AcceptVerdict(), Details: "greylist: " + strings.Join(details, "; ")}
	if len(refused) > 0 {
		latest := refused[0].RetryAt
		for _, d := range refused[1:] {
			if d.RetryAt.After(latest) {
				latest = d.RetryAt
			}
		}
		wait := max(time.Second, latest.Sub(now)).Round(time.Second)
		res.Verdict = registry.TempFailVerdict(451, "4.7.1",
			fmt.Sprintf("Greylisted, please try again in %d seconds", int(wait/time.Second)))
	}
	return res, nil
}

// sessionExemption says why the whole session is exempt, or "".
func (g *Greylist) sessionExemption(pc *registry.ProcessingContext) string {
	env := pc.Message.Envelope
	if g.cfg.ExemptAuthenticated && env.AuthUser != "" {
		return "authenticated"
	}
	if !env.ClientIP.IsValid() {
		return "no client address"
	}
	if p, ok := g.exempt.Match(env.ClientIP); ok {
		return "client in " + p.String()
	}
	if g.cfg.ExemptSPFPass {
		if spf, ok := registry.Find[*registry.SPFResult](pc); ok && spf != nil &&
			spf.Result == registry.AuthPass && spf.Identity != "helo" {
			return "SPF pass for " + spf.Domain
		}
	}
	return ""
}

// Check greylists one recipient of env at now.
func (g *Greylist) Check(ctx context.Context, env registry.Envelope, rcpt string, now time.Time) (Decision, error) {
	rcpt = normalizeRecipient(rcpt)
	d := Decision{Recipient: rcpt}
	if dom := domainOf(rcpt); dom != "" && matchDomain(g.exemptDomains, maildomain.Normalize(dom)) {
		d.Exempt = "recipient domain " + dom
		return d, nil
	}
	network := clientnet.Network(env.ClientIP, g.cfg.IPv4Prefix, g.cfg.IPv6Prefix)
	sender := NormalizeSender(env.MailFrom, g.cfg.StripSubaddress, g.cfg.SubaddressSeparators, g.cfg.StripTags)
	res, err := g.st.Greylist(ctx, store.GreylistRequest{
		Triplet: TripletKey(network, sender, rcpt), Network: network, Now: now,
		Delay: g.cfg.Delay.D(), RetryWindow: g.cfg.RetryWindow.D(), Expire: g.cfg.Expire.D(),
		AutoAllowAfter: g.cfg.AutoAllowAfter,
	})
	g.st.Observe(err)
	if err != nil {
		return d, fmt.Errorf("greylist %s from %s: %w", rcpt, network, err)
	}
	d.Status = res.Status
	if !res.Status.Pass() {
		d.RetryAt = res.RetryAt(g.cfg.Delay.D())
	}
	return d, nil
}

// TripletKey is the store key of a triplet: the network in clear (to find
// a network's records), the addresses hashed (bounded size, no separator
// ambiguity).
func TripletKey(network, sender, rcpt string) string {
	h := sha256.New()
	h.Write([]byte(sender))
	h.Write([]byte{0})
	h.Write([]byte(rcpt))
	return network + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

func normalizeRecipient(a string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "<"), ">"))
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// matchDomain: "example.com" matches itself, ".example.com" its
// subdomains; list and dom are normalized (maildomain), so an
// internationalized domain matches however it is written.
func matchDomain(list []string, dom string) bool {
	for _, d := range list {
		if dom == d || strings.HasPrefix(d, ".") && strings.HasSuffix(dom, d) {
			return true
		}
	}
	return false
}

// NormalizeSender lowercases the envelope sender and, as asked, undoes SRS
// and BATV rewriting (stripTags) and drops a sub-address (strip with any of
// seps), so the retry of a message whose sender carries a per-message tag
// still matches. The null sender is "<>".
func NormalizeSender(addr string, strip bool, seps string, stripTags bool) string {
	addr = normalizeRecipient(addr)
	if addr == "" {
		return "<>"
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local, domain := addr[:at], addr[at+1:]
	if stripTags {
		local, domain = untag(local, domain)
	}
	if strip {
		if i := strings.IndexAny(local, seps); i > 0 {
			local = local[:i]
		}
	}
	return local + "@" + domain
}

// untag undoes BATV (prvs=tag=local, msprvs1=tag=local, btv1==tag==local)
// and SRS (SRS0=hash=tt=domain=local, SRS1=hash=forwarder==hash=tt=domain=local).
func untag(local, domain string) (string, string) {
	for _, p := range []string{"prvs=", "msprvs1="} {
		if rest, ok := strings.CutPrefix(local, p); ok {
			if _, l, ok := strings.Cut(rest, "="); ok && l != "" {
				return l, domain
			}
		}
	}
	if rest, ok := strings.CutPrefix(local, "btv1=="); ok {
		if i := strings.LastIndex(rest, "=="); i >= 0 && i+2 < len(rest) {
			return rest[i+2:], domain
		}
	}
	var srs string
	if len(local) > 5 && strings.HasPrefix(local, "srs0") && strings.ContainsRune("=+-", rune(local[4])) {
		srs = local[5:]
	} else if strings.HasPrefix(local, "srs1") {
		if _, after, ok := strings.Cut(local, "=="); ok {
			srs = after
		}
	}
	if srs != "" {
		// hash=tt=domain=local; the original local part may contain '='.
		parts := strings.SplitN(srs, "=", 4)
		if len(parts) == 4 && parts[2] != "" && parts[3] != "" {
			return parts[3], parts[2]
		}
	}
	return local, domain
}
