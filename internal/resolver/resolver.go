// Package resolver is Elemta's DNS layer: one resolver per process, shared by
// every plugin through registry.Host.Resolver. It asks the configured
// nameservers directly (github.com/miekg/dns, so record TTLs are known),
// caches answers and negative answers for their TTL, coalesces identical
// questions in flight, and answers from a static zone file first.
//
// Its four lookups behave like *net.Resolver's, errors included (see
// errors.go), so blitiri.com.ar/go/spf and go-msgauth work on top of it.
package resolver

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEHops bounds CNAME chains (loops included).
const maxCNAMEHops = 8

// Options are the settings that do not come from the config file.
type Options struct {
	// Now is the clock for TTLs; default time.Now. Tests move it by hand.
	Now func() time.Time
	// ResolvConf is read for nameservers when Config.Servers is empty and
	// the resolver is not offline; default /etc/resolv.conf.
	ResolvConf string
}

// Resolver implements registry.Resolver. Safe for concurrent use.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	minTTL   time.Duration
	maxTTL   time.Duration
	negTTL   time.Duration
	offline  bool
	static   *staticZone
	cache    *cache
	now      func() time.Time

	mu    sync.Mutex
	calls map[cacheKey]*call // queries in flight

	testHookJoin func() // called when a caller joins a query in flight

	exchanges, coalesced, staticHits atomic.Uint64
	answers                          answerCounts
}

// New builds a resolver from the [dns] table. Zero fields take their
// defaults; with no servers configured it reads /etc/resolv.conf (or
// opts.ResolvConf), unless cfg.Offline is set.
func New(cfg Config, opts Options) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Resolver{
		timeout:  cfg.Timeout.D(),
		attempts: cfg.Attempts,
		minTTL:   cfg.MinTTL.D(),
		maxTTL:   cfg.MaxTTL.D(),
		negTTL:   cfg.NegativeTTL.D(),
		offline:  cfg.Offline,
		cache:    newCache(cfg.CacheSize),
		now:      opts.Now,
		calls:    make(map[cacheKey]*call),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if cfg.Static != "" {
		z, err := loadStatic(cfg.Static)
		if err != nil {
			return nil, err
		}
		r.static = z
	}
	if r.offline {
		return r, nil
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		path := opts.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		var err error
		if servers, err = readResolvConf(path); err != nil {
			return nil, err
		}
	}
	for _, s := range servers {
		addr, err := serverAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dns: servers: %w", err)
		}
		r.servers = append(r.servers, addr)
	}
	return r, nil
}

// readResolvConf returns the nameserver lines of a resolv.conf file.
func readResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: no servers configured and cannot read %s: %w", path, err)
	}
	defer f.Close()
	var servers []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			servers = append(servers, fields[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("dns: no servers configured and %s names no nameserver (set [dns] servers, or offline = true)", path)
	}
	return servers, nil
}

// Servers returns the nameservers in the order they are asked (host:port).
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Hits:      r.cache.hits.Load(),
		Misses:    r.cache.misses.Load(),
		Evictions: r.cache.evictions.Load(),
		Expired:   r.cache.expired.Load(),
		Entries:   r.cache.len(),
		Exchanges: r.exchanges.Load(),
		Coalesced: r.coalesced.Load(),
		Static:    r.staticHits.Load(),
		Questions: r.answers.questions.Load(),
		NotFound:  r.answers.notFound.Load(),
		Timeouts:  r.answers.timeouts.Load(),
		Failures:  r.answers.failures.Load(),
	}
}

// LookupTXT returns the TXT records of name, the strings of each record
// joined, as net.Resolver does.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, joinTXT(t.Txt))
		}
	}
	return out, nil
}

