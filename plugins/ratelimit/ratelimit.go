// Package ratelimit limits how fast clients, senders, recipients and users
// may send (GCRA: an even rate with a bounded burst, no double rate at
// window edges) and how many sessions one client may hold at once.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/elemta/elemta/pkg/clientnet"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/registry"
)

// RateLimit is the plugin. It is safe for concurrent use.
type RateLimit struct {
	cfg    Config
	host   registry.Host
	exempt clientnet.List

	st *store.Handle
}

// New builds the plugin from its config; the store is opened by Start. It
// refuses only what Config.Validate refuses (which parsing the config has
// run already): it checks again for callers that build a Config in Go.
func New(cfg Config, host registry.Host) (*RateLimit, error) {
	nets, limits, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg.Limits = limits
	r := &RateLimit{cfg: cfg, host: host, exempt: nets}
	r.st = store.NewHostHandle(cfg.Config, host, filepath.Join(host.DataDir, "ratelimit", "ratelimit.db"))
	return r, nil
}

// Start opens the store. An unreachable Redis does not stop start-up: it is
// logged (once) and on_error applies until it answers.
func (r *RateLimit) Start(ctx context.Context) error { return r.st.Open(ctx) }

// HealthCheck reports whether the store answers.
func (r *RateLimit) HealthCheck(ctx context.Context) error { return r.st.Ping(ctx) }

// Close closes the store; safe without Start and twice.
func (r *RateLimit) Close() error { return r.st.Close() }

// HandleStage counts the events of the SMTP phase: at CONNECT a session
// slot and the connect limits (over the limit: 421, the client is
// disconnected), at MAIL the mail limits (and the session slot is renewed),
// at RCPT the rcpt limits for the recipient being added (over: 451). An
// offline scan (PhaseMessage) counts one connect, one message and each
// recipient, without a session slot.
func (r *RateLimit) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	if why := r.exemption(env); why != "" {
		return &registry.Result{Verdict: registry.AcceptVerdict(), Details: "ratelimit: exempt: " + why}, nil
	}
	now := r.host.Clock.Now()
	var events []event
	switch pc.Phase {
	case registry.PhaseConnect:
		if v, err := r.acquireSession(ctx, pc, now); err != nil || v != nil {
			return v, err
		}
		events = append(events, event{on: OnConnect})
	case registry.PhaseMail:
		r.renewSession(ctx, pc, now)
		events = append(events, event{on: OnMail})
	case registry.PhaseRcpt:
		if n := len(env.RcptTo); n > 0 {
			events = append(events, event{on: OnRcpt, rcpt: env.RcptTo[n-1]})
		}
	case registry.PhaseMessage:
		events = append(events, event{on: OnConnect}, event{on: OnMail})
		for _, rc := range env.RcptTo {
			events = append(events, event{on: OnRcpt, rcpt: rc})
		}
	}
	var counted []string
	for _, ev := range events {
		for i := range r.cfg.Limits {
			l := &r.cfg.Limits[i]
			if l.On != ev.on {
				continue
			}
			key, ok := r.key(l, env, ev.rcpt)
			if !ok {
				continue // a part is unknown (no AUTH user): the limit does not apply
			}
			res, err := r.st.Take(ctx, l.Name+":"+key, now, store.Rate{Count: l.Count, Window: l.Window.D(), Burst: l.Burst})
			r.st.Observe(err)
			if err != nil {
				return nil, fmt.Errorf("rate limit %s: %w", l.Name, err)
			}
			if !res.Allowed {
				return r.refuse(l, ev, res.RetryAfter), nil
			}
			counted = append(counted, fmt.Sprintf("%s (%d left)", l.Name, res.Remaining))
		}
	}
	return &registry.Result{Verdict: registry.AcceptVerdict(), Details: "ratelimit: " + strings.Join(counted, ", ")}, nil
}

type event struct {
	on   string
	rcpt string
}

func (r *RateLimit) refuse(l *Limit, ev event, wait time.Duration) *registry.Result {
	secs := int(math.Ceil(wait.Seconds()))
	text := fmt.Sprintf("Rate limit %q exceeded (%d per %v), try again in %d seconds", l.Name, l.Count, l.Window, max(secs, 1))
	v := registry.TempFailVerdict(451, "4.7.1", text)
	if ev.on == OnConnect {
		v = registry.TempFailVerdict(421, "4.7.0", text)
	}
	return &registry.Result{Verdict: v, Details: "ratelimit: " + text}
}

