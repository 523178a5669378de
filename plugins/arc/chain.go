package arc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/elemta/elemta/pkg/canon"
	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// Header field names of an ARC set (RFC 8617 §4.1).
const (
	hdrSeal = "ARC-Seal"
	hdrAMS  = "ARC-Message-Signature"
	hdrAAR  = "ARC-Authentication-Results"
)

// MaxInstances is RFC 8617 §4.2.1's limit on ARC sets.
const MaxInstances = 50

// arcSet is one instance's three header fields, as received.
type arcSet struct {
	instance  int
	seal, ams registry.HeaderField
	aar       registry.HeaderField
	sealTags  map[string]string
	amsTags   map[string]string
}

// chainError is a reason for chain validation to fail (cv=fail).
type chainError struct{ reason string }

func (e *chainError) Error() string { return e.reason }

func failf(format string, args ...any) error { return &chainError{fmt.Sprintf(format, args...)} }

// tempError is a temporary failure (DNS): the chain is neither pass nor fail.
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

// parseTagList parses an RFC 6376 §3.2 tag list strictly: tag names are
// ALPHA *(ALPHA / DIGIT / "_"), case-sensitive, each at most once; a
// trailing ";" is allowed, an empty tag-spec elsewhere is not. Values keep
// their inner folding white space.
func parseTagList(v string) (map[string]string, error) {
	tags := map[string]string{}
	parts := strings.Split(v, ";")
	for i, part := range parts {
		if strings.TrimSpace(part) == "" {
			if i == len(parts)-1 && i > 0 {
				break // trailing semicolon
			}
			return nil, errors.New("empty tag")
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q has no \"=\"", strings.TrimSpace(part))
		}
		name = strings.Trim(name, " \t\r\n")
		if !validTagName(name) {
			return nil, fmt.Errorf("invalid tag name %q", name)
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("tag %q appears twice", name)
		}
		tags[name] = strings.Trim(value, " \t\r\n")
	}
	return tags, nil
}

func validTagName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// noWSP removes all white space (base64 values may be folded).
func noWSP(s string) string { return strings.Join(strings.Fields(s), "") }

// parseInstance parses an i= value: a decimal 1..MaxInstances.
func parseInstance(v string) (int, error) {
	if v == "" || len(v) > 2 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("invalid instance i=%q", v)
	}
	n, _ := strconv.Atoi(v)
	if n < 1 || n > MaxInstances {
		return 0, fmt.Errorf("instance i=%d out of range 1..%d", n, MaxInstances)
	}
	return n, nil
}

// fieldValue returns the raw value of a header field: the bytes after the
// first colon, line end included.
func fieldValue(f registry.HeaderField) string {
	_, v, _ := bytes.Cut(f.Raw, []byte(":"))
	return string(v)
}

