package dkimkey

import "sync"

// MaxCachedRecord is the longest key record a Cache keeps: an RSA-4096
// record is about 800 bytes, so anything longer is parsed every time
// rather than allowed to fill memory.
const MaxCachedRecord = 4096

// Cache remembers ParseRecord's answer by the text of the record, so a
// verifier that sees the same key again (every message from a busy sender
// does) skips the base64 decoding, the ASN.1 parse and the size check. The
// DNS answer is still fetched each time (the resolver's cache decides how
// long a record lives): a changed or revoked record is a different text and
// is parsed afresh. Errors are cached too. A Cache is safe for concurrent
// use; the *PublicKey it returns is shared and must not be modified.
type Cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cached
}

type cached struct {
	key *PublicKey
	err error
}

// NewCache returns a cache of at most max records; max 0 caches nothing.
func NewCache(max int) *Cache { return &Cache{max: max, entries: map[string]cached{}} }

// Parse returns ParseRecord(txt), from the cache when it has it.
func (c *Cache) Parse(txt string) (*PublicKey, error) {
	if c == nil || c.max <= 0 || len(txt) > MaxCachedRecord {
		return ParseRecord(txt)
	}
	c.mu.Lock()
	e, ok := c.entries[txt]
	c.mu.Unlock()
	if ok {
		return e.key, e.err
	}
	k, err := ParseRecord(txt)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for old := range c.entries { // full: forget one, whichever the map yields
			delete(c.entries, old)
			break
		}
	}
	c.entries[txt] = cached{k, err}
	c.mu.Unlock()
	return k, err
}

// Len reports how many records the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
