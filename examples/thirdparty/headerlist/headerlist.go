// Package headerlist is an Elemta plugin published from its own module: it
// allows or denies messages by glob patterns over header fields and the
// addresses in them. See README.md.
package headerlist

import (
	"context"
	"fmt"
	"net/mail"
	"path"
	"strings"

	"github.com/elemta/elemta/registry"
)

// List is the plugin: an ordered list of rules, first match wins.
type List struct {
	rules        []rule
	deny         registry.Action
	reply        string
	resultHeader string

	requireFromDomain bool
	resolver          registry.Resolver
}

type rule struct {
	header  string
	pattern string // lowercase glob
	allow   bool
	index   int
}

// Match returns the first rule that matches the header, if any, with the
// value that matched.
func (l *List) Match(h registry.Header) (r rule, value string, ok bool) {
	for _, r := range l.rules {
		for _, v := range h.Values(r.header) {
			if m, hit := r.matches(v); hit {
				return r, m, true
			}
		}
	}
	return rule{}, "", false
}

// matches tries the pattern on the whole value, then on each address.
func (r rule) matches(value string) (string, bool) {
	if ok, _ := path.Match(r.pattern, strings.ToLower(value)); ok {
		return value, true
	}
	addrs, err := mail.ParseAddressList(value)
	if err != nil {
		return "", false
	}
	for _, a := range addrs {
		if ok, _ := path.Match(r.pattern, strings.ToLower(a.Address)); ok {
			return a.Address, true
		}
	}
	return "", false
}

// HandleStage decides on the message's header fields.
func (l *List) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, value, ok := l.Match(pc.Message.Header)
	if !ok {
		if l.requireFromDomain {
			if res, decided, err := l.checkFromDomain(ctx, pc.Message.Header); err != nil || decided {
				return res, err
			}
		}
		return &registry.Result{Verdict: registry.AcceptVerdict(), Details: "no rule matched"}, nil
	}
	list := "deny"
	verdict := registry.Verdict{Action: l.deny, Text: l.reply}
	if l.deny == registry.Quarantine {
		verdict = registry.QuarantineVerdict(l.reply)
	}
	if r.allow {
		list, verdict = "allow", registry.AcceptVerdict()
	}
	detail := fmt.Sprintf("%s: rule %d (%s %s) matched %q", list, r.index, r.header, r.pattern, value)
	res := &registry.Result{Verdict: verdict, Details: detail}
	if l.resultHeader != "" {
		res.AddHeaders = []registry.Field{{Name: l.resultHeader, Value: fmt.Sprintf("%s; rule=%d; %s=%s", list, r.index, strings.ToLower(r.header), value)}}
	}
	return res, nil
}