// collectSets parses the ARC header fields of h into sets ordered by
// instance. It returns nil, nil when there are none, and a chainError for
// structural problems (RFC 8617 §5.2 step 3 and §4.1).
func collectSets(h registry.Header, maxInstances int) ([]*arcSet, error) {
	byInstance := map[int]*arcSet{}
	get := func(i int) *arcSet {
		if byInstance[i] == nil {
			byInstance[i] = &arcSet{instance: i}
		}
		return byInstance[i]
	}
	seen := map[string]bool{}
	total := 0
	for _, f := range h {
		var kind string
		switch {
		case strings.EqualFold(f.Name, hdrSeal):
			kind = hdrSeal
		case strings.EqualFold(f.Name, hdrAMS):
			kind = hdrAMS
		case strings.EqualFold(f.Name, hdrAAR):
			kind = hdrAAR
		default:
			continue
		}
		total++
		var (
			inst int
			tags map[string]string
			err  error
		)
		if kind == hdrAAR {
			inst, err = aarInstance(fieldValue(f))
		} else {
			tags, err = parseTagList(fieldValue(f))
			if err == nil {
				inst, err = parseInstance(tags["i"])
			}
		}
		if err != nil {
			return nil, failf("%s: %v", kind, err)
		}
		key := kind + "/" + strconv.Itoa(inst)
		if seen[key] {
			return nil, failf("%s: instance %d appears twice", kind, inst)
		}
		seen[key] = true
		s := get(inst)
		switch kind {
		case hdrSeal:
			s.seal, s.sealTags = f, tags
		case hdrAMS:
			s.ams, s.amsTags = f, tags
		case hdrAAR:
			s.aar = f
		}
	}
	if total == 0 {
		return nil, nil
	}
	n := len(byInstance)
	if n > maxInstances {
		return nil, failf("%d ARC sets, more than the limit of %d", n, maxInstances)
	}
	sets := make([]*arcSet, n)
	for i := 1; i <= n; i++ {
		s, ok := byInstance[i]
		if !ok {
			return nil, failf("ARC instances are not 1..%d without gaps (instance %d missing)", n, i)
		}
		for name, present := range map[string]bool{hdrSeal: s.seal.Raw != nil, hdrAMS: s.ams.Raw != nil, hdrAAR: s.aar.Raw != nil} {
			if !present {
				return nil, failf("ARC set %d has no %s", i, name)
			}
		}
		sets[i-1] = s
	}
	return sets, nil
}

// aarInstance reads the "i=N;" that must open an ARC-Authentication-Results
// value (RFC 8617 §4.1.1).
func aarInstance(v string) (int, error) {
	v = strings.TrimLeft(v, " \t\r\n")
	if !strings.HasPrefix(v, "i") {
		return 0, errors.New("value does not start with i=")
	}
	v = strings.TrimLeft(v[1:], " \t\r\n")
	if !strings.HasPrefix(v, "=") {
		return 0, errors.New("value does not start with i=")
	}
	num, _, ok := strings.Cut(v[1:], ";")
	if !ok {
		return 0, errors.New("no \";\" after i=")
	}
	return parseInstance(strings.Trim(num, " \t\r\n"))
}

// verifier checks signatures of one message.
type verifier struct {
	resolver registry.Resolver
	msg      *registry.Message
	bodyHash map[canon.Algorithm][]byte
	keys     map[string]*dkimkey.PublicKey
}

func newVerifier(r registry.Resolver, m *registry.Message) *verifier {
	return &verifier{resolver: r, msg: m, bodyHash: map[canon.Algorithm][]byte{}, keys: map[string]*dkimkey.PublicKey{}}
}

// key fetches and parses the key record for selector s of domain d.
func (v *verifier) key(ctx context.Context, d, s string) (*dkimkey.PublicKey, error) {
	name := s + "._domainkey." + d
	if k, ok := v.keys[name]; ok {
		return k, nil
	}
	txts, err := v.resolver.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, failf("no key record at %s", name)
		}
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return nil, &tempError{fmt.Errorf("lookup %s: %w", name, err)}
	}
	if len(txts) != 1 {
		return nil, failf("%d key records at %s, want 1", len(txts), name)
	}
	k, err := dkimkey.ParseRecord(txts[0])
	if err != nil {
		return nil, failf("key record at %s: %v", name, err)
	}
	v.keys[name] = k
	return k, nil
}

func (v *verifier) body(a canon.Algorithm) []byte {
	if h, ok := v.bodyHash[a]; ok {
		return h
	}
	h := bodyHash(a, v.msg.Body())
	v.bodyHash[a] = h
	return h
}

