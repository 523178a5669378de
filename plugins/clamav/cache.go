package clamav

import (
	"container/list"
	"sync"
	"time"

	"github.com/elemta/elemta/registry"
)

// cache holds scan results by message hash for ttl, at most size entries;
// the least recently used entry goes first. Time comes from the host's clock.
type cache struct {
	size int
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	order *list.List // front: most recently used; values are *cacheEntry
	byKey map[[32]byte]*list.Element
}

type cacheEntry struct {
	key     [32]byte
	result  registry.ScanResult
	expires time.Time
}

func newCache(size int, ttl time.Duration, now func() time.Time) *cache {
	return &cache{size: size, ttl: ttl, now: now, order: list.New(), byKey: map[[32]byte]*list.Element{}}
}

// get returns a copy of the cached result for key, if it has not expired.
func (c *cache) get(key [32]byte) (*registry.ScanResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, key)
		return nil, false
	}
	c.order.MoveToFront(el)
	r := e.result
	r.Threats = append([]string(nil), r.Threats...)
	return &r, true
}

// put stores a copy of r under key, evicting the least recently used entry
// when the cache is full.
func (c *cache) put(key [32]byte, r *registry.ScanResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, result: *r, expires: c.now().Add(c.ttl)}
	e.result.Threats = append([]string(nil), r.Threats...)
	if el, ok := c.byKey[key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*cacheEntry).key)
	}
	c.byKey[key] = c.order.PushFront(e)
}

// len returns the number of entries, expired or not.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
