package contentfilter

import (
	"fmt"
	"mime"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// nameParams returns every file name a mail client might show for a part
// whose header field (Content-Disposition or Content-Type) is v, reading
// the parameter named param ("filename" or "name"): each plain value, as
// written and RFC 2047-decoded, each RFC 2231 extended value and each
// reassembled RFC 2231 continuation. Clients differ in which of repeated or
// disagreeing values they take, so the rules see all of them. problems
// describes what makes the names ambiguous: a repeated parameter, a
// continuation that disagrees with the plain value.
func nameParams(v, param string) (names []string, problems []string) {
	_, rest, _ := strings.Cut(v, ";")
	var plain, extended []string
	conts := map[int]string{} // section number -> "k=v" as written
	count := map[string]int{}
	for _, p := range splitParams(rest) {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		base, section, _ := strings.Cut(k, "*")
		if base != param {
			continue
		}
		count[k]++
		switch {
		case !strings.Contains(k, "*"):
			plain = append(plain, unquote(val))
		case section == "": // filename*=charset'lang'value
			if _, ps, err := mime.ParseMediaType("x/x; " + k + "=" + val); err == nil {
				extended = append(extended, ps[param])
			} else {
				problems = append(problems, fmt.Sprintf("%s=%s does not decode: %v", k, val, err))
			}
		default: // filename*0=..., filename*1*=...
			n, err := strconv.Atoi(strings.TrimSuffix(section, "*"))
			if err != nil || n < 0 || n > 999 {
				problems = append(problems, fmt.Sprintf("parameter %s is not an RFC 2231 section", k))
				continue
			}
			if _, dup := conts[n]; !dup {
				conts[n] = k + "=" + val
			}
		}
	}
	for k, n := range count {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("parameter %s appears %d times", k, n))
		}
	}
	if len(conts) > 0 {
		keys := make([]int, 0, len(conts))
		for n := range conts {
			keys = append(keys, n)
		}
		sort.Ints(keys)
		var ps []string
		for i, n := range keys {
			if n != i {
				problems = append(problems, fmt.Sprintf("RFC 2231 sections of %s skip from %d to %d", param, i-1, n))
				break
			}
			ps = append(ps, conts[n])
		}
		if _, m, err := mime.ParseMediaType("x/x; " + strings.Join(ps, "; ")); err == nil && m[param] != "" {
			extended = append(extended, m[param])
		} else if err != nil {
			problems = append(problems, fmt.Sprintf("RFC 2231 sections of %s do not decode: %v", param, err))
		}
	}
	seen := map[string]bool{}
	addName := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, n := range plain {
		addName(n)
		if d, err := wordDecoder.DecodeHeader(n); err == nil {
			addName(d)
		}
	}
	for _, n := range extended {
		addName(n)
	}
	return names, problems
}

// unquote undoes a quoted-string (RFC 2045): the quotes and backslash
// escapes. An unbalanced quote is kept as written.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// distinct reports whether names holds more than one name once the
// differences no client shows are ignored: RFC 2047 encoding of the same
// text is already folded by nameParams.
func distinct(names []string) bool {
	for _, n := range names[min(1, len(names)):] {
		if n != names[0] {
			return true
		}
	}
	return false
}

// hiddenChars reports control and bidirectional-formatting characters in a
// name: "invoice\u202Efdp.exe" is shown as "invoiceexe.pdf".
func hiddenChars(name string) string {
	var found []string
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u200b' || r == '\ufeff' {
			found = append(found, fmt.Sprintf("%U", r))
		}
	}
	return strings.Join(found, " ")
}

// extOf returns the lower-case extension of a file name as Windows sees
// it: after the last dot of the last path element, trailing dots and
// spaces dropped ("a.exe. " runs as a.exe).
func extOf(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimRight(name, ". ")
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	return strings.ToLower(name[i:])
}
