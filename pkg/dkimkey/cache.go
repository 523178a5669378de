package dkimkey

import "github.com/elemta/elemta/pkg/textcache"

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
type Cache struct{ c *textcache.Cache[*PublicKey] }

// NewCache returns a cache of at most max records; max 0 caches nothing.
func NewCache(max int) *Cache {
	return &Cache{textcache.New(max, MaxCachedRecord, ParseRecord)}
}

// Parse returns ParseRecord(txt), from the cache when it has it.
func (c *Cache) Parse(txt string) (*PublicKey, error) {
	if c == nil {
		return ParseRecord(txt)
	}
	return c.c.Get(txt)
}

// Len reports how many records the cache holds.
func (c *Cache) Len() int { return c.c.Len() }