// checkCommon validates a= d= s= b= of a seal or AMS and returns a and the
// decoded signature.
func checkCommon(kind string, tags map[string]string) (algo string, sig []byte, err error) {
	for _, t := range []string{"a", "b", "d", "s"} {
		if strings.TrimSpace(tags[t]) == "" {
			return "", nil, failf("%s: missing or empty %s=", kind, t)
		}
	}
	algo = tags["a"]
	if algo != "rsa-sha256" && algo != "ed25519-sha256" {
		return "", nil, failf("%s: unsupported algorithm a=%s", kind, algo)
	}
	sig, err = base64.StdEncoding.DecodeString(noWSP(tags["b"]))
	if err != nil {
		return "", nil, failf("%s: b= is not base64", kind)
	}
	if t, ok := tags["t"]; ok && (t == "" || strings.TrimLeft(t, "0123456789") != "") {
		return "", nil, failf("%s: invalid t=%q", kind, t)
	}
	if !validDomain(tags["d"]) {
		return "", nil, failf("%s: invalid d=%q", kind, tags["d"])
	}
	return algo, sig, nil
}

func validDomain(d string) bool {
	if d == "" || strings.ContainsAny(d, " \t\r\n;@") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
	}
	return true
}

// verifyAMS checks one ARC-Message-Signature (RFC 8617 §4.1.2, like DKIM).
func (v *verifier) verifyAMS(ctx context.Context, s *arcSet) error {
	tags := s.amsTags
	algo, sig, err := checkCommon(hdrAMS, tags)
	if err != nil {
		return err
	}
	if strings.TrimSpace(tags["bh"]) == "" || strings.TrimSpace(tags["h"]) == "" {
		return failf("AMS %d: missing bh= or h=", s.instance)
	}
	hc, bc, err := canon.Parse(tags["c"])
	if err != nil {
		return failf("AMS %d: %v", s.instance, err)
	}
	names := strings.Split(tags["h"], ":")
	for i, n := range names {
		names[i] = strings.Trim(n, " \t\r\n")
		if strings.EqualFold(names[i], hdrSeal) {
			return failf("AMS %d: h= includes ARC-Seal", s.instance)
		}
		if names[i] == "" {
			return failf("AMS %d: empty name in h=", s.instance)
		}
	}
	bh, err := base64.StdEncoding.DecodeString(noWSP(tags["bh"]))
	if err != nil {
		return failf("AMS %d: bh= is not base64", s.instance)
	}
	if !bytes.Equal(bh, v.body(bc)) {
		return failf("AMS %d: body hash did not verify", s.instance)
	}
	var data []byte
	picked := map[string]int{}
	for _, n := range names {
		if f, ok := pick(v.msg.Header, n, picked); ok {
			data = append(data, canon.Header(hc, f.Raw)...)
		}
	}
	data = append(data, bytes.TrimSuffix(canon.Header(hc, canon.StripB(s.ams.Raw)), []byte("\r\n"))...)
	k, err := v.key(ctx, tags["d"], tags["s"])
	if err != nil {
		return err
	}
	if err := k.Verify(algo, dkimkey.SHA256(data), sig); err != nil {
		return failf("AMS %d: signature did not verify: %v", s.instance, err)
	}
	return nil
}

// verifySeal checks the ARC-Seal of sets[n-1] over sets 1..n (RFC 8617 §5.1.1).
func (v *verifier) verifySeal(ctx context.Context, sets []*arcSet, n int) error {
	s := sets[n-1]
	algo, sig, err := checkCommon(hdrSeal, s.sealTags)
	if err != nil {
		return err
	}
	if _, ok := s.sealTags["h"]; ok {
		return failf("AS %d: h= is not allowed in an ARC-Seal", n)
	}
	earlier := sets[:n-1]
	if s.sealTags["cv"] == "fail" {
		earlier = nil // RFC 8617 §5.1.2: a cv=fail seal covers only its own set
	}
	data := sealData(earlier, s.aar.Raw, s.ams.Raw, canon.StripB(s.seal.Raw))
	k, err := v.key(ctx, s.sealTags["d"], s.sealTags["s"])
	if err != nil {
		return err
	}
	if err := k.Verify(algo, dkimkey.SHA256(data), sig); err != nil {
		return failf("AS %d: signature did not verify: %v", n, err)
	}
	return nil
}

