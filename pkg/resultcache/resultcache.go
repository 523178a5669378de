package resultcache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults and bounds.
const (
	DefaultMaxValueSize = 64 << 10
	DefaultBackoff      = time.Second
	// MaxKeySize bounds a key (before the prefix): hash what is longer.
	MaxKeySize = 512
)

// Options configure a cache.
type Options struct {
	// Redis is the pool of the shared cache (registry.Host.Redis); nil
	// keeps the cache in this process's memory.
	Redis redis.UniversalClient
	// Prefix starts every Redis key ("elemta:clamav:cache:"); it must not
	// contain { or }, so a key's slot is its own.
	Prefix string
	// TTL is how long a result is reused (required).
	TTL time.Duration
	// MaxEntries bounds the memory cache (required for it); in Redis the
	// entries are bounded by TTL, MaxValueSize and the server's maxmemory.
	MaxEntries int
	// MaxValueSize is the largest value kept, in bytes (default 64 KiB).
	MaxValueSize int
	// Backoff is how long Redis is skipped after an error (default 1s).
	Backoff time.Duration
	// Now tells the time (default time.Now): expiry in memory, backoff.
	Now func() time.Time
}

// Counters are a cache's totals since New.
type Counters struct {
	Hits, Misses int64
	// Puts counts values kept, Evictions entries dropped for room (memory),
	// Errors Redis failures and undecodable values (each also a miss or a
	// value not kept), Skipped calls not sent to Redis during a backoff.
	Puts, Evictions, Errors, Skipped int64
}

// Reporter is what a plugin with a cache implements for a metrics
// exporter.
type Reporter interface {
	CacheCounters() Counters
}

// Cache is a result cache; safe for concurrent use.
type Cache struct {
	o     Options
	mem   *memory // nil for Redis
	down  atomic.Int64
	stats struct{ hits, misses, puts, evictions, errors, skipped atomic.Int64 }
}

// New returns a cache. It does no I/O.
func New(o Options) (*Cache, error) {
	if o.TTL <= 0 {
		return nil, errors.New("result cache: TTL must be positive")
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxValueSize < 0 {
		return nil, fmt.Errorf("result cache: max value size %d: must be positive", o.MaxValueSize)
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cache{o: o}
	if o.Redis == nil {
		if o.MaxEntries <= 0 {
			return nil, fmt.Errorf("result cache: max entries %d: must be positive for a memory cache", o.MaxEntries)
		}
		c.mem = newMemory(o.MaxEntries)
		return c, nil
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("result cache: prefix %q: must not contain { or }", o.Prefix)
	}
	return c, nil
}

// Shared reports whether the cache is in Redis.
func (c *Cache) Shared() bool { return c.mem == nil }

// Get returns the value of key, if one is cached and has not expired. The
// caller owns the returned slice.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool) {
	if len(key) == 0 || len(key) > MaxKeySize {
		c.stats.misses.Add(1)
		return nil, false
	}
	var v []byte
	var ok bool
	if c.mem != nil {
		v, ok = c.mem.get(key, c.o.Now())
	} else if c.skip() {
		c.stats.skipped.Add(1)
	} else {
		b, err := c.o.Redis.Get(ctx, c.o.Prefix+key).Bytes()
		switch {
		case err == nil:
			v, ok = b, true
		case !errors.Is(err, redis.Nil):
			c.fail(ctx, err)
		}
	}
	if ok {
		c.stats.hits.Add(1)
	} else {
		c.stats.misses.Add(1)
	}
	return v, ok
}

// Put keeps a copy of value under key for the TTL. A value over
// MaxValueSize, an empty or too long key, or a Redis error keeps nothing.
func (c *Cache) Put(ctx context.Context, key string, value []byte) {
	if len(key) == 0 || len(key) > MaxKeySize || len(value) > c.o.MaxValueSize {
		return
	}
	if c.mem != nil {
		if c.mem.put(key, value, c.o.Now().Add(c.o.TTL)) {
			c.stats.evictions.Add(1)
		}
		c.stats.puts.Add(1)
		return
	}
	if c.skip() {
		c.stats.skipped.Add(1)
		return
	}
	if err := c.o.Redis.Set(ctx, c.o.Prefix+key, value, c.o.TTL).Err(); err != nil {
		c.fail(ctx, err)
		return
	}
	c.stats.puts.Add(1)
}

// Invalidate drops key.
func (c *Cache) Invalidate(ctx context.Context, key string) error {
	if c.mem != nil {
		c.mem.remove(key)
		return nil
	}
	if err := c.o.Redis.Del(ctx, c.o.Prefix+key).Err(); err != nil {
		return fmt.Errorf("result cache: invalidate: %w", err)
	}
	return nil
}

// Len is the number of entries in memory, expired or not (0 for Redis).
func (c *Cache) Len() int {
	if c.mem == nil {
		return 0
	}
	return c.mem.len()
}

// CacheCounters implements Reporter.
func (c *Cache) CacheCounters() Counters {
	return Counters{Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), Puts: c.stats.puts.Load(),
		Evictions: c.stats.evictions.Load(), Errors: c.stats.errors.Load(), Skipped: c.stats.skipped.Load()}
}

// skip reports whether Redis is in its backoff after an error.
func (c *Cache) skip() bool {
	until := c.down.Load()
	return until != 0 && c.o.Now().UnixNano() < until
}

// fail records a Redis error; the caller's own cancellation is not one.
func (c *Cache) fail(ctx context.Context, err error) {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return
	}
	c.stats.errors.Add(1)
	c.down.Store(c.o.Now().Add(c.o.Backoff).UnixNano())
}

var _ Reporter = (*Cache)(nil)

// Corrupt drops key's value, which the caller just got and could not
// decode: that Get counts as a miss and an error, not a hit.
func (c *Cache) Corrupt(ctx context.Context, key string) {
	c.stats.hits.Add(-1)
	c.stats.misses.Add(1)
	c.stats.errors.Add(1)
	_ = c.Invalidate(ctx, key)
}