// LookupMX returns the MX records of name sorted by preference; hosts are
// fully qualified (trailing dot), as net.Resolver returns them.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host (A first, then
// AAAA; both asked at once). An IP literal is returned as it is. It fails
// only when neither lookup gives an address: with a temporary error if
// either failed temporarily, else with "not found".
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	type reply struct {
		rrs []dns.RR
		err error
	}
	aaaa := make(chan reply, 1)
	go func() {
		rrs, err := r.lookup(ctx, host, dns.TypeAAAA)
		aaaa <- reply{rrs, err}
	}()
	rrsA, errA := r.lookup(ctx, host, dns.TypeA)
	six := <-aaaa
	// The record slices belong to the cache: never append to them, and copy
	// the addresses so a caller changing its result cannot change the cache.
	var out []net.IPAddr
	for _, rrs := range [][]dns.RR{rrsA, six.rrs} {
		for _, rr := range rrs {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: slices.Clone(v.A)})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: slices.Clone(v.AAAA)})
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, err := range []error{errA, six.err} {
		if err != nil && !IsNotFound(err) {
			return nil, err
		}
	}
	if errA != nil {
		return nil, errA
	}
	if six.err != nil {
		return nil, six.err
	}
	return nil, notFoundError(host, "")
}

// LookupAddr returns the names (fully qualified) that addr, an IPv4 or IPv6
// address, maps back to.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.lookup(ctx, arpa, dns.TypePTR)
	if err != nil {
		if de, ok := err.(*net.DNSError); ok {
			cp := *de
			cp.Name = addr
			return nil, &cp
		}
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}

// Lookup returns the records of type qtype for name after following
// CNAMEs, for callers that need more than the four net.Resolver lookups.
// Errors are as for those.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	return r.lookup(ctx, name, qtype)
}

// lookup resolves name/qtype through the static zone, the cache and the
// network, following CNAMEs across all three (at most maxCNAMEHops). name
// is in presentation format (see canonicalName). The records returned are
// shared with the cache: read them, never modify them.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, err := r.lookupName(ctx, name, qtype)
	r.answers.count(err)
	return rrs, err
}

func (r *Resolver) lookupName(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	if err := ctx.Err(); err != nil {
		return nil, contextError(name, err)
	}
	qname, ok := canonicalName(name)
	if !ok {
		return nil, notFoundError(name, "") // net.Resolver: an invalid name is "no such host"
	}
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		if res, cname, ok := r.static.lookup(qname, qtype); ok {
			r.staticHits.Add(1)
			if cname != "" {
				qname = cname
				continue
			}
			return answerOf(name, res)
		}
		if r.offline || len(r.servers) == 0 {
			return nil, notFoundError(name, "")
		}
		res, err := r.resolve(ctx, name, qname, qtype)
		if err != nil {
			return nil, err
		}
		if res.cname != "" && res.rcode == dns.RcodeSuccess && len(res.rrs) == 0 {
			// The server gave a CNAME chain without chasing it to its end
			// (an authoritative server with the target elsewhere, or
			// unbound's local data): continue with the target.
			qname = res.cname
			continue
		}
		return answerOf(name, res)
	}
	return nil, &net.DNSError{Err: "too many CNAME hops", Name: name}
}

func answerOf(name string, res *result) ([]dns.RR, error) {
	if res.rcode == dns.RcodeNameError || len(res.rrs) == 0 {
		return nil, notFoundError(name, res.server)
	}
	return res.rrs, nil
}

// resolve answers qname/qtype from the cache or, once for all callers asking
// the same at the same time, from the servers. The shared query runs on a
// context detached from the callers' cancellation and bounded by the
// per-query timeouts; each caller stops waiting when its own ctx ends, and
// when the last waiting caller leaves, the query is canceled.
func (r *Resolver) resolve(ctx context.Context, name, qname string, qtype uint16) (*result, error) {
	key := cacheKey{qname, qtype}
	if res, ok := r.cache.get(key, r.now()); ok {
		return res, nil
	}
	r.mu.Lock()
	c, ok := r.calls[key]
	if ok {
		c.waiters++
		r.coalesced.Add(1)
	} else {
		qctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
		r.calls[key] = c
		go func() {
			defer cancel()
			c.res, c.err = r.query(qctx, name, key)
			r.mu.Lock()
			if r.calls[key] == c {
				delete(r.calls, key)
			}
			r.mu.Unlock()
			close(c.done)
		}()
	}
	r.mu.Unlock()
	if ok && r.testHookJoin != nil {
		r.testHookJoin()
	}
	select {
	case <-c.done:
		if de, ok := c.err.(*net.DNSError); ok {
			cp := *de // callers may change their error; never share one
			return nil, &cp
		}
		return c.res, c.err
	case <-ctx.Done():
		r.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			c.cancel()
			if r.calls[key] == c {
				delete(r.calls, key) // the next caller starts afresh
			}
		}
		r.mu.Unlock()
		return nil, contextError(name, ctx.Err())
	}
}

