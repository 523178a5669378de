package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elemta/elemta/pkg/canon"
	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/registry"
)

// The verifier below replaces go-msgauth's dkim.Verify, which the plugin
// used before: go-msgauth reads the message again through bufio and
// textproto, copies the body through a CRLF fixer and a byte-at-a-time
// canonicalizer (an append per byte, a copy of every write), verifies
// several signatures in goroutines joined by pipes, and parses the key
// record on every call. This one works on the message the host already
// parsed: header fields from registry.Message, the body hashed once per
// body canonicalization with pkg/canon's streaming canonicalizer, key
// records parsed once per text (dkimkey.Cache). It keeps go-msgauth's
// checks, their order and their wording (results name the same reasons),
// which FuzzVerifyMatchesGoMsgauth holds it to. go-msgauth still signs:
// signing runs once per outgoing message, and there it is the best tool.

// The three kinds of failure of one signature, worded as go-msgauth words
// them.
type (
	permFail string // permerror: the signature or key cannot be used
	tempFail string // temperror: the key could not be fetched now
	sigFail  string // fail: the signature does not verify
)

func (e permFail) Error() string { return "dkim: " + string(e) }
func (e tempFail) Error() string { return "dkim: " + string(e) }
func (e sigFail) Error() string  { return "dkim: " + string(e) }

// verification is the outcome of one DKIM-Signature field: Err is nil for
// a pass.
type verification struct {
	Domain string
	Err    error
}

var requiredTags = []string{"v", "a", "b", "bh", "d", "h", "s"}

// msgVerifier checks the signatures of one message.
type msgVerifier struct {
	p        *Plugin
	msg      *registry.Message
	bodyHash map[canon.Algorithm][]byte // computed once per body canonicalization
}

// verifyFields checks the first max_signatures of fields, the
// DKIM-Signature fields of msg in header order.
func (p *Plugin) verifyFields(ctx context.Context, msg *registry.Message, fields []registry.HeaderField) []verification {
	v := &msgVerifier{p: p, msg: msg}
	out := make([]verification, min(len(fields), p.cfg.MaxSignatures))
	for i := range out {
		out[i] = v.verify(ctx, fields[i])
	}
	return out
}

func (v *msgVerifier) verify(ctx context.Context, field registry.HeaderField) (res verification) {
	tags, err := parseSigTags(field.Value)
	if err != nil {
		return verification{Err: permFail("malformed signature tags: " + err.Error())}
	}
	if tags["v"] != "1" {
		return verification{Err: permFail("incompatible signature version")}
	}
	res.Domain = stripWhitespace(tags["d"])
	fail := func(err error) verification { res.Err = err; return res }
	for _, t := range requiredTags {
		if _, ok := tags[t]; !ok {
			return fail(permFail("signature missing required tag"))
		}
	}
	if i, ok := tags["i"]; ok {
		id := stripWhitespace(i)
		if !strings.HasSuffix(id, "@"+res.Domain) && !strings.HasSuffix(id, "."+res.Domain) {
			return fail(permFail("domain mismatch"))
		}
	}
	headerKeys := parseTagList(tags["h"])
	if !containsFold(headerKeys, "from") {
		return fail(permFail("From field not signed"))
	}
	if t, ok := tags["t"]; ok {
		if _, err := parseTime(t); err != nil {
			return fail(permFail("malformed time: " + err.Error()))
		}
	}
	if x, ok := tags["x"]; ok {
		exp, err := parseTime(x)
		if err != nil {
			return fail(permFail("malformed expiration time: " + err.Error()))
		}
		if v.p.clock.Now().After(exp) {
			return fail(permFail("signature has expired"))
		}
	}
	methods := []string{"dns/txt"}
	if q, ok := tags["q"]; ok {
		methods = parseTagList(q)
	}
	if !contains(methods, "dns/txt") {
		return fail(permFail("unsupported public key query method"))
	}
	key, err := v.key(ctx, res.Domain, stripWhitespace(tags["s"]))
	if err != nil {
		return fail(err)
	}
	keyAlgo, hashAlgo, ok := strings.Cut(stripWhitespace(tags["a"]), "-")
	if !ok {
		return fail(permFail("malformed algorithm name"))
	}
	if key.Hashes != nil && !contains(key.Hashes, hashAlgo) {
		return fail(permFail("inappropriate hash algorithm"))
	}
	switch hashAlgo {
	case "sha1": // RFC 8301 §3.1: rsa-sha1 must not be used for verifying
		return fail(permFail("hash algorithm too weak: " + hashAlgo))
	case "sha256":
	default:
		return fail(permFail("unsupported hash algorithm"))
	}
	if key.KeyType != keyAlgo {
		return fail(permFail("inappropriate key algorithm"))
	}
	headerCan, bodyCan, err := parseSigCanonicalization(tags["c"])
	if err != nil {
		return fail(err)
	}
	if _, ok := tags["l"]; ok {
		// A body length leaves the rest of the body unsigned: refused, as go-msgauth does.
		return fail(sigFail("message contains an insecure body length tag"))
	}
	bodyHashed, err := base64.StdEncoding.DecodeString(stripWhitespace(tags["bh"]))
	if err != nil {
		return fail(permFail("malformed body hash: " + err.Error()))
	}
	sig, err := base64.StdEncoding.DecodeString(stripWhitespace(tags["b"]))
	if err != nil {
		return fail(permFail("malformed signature: " + err.Error()))
	}
	if subtle.ConstantTimeCompare(v.body(bodyCan), bodyHashed) != 1 {
		return fail(sigFail("body hash did not verify"))
	}
	hashed := v.headerHash(headerCan, headerKeys, field)
	if err := verifySig(key, hashed, sig); err != nil {
		return fail(sigFail("signature did not verify: " + err.Error()))
	}
	return res
}

