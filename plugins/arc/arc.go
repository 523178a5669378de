// Package arc verifies and seals Authenticated Received Chains (RFC 8617):
// verification at post-reception, sealing at pre-queue. Canonicalization
// comes from pkg/canon, keys from pkg/dkimkey. See README.md.
package arc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/elemta/elemta/pkg/arfield"
	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// Plugin is the arc plugin. Its key is loaded by Start and read-only
// afterwards, so its methods are safe for concurrent use.
type Plugin struct {
	cfg        Config
	resolver   registry.Resolver
	clock      registry.Clock
	log        *slog.Logger
	authservID string
	sealer     *sealer // nil when sealing is off or Start did not run
}

// New builds the plugin; the sealing key is loaded by Start. It refuses
// only what Config.Validate refuses (which parsing the config has run
// already): it checks again for callers that build a Config in Go.
func New(cfg Config, host registry.Host) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Plugin{cfg: cfg, resolver: host.Resolver, clock: host.Clock, log: host.Logger, authservID: cfg.AuthservID}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.clock == nil {
		p.clock = registry.SystemClock{}
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.authservID == "" {
		p.authservID = cmp.Or(host.AuthservID, host.Hostname)
	}
	if p.authservID == "" {
		p.authservID = "localhost"
	}
	return p, nil
}

// Start loads the sealing key: a missing, malformed or short key stops
// startup; a world-readable one is logged.
func (p *Plugin) Start(ctx context.Context) error {
	if !p.cfg.sealing() {
		return nil
	}
	k, err := dkimkey.LoadFile(p.cfg.PrivateKey)
	if err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	for _, w := range k.Warnings {
		p.log.Warn(w)
	}
	headers := make([]string, len(p.cfg.Headers))
	for i, h := range p.cfg.Headers {
		headers[i] = strings.ToLower(h)
	}
	p.sealer = &sealer{domain: p.cfg.Domain, selector: p.cfg.Selector, key: k, headers: headers}
	return nil
}

// HealthCheck reports whether the sealing key can still be loaded.
func (p *Plugin) HealthCheck(ctx context.Context) error {
	if !p.cfg.sealing() {
		return nil
	}
	_, err := dkimkey.LoadFile(p.cfg.PrivateKey)
	return err
}

// HandleStage verifies at post-reception and seals at pre-queue.
func (p *Plugin) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	switch stage {
	case registry.PostReception:
		if !p.cfg.Verify {
			return &registry.Result{Details: "verification disabled"}, nil
		}
		r, err := p.VerifyChain(ctx, pc.Message)
		if err != nil {
			return nil, err
		}
		return &registry.Result{Data: r, Details: details(r)}, nil
	case registry.PreQueue:
		if p.sealer == nil {
			return &registry.Result{Details: "sealing not configured"}, nil
		}
		if !p.shouldSeal(pc.Message) {
			return &registry.Result{Details: "not sealed: seal_for = " + p.cfg.SealFor}, nil
		}
		fields, why, err := sealMessage(ctx, p.sealer, p.resolver, pc.Message, p.authservID, p.authresFor(pc), p.clock.Now(), p.cfg.MaxInstances)
		if err != nil {
			return nil, err
		}
		if fields == nil {
			return &registry.Result{Details: "not sealed: " + why}, nil
		}
		return &registry.Result{AddHeaders: fields, Details: "sealed: " + why}, nil
	}
	return &registry.Result{}, nil
}

// VerifyChain validates the message's ARC chain (RFC 8617 §5.2). A DNS
// failure gives result temperror; ctx's end gives an error.
func (p *Plugin) VerifyChain(ctx context.Context, message *registry.Message) (*registry.ARCResult, error) {
	r := validate(ctx, p.resolver, message, p.cfg.MaxInstances)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return r, nil
}

// SealMessage adds an ARC set to message with message.AddHeader. The
// ARC-Authentication-Results is built from the session's results when ctx
// carries its ProcessingContext (registry.WithProcessingContext); without
// one it carries only arc=.
func (p *Plugin) SealMessage(ctx context.Context, message *registry.Message) error {
	if p.sealer == nil {
		return errors.New("seal: no sealing key (domain, selector, private_key) configured, or Start not called")
	}
	aar := ""
	if pc, ok := registry.ProcessingContextFrom(ctx); ok {
		aar = p.authresFor(pc)
	}
	fields, why, err := sealMessage(ctx, p.sealer, p.resolver, message, p.authservID, aar, p.clock.Now(), p.cfg.MaxInstances)
	if err != nil {
		return err
	}
	if fields == nil {
		return fmt.Errorf("not sealed: %s", why)
	}
	for _, f := range fields {
		message.AddHeader(f.Name, f.Value)
	}
	return nil
}

