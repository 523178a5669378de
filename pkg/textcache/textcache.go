package textcache

import "sync"

// Cache remembers parse's answer by its input text. Make one with New.
type Cache[T any] struct {
	parse   func(string) (T, error)
	max     int
	maxLen  int
	mu      sync.Mutex
	entries map[string]entry[T]
}

type entry[T any] struct {
	v   T
	err error
}

// New returns a cache of at most max entries of texts up to maxLen bytes
// for parse. max 0 caches nothing.
func New[T any](max, maxLen int, parse func(string) (T, error)) *Cache[T] {
	return &Cache[T]{parse: parse, max: max, maxLen: maxLen, entries: map[string]entry[T]{}}
}

// Get returns parse(txt), from the cache when it has it.
func (c *Cache[T]) Get(txt string) (T, error) {
	if c.max <= 0 || len(txt) > c.maxLen {
		return c.parse(txt)
	}
	c.mu.Lock()
	e, ok := c.entries[txt]
	c.mu.Unlock()
	if ok {
		return e.v, e.err
	}
	v, err := c.parse(txt)
	c.mu.Lock()
	if _, ok := c.entries[txt]; !ok && len(c.entries) >= c.max {
		for old := range c.entries { // full: forget one, whichever the map yields
			delete(c.entries, old)
			break
		}
	}
	c.entries[txt] = entry[T]{v, err}
	c.mu.Unlock()
	return v, err
}

// Len reports how many texts the cache holds.
func (c *Cache[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