// key fetches the key record of selector s at domain d under ctx and
// parses it through the plugin's cache.
func (v *msgVerifier) key(ctx context.Context, d, s string) (*dkimkey.PublicKey, error) {
	name := s + "._domainkey." + d
	txts, err := v.p.lookupTXT(ctx)(name)
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Temporary(): //nolint:staticcheck // what go-msgauth and DNS errors tell apart
		return nil, tempFail("key unavailable: " + err.Error())
	case err != nil:
		return nil, permFail("no key for signature: " + err.Error())
	}
	switch len(txts) {
	case 0:
		return nil, permFail("no valid key found")
	case 1:
	default: // RFC 6376 §3.6.2.2: undefined, so refused
		return nil, permFail("multiple TXT records found for key")
	}
	k, err := v.p.keys.Parse(txts[0])
	if err != nil {
		return nil, permFail(strings.TrimPrefix(err.Error(), dkimkey.ErrMalformed.Error()+": "))
	}
	return k, nil
}

// body returns the SHA-256 of the message body under body canonicalization
// a, hashing it the first time only.
func (v *msgVerifier) body(a canon.Algorithm) []byte {
	if h, ok := v.bodyHash[a]; ok {
		return h
	}
	h := sha256.New()
	_ = canon.Body(h, a, v.msg.Body()) // a hash never fails
	sum := h.Sum(nil)
	if v.bodyHash == nil {
		v.bodyHash = map[canon.Algorithm][]byte{}
	}
	v.bodyHash[a] = sum
	return sum
}

// headerHash hashes the signed header fields, each picked from the bottom
// of the header up (RFC 6376 §5.4.2; a name listed more often than present
// contributes nothing the extra times), then the signature field itself
// with its b= value taken out and no final line end.
func (v *msgVerifier) headerHash(a canon.Algorithm, keys []string, sigField registry.HeaderField) []byte {
	buf := headerBufs.Get().(*[]byte)
	data := (*buf)[:0]
	picked := map[string]int{}
	for _, k := range keys {
		if f, ok := pick(v.msg.Header, k, picked); ok {
			data = canon.AppendHeader(data, a, f.Raw)
		}
	}
	data = bytes.TrimRight(canon.AppendHeader(data, a, canon.StripB(sigField.Raw)), "\r\n")
	sum := sha256.Sum256(data)
	if cap(data) <= maxPooledHeader {
		*buf = data
		headerBufs.Put(buf)
	}
	return sum[:]
}

// headerBufs holds the buffers signed header fields are canonicalized
// into; one larger than maxPooledHeader (a hostile header) is dropped.
var headerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const maxPooledHeader = 64 << 10

func verifySig(key *dkimkey.PublicKey, hashed, sig []byte) error {
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, hashed, sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, hashed, sig) {
			return errors.New("dkim: invalid Ed25519 signature")
		}
		return nil
	}
	return fmt.Errorf("unsupported key %T", key.Key)
}

// pick returns the field called name that comes next from the bottom of
// h, counting the ones picked already.
func pick(h registry.Header, name string, picked map[string]int) (registry.HeaderField, bool) {
	key := strings.ToLower(name)
	skip := picked[key]
	for i := len(h) - 1; i >= 0; i-- {
		if strings.EqualFold(strings.TrimSpace(h[i].Name), name) {
			if skip == 0 {
				picked[key]++
				return h[i], true
			}
			skip--
		}
	}
	return registry.HeaderField{}, false
}

// parseSigTags parses a tag list as go-msgauth does: an entry without '='
// that is not blank, or a tag given twice, is an error; values are trimmed.
func parseSigTags(s string) (map[string]string, error) {
	tags := make(map[string]string, 12)
	for len(s) > 0 {
		var part string
		part, s, _ = strings.Cut(s, ";")
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			if strings.TrimSpace(part) == "" {
				continue
			}
			return nil, errors.New("dkim: malformed header params")
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; dup {
			return nil, errors.New("dkim: duplicate tag name")
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags, nil
}

// parseSigCanonicalization reads c= as go-msgauth does: "header/body",
// each simple or relaxed, exactly so written; missing parts are simple.
func parseSigCanonicalization(c string) (header, body canon.Algorithm, err error) {
	h, b, _ := strings.Cut(stripWhitespace(c), "/")
	header, body = canon.Simple, canon.Simple
	if h != "" {
		header = canon.Algorithm(h)
	}
	if b != "" {
		body = canon.Algorithm(b)
	}
	if header != canon.Simple && header != canon.Relaxed {
		return "", "", permFail("unsupported header canonicalization algorithm")
	}
	if body != canon.Simple && body != canon.Relaxed {
		return "", "", permFail("unsupported body canonicalization algorithm")
	}
	return header, body, nil
}

func parseTagList(s string) []string {
	list := strings.Split(s, ":")
	for i, t := range list {
		list[i] = stripWhitespace(t)
	}
	return list
}

func parseTime(s string) (time.Time, error) {
	sec, err := strconv.ParseInt(stripWhitespace(s), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, 0), nil
}

// stripWhitespace removes every white-space character (tag values may be
// folded anywhere, RFC 6376 §3.2).
func stripWhitespace(s string) string {
	if strings.IndexAny(s, " \t\r\n\v\f") < 0 && isASCII(s) {
		return s // the common case: nothing to remove, no copy
	}
	return strings.Join(strings.Fields(s), "")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