func (p *Plugin) shouldSeal(m *registry.Message) bool {
	switch p.cfg.SealFor {
	case SealChained:
		for _, f := range m.Header {
			if strings.EqualFold(f.Name, hdrSeal) {
				return true
			}
		}
		return false
	case SealUnauthenticated:
		return m.Envelope.AuthUser == ""
	}
	return true
}

// authresFor returns this session's Authentication-Results value (with our
// authserv-id) as added by an earlier plugin, or one built from the typed
// results of SPF, DKIM and DMARC when no plugin added one.
func (p *Plugin) authresFor(pc *registry.ProcessingContext) string {
	var values []string
	for _, r := range pc.Results() {
		for _, f := range r.AddHeaders {
			if strings.EqualFold(f.Name, "Authentication-Results") {
				values = append(values, f.Value)
			}
		}
	}
	if merged := mergeAuthres(p.authservID, values); merged != "" {
		return merged
	}
	// The values come from the sender (the DKIM d= and i= tags, the From
	// domain): written as authres writes them (arfield), never quoted, so
	// no reader can see a result in them that nobody wrote.
	var rs []authres.Result
	if spf, ok := registry.Find[*registry.SPFResult](pc); ok {
		rs = append(rs, &authres.SPFResult{Value: authres.ResultValue(spf.Result), From: arfield.ASCIIToken(spf.Domain)})
	}
	if dk, ok := registry.Find[*registry.DKIMResult](pc); ok {
		for _, s := range dk.Signatures {
			rs = append(rs, &authres.DKIMResult{Value: authres.ResultValue(s.Result), Domain: arfield.ASCIIToken(s.Domain), Identifier: arfield.ASCIIPValue(s.Identity)})
		}
	}
	if dm, ok := registry.Find[*registry.DMARCResult](pc); ok {
		rs = append(rs, &authres.DMARCResult{Value: authres.ResultValue(dm.Result), From: arfield.ASCIIToken(dm.Domain)})
	}
	return strings.Join(strings.Fields(authres.Format(p.authservID, rs)), " ")
}

// mergeAuthres merges the Authentication-Results values that carry
// authservID into one "authserv-id; result; result" value, as an
// ARC-Authentication-Results must hold them (RFC 8617 §4.1.1); "" when none.
// The authserv-id is read as authres reads it (arfield.Split: after
// comments, a token or quoted-string, an optional version; compared
// case-insensitively, a trailing root dot ignored); the results after it
// are kept as they are, white space collapsed. A value whose id is followed
// by anything but a version and ';' is not ours to copy.
func mergeAuthres(authservID string, values []string) string {
	var parts []string
	found := false
	for _, v := range values {
		id, rest, ok := arfield.Split(strings.Join(strings.Fields(v), " "))
		if !ok || !arfield.SameAuthservID(id, authservID) {
			continue
		}
		found = true
		if rest = strings.TrimSpace(rest); rest != "" {
			parts = append(parts, rest)
		}
	}
	if !found {
		return ""
	}
	return strings.Join(append([]string{authservID}, parts...), "; ")
}

// sealMessage validates msg's chain and returns the next ARC set, or nil
// and the reason not to seal (RFC 8617 §5.1). authresValue is our
// Authentication-Results value; "" means "<authserv-id>; arc=<cv>".
func sealMessage(ctx context.Context, s *sealer, r registry.Resolver, msg *registry.Message, authservID, authresValue string, now time.Time, maxInstances int) ([]registry.Field, string, error) {
	sets, err := collectSets(msg.Header, maxInstances)
	if err != nil {
		return nil, "incoming chain is malformed (" + err.Error() + ")", nil
	}
	if len(sets) >= maxInstances {
		return nil, fmt.Sprintf("the chain already has %d sets", len(sets)), nil
	}
	if len(sets) > 0 && sets[len(sets)-1].sealTags["cv"] == "fail" {
		return nil, "the chain arrived with cv=fail", nil
	}
	v := validate(ctx, r, msg, maxInstances)
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("seal: %w", err)
	}
	var cv string
	switch v.Result {
	case registry.AuthNone:
		cv = "none"
	case registry.AuthPass:
		cv = "pass"
	case registry.AuthFail:
		cv = "fail"
	default:
		return nil, "chain validation: " + string(v.Result) + " (" + v.Reason + ")", nil
	}
	if authresValue == "" {
		authresValue = authservID + "; arc=" + string(v.Result)
	}
	fields, err := s.seal(msg, sets, cv, authresValue, now)
	if err != nil {
		return nil, "", err
	}
	return fields, fmt.Sprintf("i=%d cv=%s d=%s s=%s", len(sets)+1, cv, s.domain, s.selector), nil
}

func details(r *registry.ARCResult) string {
	s := "arc=" + string(r.Result)
	if r.Result == registry.AuthPass {
		s += fmt.Sprintf(" (%d sets, oldest-pass %d)", r.Instances, r.OldestPass)
	}
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	return s
}
