package resolver

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// cacheKey names one RRset: canonical (lower-case, fully qualified) owner
// name and record type.
type cacheKey struct {
	name  string
	qtype uint16
}

// result is a resolved question: the records of the asked type at the end
// of any CNAME chain (empty for NXDOMAIN and NODATA), the response code, and
// the server that answered. It is never modified once built, so the cache
// and any number of callers share it.
type result struct {
	rrs    []dns.RR
	rcode  int // dns.RcodeSuccess or dns.RcodeNameError
	server string
	cname  string // no records: the end of the CNAME chain, if the answer had one
}

type cacheEntry struct {
	key     cacheKey
	res     *result
	expires time.Time
}

// cache is a bounded LRU of results, each kept until its expiry time. Safe
// for concurrent use.
type cache struct {
	mu      sync.Mutex
	max     int
	ll      *list.List // front = most recently used
	entries map[cacheKey]*list.Element

	hits, misses, evictions, expired atomic.Uint64
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), entries: make(map[cacheKey]*list.Element)}
}

// get returns the live entry for k, counting a hit or a miss.
func (c *cache) get(k cacheKey, now time.Time) (*result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.entries, k)
		c.expired.Add(1)
		c.misses.Add(1)
		return nil, false
	}
	c.ll.MoveToFront(el)
	c.hits.Add(1)
	return e.res, true
}

// put stores res for k until expires, evicting the least recently used
// entry when the cache is full.
func (c *cache) put(k cacheKey, res *result, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		e := el.Value.(*cacheEntry)
		e.res, e.expires = res, expires
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
		c.evictions.Add(1)
	}
	c.entries[k] = c.ll.PushFront(&cacheEntry{key: k, res: res, expires: expires})
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// Stats are the resolver's counters since it was created.
type Stats struct {
	Hits      uint64 // answers served from the cache
	Misses    uint64 // questions the cache could not answer
	Evictions uint64 // live entries dropped because the cache was full
	Expired   uint64 // entries dropped because their TTL ran out
	Entries   int    // entries in the cache now
	Exchanges uint64 // queries sent to a server (UDP and TCP each count)
	Coalesced uint64 // questions that waited for an identical one in flight
	Static    uint64 // answers from the static zone
	// Questions counts lookups of one name and type; of those, NotFound
	// the NXDOMAIN/NODATA answers, Timeouts those that timed out (the
	// caller's deadline or the servers'), Failures the other errors
	// (SERVFAIL, REFUSED, unreachable servers, cancellation).
	Questions, NotFound, Timeouts, Failures uint64
}
