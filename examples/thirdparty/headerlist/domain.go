package headerlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"

	"github.com/elemta/elemta/registry"
)

// checkFromDomain is require_from_domain: the domain of the first address
// in From must exist in DNS (an MX record, else an A or AAAA record). A
// domain that does not exist (NXDOMAIN, or no MX and no address) gets the
// deny action; a DNS failure (SERVFAIL, timeout) is a tempfail, never an
// accept: an attacker must not get mail through by breaking the lookup.
// ok is false when the check has nothing to say (the domain exists, or
// From holds no address to check).
func (l *List) checkFromDomain(ctx context.Context, h registry.Header) (res *registry.Result, ok bool, err error) {
	addrs, perr := mail.ParseAddressList(h.Get("From"))
	if perr != nil || len(addrs) == 0 {
		return nil, false, nil // the rules judge what does not parse
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return nil, false, nil
	}
	domain := strings.ToLower(addrs[0].Address[at+1:])
	exists, lerr := l.domainExists(ctx, domain)
	if cerr := ctx.Err(); cerr != nil {
		return nil, false, cerr // the stage's timeout: the executor's on_error decides
	}
	if lerr != nil {
		v := registry.TempFailVerdict(451, "4.4.3", "Cannot verify the sender domain now; try again later")
		return &registry.Result{Verdict: v, Details: fmt.Sprintf("from domain %s: %v", domain, lerr)}, true, nil
	}
	if exists {
		return nil, false, nil
	}
	v := registry.Verdict{Action: l.deny, Text: "Sender domain does not exist"}
	if l.deny == registry.Quarantine {
		v = registry.QuarantineVerdict(v.Text)
	}
	res = &registry.Result{Verdict: v, Details: fmt.Sprintf("deny: from domain %s does not exist", domain)}
	if l.resultHeader != "" {
		res.AddHeaders = []registry.Field{{Name: l.resultHeader, Value: "deny; from-domain=" + domain}}
	}
	return res, true, nil
}

// domainExists asks for MX, then for addresses. err is set only for a
// failure that is not an answer (registry.Resolver's contract: a bare
// *net.DNSError with IsNotFound is "does not exist", anything else is
// temporary).
func (l *List) domainExists(ctx context.Context, domain string) (bool, error) {
	mx, err := l.resolver.LookupMX(ctx, domain)
	if err == nil && len(mx) > 0 {
		return true, nil
	}
	if err != nil && !notFound(err) {
		return false, err
	}
	ips, err := l.resolver.LookupIPAddr(ctx, domain)
	if err == nil && len(ips) > 0 {
		return true, nil
	}
	if err != nil && !notFound(err) {
		return false, err
	}
	return false, nil
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