func (r *RateLimit) exemption(env registry.Envelope) string {
	if !env.ClientIP.IsValid() {
		return ""
	}
	if p, ok := r.exempt.Match(env.ClientIP); ok {
		return "client in " + p.String()
	}
	return ""
}

// sessionKey is the key of a client's session slots.
func (r *RateLimit) sessionKey(env registry.Envelope) string {
	if r.cfg.SessionKey == "network" {
		return "sessions:" + r.network(env.ClientIP)
	}
	return "sessions:" + env.ClientIP.Unmap().String()
}

// acquireSession takes a session slot at CONNECT: a 421 result when the
// client has too many, nil to go on.
func (r *RateLimit) acquireSession(ctx context.Context, pc *registry.ProcessingContext, now time.Time) (*registry.Result, error) {
	env := pc.Message.Envelope
	if r.cfg.MaxSessionsPerClient == 0 || pc.Session.ID == "" || !env.ClientIP.IsValid() {
		return nil, nil
	}
	res, err := r.st.Acquire(ctx, r.sessionKey(env), pc.Session.ID, r.cfg.MaxSessionsPerClient, r.cfg.SessionLease.D(), now)
	r.st.Observe(err)
	if err != nil {
		return nil, fmt.Errorf("session limit for %s: %w", env.ClientIP, err)
	}
	if !res.Acquired {
		text := fmt.Sprintf("Too many concurrent sessions from %s (limit %d), try again later", env.ClientIP.Unmap(), r.cfg.MaxSessionsPerClient)
		return &registry.Result{Verdict: registry.TempFailVerdict(421, "4.7.0", text), Details: "ratelimit: " + text}, nil
	}
	return nil, nil
}

// renewSession extends the session's slot at MAIL. A refusal (the slot
// expired and others took the room meanwhile) does not end a session
// already running; a store error is left to the limits that follow.
func (r *RateLimit) renewSession(ctx context.Context, pc *registry.ProcessingContext, now time.Time) {
	env := pc.Message.Envelope
	if r.cfg.MaxSessionsPerClient == 0 || pc.Session.ID == "" || !env.ClientIP.IsValid() {
		return
	}
	_, err := r.st.Acquire(ctx, r.sessionKey(env), pc.Session.ID, r.cfg.MaxSessionsPerClient, r.cfg.SessionLease.D(), now)
	r.st.Observe(err)
}

// EndSession gives the session's slot back. The host calls it when an SMTP
// session ends; without it the slot is freed when its lease runs out.
func (r *RateLimit) EndSession(ctx context.Context, pc *registry.ProcessingContext) error {
	env := pc.Message.Envelope
	if r.cfg.MaxSessionsPerClient == 0 || pc.Session.ID == "" || !env.ClientIP.IsValid() {
		return nil
	}
	err := r.st.Release(ctx, r.sessionKey(env), pc.Session.ID)
	r.st.Observe(err)
	if err != nil {
		return fmt.Errorf("release session slot of %s: %w", env.ClientIP, err)
	}
	return nil
}

func (r *RateLimit) network(ip netip.Addr) string {
	return clientnet.Network(ip, r.cfg.IPv4Prefix, r.cfg.IPv6Prefix)
}

// key builds a limit's store key from the envelope: the parts, each
// length-prefixed (no separator ambiguity), hashed (bounded size). ok is
// false when a part is unknown.
func (r *RateLimit) key(l *Limit, env registry.Envelope, rcpt string) (string, bool) {
	h := sha256.New()
	for _, p := range l.Key {
		var v string
		switch p {
		case "ip":
			if !env.ClientIP.IsValid() {
				return "", false
			}
			v = env.ClientIP.Unmap().String()
		case "network":
			if !env.ClientIP.IsValid() {
				return "", false
			}
			v = r.network(env.ClientIP)
		case "helo":
			v = strings.ToLower(env.HELO)
		case "sender":
			v = normalize(env.MailFrom)
			if v == "" {
				v = "<>"
			}
		case "sender_domain":
			v = domainOf(normalize(env.MailFrom))
		case "user":
			v = env.AuthUser
		case "rcpt":
			v = normalize(rcpt)
		case "rcpt_domain":
			v = domainOf(normalize(rcpt))
		}
		if v == "" && p != "sender_domain" {
			return "", false
		}
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), true
}

func normalize(a string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "<"), ">"))
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
