package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalidRecord wraps every syntax error found by validateRecord.
var ErrInvalidRecord = errors.New("invalid SPF record")

// validateRecord checks a whole SPF record against the ABNF of RFC 7208
// §12 before it is evaluated. The library evaluates terms left to right and
// stops at the first match, so without this a syntax error after a
// matching term would go unnoticed; §4.6 requires a permerror for it. It
// also enforces what the library does not: the domain-spec grammar (a
// toplabel that is not all digits, §7.1), cidr lengths without leading
// zeros, printable US-ASCII only, and at most one redirect and one exp.
func validateRecord(rec string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(rec); i++ {
		if c := rec[i]; c != ' ' && (c < 0x21 || c > 0x7e) {
			return fail("character 0x%02x at offset %d is not printable US-ASCII", c, i)
		}
	}
	terms := strings.Split(rec, " ")
	if !strings.EqualFold(terms[0], "v=spf1") {
		return fail("does not start with v=spf1")
	}
	var redirects, exps int
	for _, term := range terms[1:] {
		if term == "" {
			continue
		}
		name, value, isMod := cutModifier(term)
		if isMod {
			switch strings.ToLower(name) {
			case "redirect":
				redirects++
				if err := domainSpec(value); err != nil {
					return fail("redirect=%s: %v", value, err)
				}
			case "exp":
				exps++
				if err := domainSpec(value); err != nil {
					return fail("exp=%s: %v", value, err)
				}
			default:
				if err := macroString(value); err != nil {
					return fail("%s: %v", term, err)
				}
			}
			continue
		}
		if err := directive(term); err != nil {
			return fail("%s: %v", term, err)
		}
	}
	if redirects > 1 || exps > 1 {
		return fail("more than one redirect or exp modifier")
	}
	return nil
}

// cutModifier splits name=value when term is a modifier: name = ALPHA
// *( ALPHA / DIGIT / "-" / "_" / "." ) followed by "=".
func cutModifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 || !isAlpha(term[0]) {
		return "", "", false
	}
	for j := 1; j < i; j++ {
		c := term[j]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return term[:i], term[i+1:], true
}

func directive(term string) error {
	if strings.ContainsRune("+-~?", rune(term[0])) {
		term = term[1:]
	}
	name, arg, hasArg := strings.Cut(term, ":")
	lname := strings.ToLower(name)
	// a and mx may take a cidr suffix without a domain ("a/24").
	if !hasArg {
		if base, cidr, ok := strings.Cut(lname, "/"); ok && (base == "a" || base == "mx") {
			return dualCIDR("/" + cidr)
		}
	}
	switch lname {
	case "all":
		if hasArg {
			return errors.New("all takes no argument")
		}
	case "include", "exists":
		if !hasArg {
			return fmt.Errorf("%s needs a domain", lname)
		}
		return domainSpec(arg)
	case "a", "mx":
		if !hasArg {
			return nil
		}
		spec, cidr := splitCIDR(arg)
		if err := dualCIDR(cidr); err != nil {
			return err
		}
		return domainSpec(spec)
	case "ptr":
		if hasArg {
			return domainSpec(arg)
		}
	case "ip4", "ip6":
		if !hasArg {
			return fmt.Errorf("%s needs an address", lname)
		}
		addr, length, hasLen := strings.Cut(arg, "/")
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Is4() != (lname == "ip4") || a.Zone() != "" {
			return fmt.Errorf("invalid %s address %q", lname, addr)
		}
		if hasLen {
			maxLen := 32
			if lname == "ip6" {
				maxLen = 128
			}
			return cidrLength(length, maxLen)
		}
	default:
		return errors.New("unknown mechanism")
	}
	return nil
}

// splitCIDR splits a trailing dual-cidr-length ("/24", "//64", "/24//64")
// off a domain-spec.
func splitCIDR(arg string) (spec, cidr string) {
	end := len(arg)
	for range 2 {
		i := strings.LastIndexByte(arg[:end], '/')
		if i < 0 || i+1 >= end || !allDigits(arg[i+1:end]) {
			break
		}
		end = i
		if end > 0 && arg[end-1] == '/' {
			end--
		}
	}
	return arg[:end], arg[end:]
}

// dualCIDR checks [ ip4-cidr-length ] [ "/" ip6-cidr-length ].
func dualCIDR(s string) error {
	if s == "" {
		return nil
	}
	v4, v6, _ := strings.Cut(s, "//")
	if v4 != "" {
		if err := cidrLength(strings.TrimPrefix(v4, "/"), 32); err != nil {
			return err
		}
	}
	if strings.Contains(s, "//") {
		return cidrLength(v6, 128)
	}
	return nil
}

// cidrLength checks "0" / %x31-39 0*2DIGIT, at most maxLen.
func cidrLength(s string, maxLen int) error {
	if s == "" || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("invalid cidr length %q", s)
	}
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
		if n > maxLen {
			return fmt.Errorf("cidr length %s is more than %d", s, maxLen)
		}
	}
	return nil
}

// domainSpec checks domain-spec = macro-string domain-end, where
// domain-end = ( "." toplabel [ "." ] ) / macro-expand.
func domainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain-spec")
	}
	if err := macroString(s); err != nil {
		return err
	}
	if strings.HasSuffix(s, "}") || strings.HasSuffix(s, "%%") || strings.HasSuffix(s, "%_") || strings.HasSuffix(s, "%-") {
		return nil // ends with a macro-expand
	}
	t := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(t, '.')
	if i < 0 {
		return fmt.Errorf("%q does not end in a dot and a top label", s)
	}
	top := t[i+1:]
	if top == "" || allDigits(top) || top[0] == '-' || top[len(top)-1] == '-' {
		return fmt.Errorf("invalid top label %q", top)
	}
	for j := 0; j < len(top); j++ {
		if c := top[j]; !isAlpha(c) && !isDigit(c) && c != '-' {
			return fmt.Errorf("invalid top label %q", top)
		}
	}
	return nil
}

// macroString checks the macro-expands of a macro-string (the characters
// were checked for the whole record already). The letters c, r and t are
// allowed only in exp text (§7.2), never in the record.
func macroString(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 >= len(s) {
			return errors.New("lone % at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("invalid macro %%%c", s[i+1])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return errors.New("unterminated macro")
		}
		body := strings.ToLower(s[i+2 : i+end])
		if body == "" || !strings.ContainsRune("slodiphv", rune(body[0])) {
			return fmt.Errorf("invalid macro letter in %%{%s}", s[i+2:i+end])
		}
		rest := body[1:]
		for len(rest) > 0 && isDigit(rest[0]) {
			rest = rest[1:]
		}
		rest = strings.TrimPrefix(rest, "r")
		for _, c := range rest {
			if !strings.ContainsRune(".-+,/_=", c) {
				return fmt.Errorf("invalid macro delimiter in %%{%s}", s[i+2:i+end])
			}
		}
		i += end
	}
	return nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}