// call is a query in flight that callers wait for.
type call struct {
	done    chan struct{} // closed when res/err are set
	res     *result
	err     error
	waiters int // guarded by Resolver.mu
	cancel  context.CancelFunc
}

// query asks the servers in order, attempts rounds, until one gives an
// answer (NOERROR or NXDOMAIN), and caches that answer.
func (r *Resolver) query(ctx context.Context, name string, key cacheKey) (*result, error) {
	q := new(dns.Msg)
	q.SetQuestion(key.name, key.qtype)
	q.SetEdns0(ednsSize, false)
	var lastErr error
	for range r.attempts {
		for _, server := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, contextError(name, err)
			}
			resp, err := r.exchange(ctx, server, q)
			if err != nil {
				if ctx.Err() != nil {
					return nil, contextError(name, ctx.Err())
				}
				lastErr = temporaryError(name, server, err)
				continue
			}
			if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
				lastErr = temporaryError(name, server, fmt.Errorf("query %s %s: server answered %s",
					key.name, dns.TypeToString[key.qtype], dns.RcodeToString[resp.Rcode]))
				continue
			}
			res, ttl := r.interpret(resp, key, server)
			if ttl > 0 {
				r.cache.put(key, res, r.now().Add(ttl))
			}
			return res, nil
		}
	}
	return nil, lastErr
}

// interpret extracts the records of the asked type, following the CNAME
// chain in the answer section, and the time to cache the result: the
// smallest TTL of the records used, or for a negative answer (RFC 2308 §5)
// min(SOA TTL, SOA minimum) from the authority section, else negative_ttl;
// clamped to [min_ttl, max_ttl].
func (r *Resolver) interpret(resp *dns.Msg, key cacheKey, server string) (*result, time.Duration) {
	res := &result{rcode: resp.Rcode, server: server}
	ttl := uint32(math.MaxUint32)
	name := key.name
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !sameName(h.Name, name) {
				continue
			}
			switch h.Rrtype {
			case key.qtype:
				res.rrs = append(res.rrs, rr)
				ttl = min(ttl, h.Ttl)
			case dns.TypeCNAME:
				next = rr.(*dns.CNAME).Target
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(res.rrs) > 0 || next == "" || sameName(next, name) {
			break
		}
		name = next
	}
	if len(res.rrs) == 0 {
		var soa *dns.SOA
		for _, rr := range resp.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
				break
			}
		}
		if name != key.name {
			res.cname = dns.CanonicalName(name)
			if soa == nil && res.rcode == dns.RcodeSuccess {
				// only a CNAME chain, nothing said about its target:
				// a positive answer about the CNAMEs
				return res, r.clamp(time.Duration(ttl) * time.Second)
			}
		}
		neg := r.negTTL
		if soa != nil {
			neg = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
		if cnameTTL := time.Duration(ttl) * time.Second; ttl != math.MaxUint32 && cnameTTL < neg {
			neg = cnameTTL
		}
		return res, r.clamp(neg)
	}
	return res, r.clamp(time.Duration(ttl) * time.Second)
}

func (r *Resolver) clamp(ttl time.Duration) time.Duration {
	return max(min(ttl, r.maxTTL), r.minTTL)
}

// joinTXT joins the strings of one TXT record into the text they carry.
// miekg/dns keeps them in presentation form (\" \\ \DDD escapes); undo that.
func joinTXT(parts []string) string {
	if len(parts) == 1 && !strings.Contains(parts[0], `\`) {
		return parts[0] // as it stands (a cache hit then copies nothing)
	}
	var b strings.Builder
	for _, p := range parts {
		if !strings.Contains(p, `\`) {
			b.WriteString(p)
			continue
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c != '\\' || i+1 == len(p) {
				b.WriteByte(c)
				continue
			}
			if i+3 < len(p) && isDigit(p[i+1]) && isDigit(p[i+2]) && isDigit(p[i+3]) {
				if n := int(p[i+1]-'0')*100 + int(p[i+2]-'0')*10 + int(p[i+3]-'0'); n <= 255 {
					b.WriteByte(byte(n))
					i += 3
					continue
				}
			}
			b.WriteByte(p[i+1])
			i++
		}
	}
	return b.String()
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