// sealData is what an ARC-Seal signs: every earlier set's AAR, AMS and AS,
// then this set's, relaxed, the last one (b= empty) without its CRLF.
func sealData(earlier []*arcSet, aar, ams, sealNoB []byte) []byte {
	var data []byte
	for _, e := range earlier {
		data = append(data, canon.Header(canon.Relaxed, e.aar.Raw)...)
		data = append(data, canon.Header(canon.Relaxed, e.ams.Raw)...)
		data = append(data, canon.Header(canon.Relaxed, e.seal.Raw)...)
	}
	data = append(data, canon.Header(canon.Relaxed, aar)...)
	data = append(data, canon.Header(canon.Relaxed, ams)...)
	return append(data, bytes.TrimSuffix(canon.Header(canon.Relaxed, sealNoB), []byte("\r\n"))...)
}

// pick returns the next instance of name from the bottom of the header, as
// DKIM's h= selection does (RFC 6376 §5.4.2).
func pick(h registry.Header, name string, picked map[string]int) (registry.HeaderField, bool) {
	key := strings.ToLower(name)
	skip := picked[key]
	for i := len(h) - 1; i >= 0; i-- {
		if strings.EqualFold(h[i].Name, name) {
			if skip == 0 {
				picked[key]++
				return h[i], true
			}
			skip--
		}
	}
	return registry.HeaderField{}, false
}

// validate runs RFC 8617 §5.2 on msg.
func validate(ctx context.Context, r registry.Resolver, msg *registry.Message, maxInstances int) *registry.ARCResult {
	sets, err := collectSets(msg.Header, maxInstances)
	if err != nil {
		return &registry.ARCResult{Result: registry.AuthFail, Reason: err.Error()}
	}
	if len(sets) == 0 {
		return &registry.ARCResult{Result: registry.AuthNone}
	}
	n := len(sets)
	res := &registry.ARCResult{Instances: n}
	fail := func(err error) *registry.ARCResult {
		res.Result, res.Reason = registry.AuthFail, err.Error()
		var te *tempError
		if errors.As(err, &te) {
			res.Result = registry.AuthTempError
		}
		return res
	}
	// Step 2: a chain that already failed stays failed.
	for _, s := range sets {
		cv, ok := s.sealTags["cv"]
		switch {
		case !ok || cv == "":
			return fail(failf("AS %d: missing cv=", s.instance))
		case cv != "none" && cv != "pass" && cv != "fail":
			return fail(failf("AS %d: invalid cv=%s", s.instance, cv))
		}
	}
	if cv := sets[n-1].sealTags["cv"]; cv == "fail" {
		return fail(failf("AS %d says cv=fail: the chain failed before us", n))
	}
	// Step 3: cv= of each seal is none for instance 1 and pass after it.
	for _, s := range sets {
		want := "pass"
		if s.instance == 1 {
			want = "none"
		}
		if s.sealTags["cv"] != want {
			return fail(failf("AS %d has cv=%s, want %s", s.instance, s.sealTags["cv"], want))
		}
	}
	v := newVerifier(r, msg)
	// Step 4: the most recent AMS.
	if err := v.verifyAMS(ctx, sets[n-1]); err != nil {
		return fail(err)
	}
	// Step 6: every seal, newest first.
	for i := n; i >= 1; i-- {
		if err := v.verifySeal(ctx, sets, i); err != nil {
			return fail(err)
		}
	}
	// Step 5: the oldest AMS that still validates.
	res.OldestPass = n
	for i := n - 1; i >= 1; i-- {
		if v.verifyAMS(ctx, sets[i-1]) != nil {
			break
		}
		res.OldestPass = i
	}
	res.Result = registry.AuthPass
	return res
}

// bodyHash returns the SHA-256 of body's canonical form under a, streamed
// into the hash (no copy of the body).
func bodyHash(a canon.Algorithm, body []byte) []byte {
	h := sha256.New()
	_ = canon.Body(h, a, body) // a hash never fails
	return h.Sum(nil)
}
