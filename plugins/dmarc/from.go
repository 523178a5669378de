package dmarc

import (
	"fmt"
	"net/mail"
	"regexp"
	"strings"

	"github.com/elemta/elemta/pkg/maildomain"
	"github.com/elemta/elemta/registry"
)

// authors is what the From fields of a message give DMARC (RFC 7489
// §6.6.1): the distinct author domains, in order, and why they may not be
// the whole truth.
type authors struct {
	// domains are the distinct domains found, A-labels in lower case, at
	// most the limit asked for.
	domains []string
	// fields is the number of From fields.
	fields int
	// problem says why domains may not hold every author domain: a From
	// field or address with no usable domain, or more domains than the
	// limit. "" when every address of every From field gave a domain and
	// all of them are in domains.
	problem string
}

// authorDomains reads the domain of every address of every From field of
// h, keeping at most limit distinct ones: a hostile message can carry many
// thousands, and each new one is compared with those found. It stops at
// the first domain past the limit, so one message costs bounded time.
func authorDomains(h registry.Header, limit int) authors {
	var a authors
	var problems []string
	note := func(format string, args ...any) {
		if len(problems) < 3 { // enough to explain; a hostile message has thousands
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	add := func(d string) bool {
		if contains(a.domains, d) {
			return true
		}
		if len(a.domains) == limit {
			note("more than max_from_domains = %d From domains", limit)
			return false
		}
		a.domains = append(a.domains, d)
		return true
	}
fields:
	for _, v := range h.Values("From") {
		a.fields++
		addrs, err := mail.ParseAddressList(v)
		if err != nil {
			// net/mail refuses the field (a bad display name, a root dot,
			// stray angle brackets): take every "@domain" in it, so that
			// garbage around an address never hides its domain.
			found, bad := lenientDomains(v)
			if len(found) == 0 {
				if bad != "" {
					err = fmt.Errorf("%w; %s", err, bad)
				}
				note("From field %.100q has no address with a domain (%v)", v, err)
				continue
			}
			if bad != "" {
				note("From field %.100q: %s", v, bad)
			}
			for _, d := range found {
				if !add(d) {
					break fields
				}
			}
			continue
		}
		if len(addrs) == 0 {
			note("From field %.100q has no address", v)
			continue
		}
		for _, addr := range addrs {
			i := strings.LastIndexByte(addr.Address, '@')
			d, err := domainOf(addr.Address[i+1:])
			if i < 0 || err != nil {
				note("From address %.100q has no usable domain", addr.Address)
				continue
			}
			if !add(d) {
				break fields
			}
		}
	}
	a.problem = strings.Join(problems, "; ")
	return a
}

// domainOf normalises a From domain: one trailing root dot is dropped
// (ceo@example.test. is example.test) and case is folded. An
// internationalized domain written in UTF-8 (SMTPUTF8 mail) becomes its
// A-label form (exämple.test is xn--exmple-cua.test), where its policy is
// published and as DKIM's d= names it (RFC 8616), by IDNA2008 with UTS #46
// mapping as for a lookup (pkg/maildomain); one that does not
// convert is an error. So is a name that cannot be a host name: address
// literals, empty labels, labels over 63 octets, names over 253,
// characters other than letters, digits, '-' and '_'.
func domainOf(d string) (string, error) {
	d, err := maildomain.Canonical(strings.TrimSpace(d))
	if err != nil {
		return "", fmt.Errorf("domain %.100q is not a valid internationalized domain name: %w", d, err)
	}
	switch {
	case d == "":
		return "", fmt.Errorf("empty domain")
	case len(d) > 253:
		return "", fmt.Errorf("domain of %d octets, more than 253", len(d))
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("domain %.100q: label of %d octets", d, len(label))
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return "", fmt.Errorf("domain %.100q: %q is not a host name character", d, c)
			}
		}
	}
	return d, nil
}

// lenientAt finds each "@" and what follows it up to a delimiter.
var lenientAt = regexp.MustCompile(`@([^\s<>@,;:"()\[\]\\]*)`)

// lenientDomains returns the distinct usable domains after every "@" of a
// From value net/mail refuses, and, when some "@" is not followed by a
// usable domain, why.
func lenientDomains(v string) (found []string, bad string) {
	for _, m := range lenientAt.FindAllStringSubmatch(v, -1) {
		d, err := domainOf(m[1])
		if err != nil {
			if bad == "" {
				bad = err.Error()
			}
			continue
		}
		if !contains(found, d) {
			found = append(found, d)
		}
	}
	return found, bad
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
