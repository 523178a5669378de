package resultcache_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/resultcache"
	"github.com/elemta/elemta/pkg/store/storetest"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// backend builds a cache of one kind on clock.
type backend struct {
	name string
	open func(t *testing.T, o resultcache.Options) *resultcache.Cache
}

func backends() []backend {
	open := func(t *testing.T, o resultcache.Options) *resultcache.Cache {
		t.Helper()
		c, err := resultcache.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	onRedis := func(c func(t *testing.T) (redis.UniversalClient, string)) func(t *testing.T, o resultcache.Options) *resultcache.Cache {
		return func(t *testing.T, o resultcache.Options) *resultcache.Cache {
			o.Redis, o.Prefix = c(t)
			return open(t, o)
		}
	}
	return []backend{
		{"memory", open},
		{"redis", onRedis(func(t *testing.T) (redis.UniversalClient, string) {
			addr, prefix := storetest.Redis(t)
			c := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { c.Close() })
			return c, prefix
		})},
		{"redis-cluster", onRedis(func(t *testing.T) (redis.UniversalClient, string) {
			s := storetest.Cluster(t)
			return s.Client(t), s.Prefix(t)
		})},
	}
}

// TestGetPut: a value put is got back (a copy) until the TTL; a miss and
// a hit are counted; size bounds at their boundary.
func TestGetPut(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			clock := storetest.NewClock(t0)
			c := be.open(t, resultcache.Options{TTL: time.Hour, MaxEntries: 10, MaxValueSize: 8, Now: clock.Now})
			if _, ok := c.Get(ctx, "k"); ok {
				t.Fatal("hit on an empty cache")
			}
			v := []byte("12345678") // exactly MaxValueSize
			c.Put(ctx, "k", v)
			v[0] = 'x'
			got, ok := c.Get(ctx, "k")
			if !ok || string(got) != "12345678" {
				t.Fatalf("Get = %q, %v; want the value as put", got, ok)
			}
			c.Put(ctx, "big", []byte("123456789")) // one byte over
			if _, ok := c.Get(ctx, "big"); ok {
				t.Error("a value over max value size was kept")
			}
			long := strings.Repeat("k", resultcache.MaxKeySize)
			c.Put(ctx, long, v)
			if _, ok := c.Get(ctx, long); !ok {
				t.Error("a key of MaxKeySize bytes was not kept")
			}
			c.Put(ctx, long+"k", v)
			if _, ok := c.Get(ctx, long+"k"); ok {
				t.Error("a key over MaxKeySize was kept")
			}
			want := resultcache.Counters{Hits: 2, Misses: 3, Puts: 2}
			if got := c.CacheCounters(); got != want {
				t.Errorf("counters %+v, want %+v", got, want)
			}
			c.Get(ctx, "k")
			c.Corrupt(ctx, "k") // the caller could not decode it
			want = resultcache.Counters{Hits: 2, Misses: 4, Puts: 2, Errors: 1}
			if got := c.CacheCounters(); got != want {
				t.Errorf("after Corrupt: counters %+v, want %+v", got, want)
			}
			if _, ok := c.Get(ctx, "k"); ok {
				t.Error("hit after Corrupt")
			}
			c.Put(ctx, "k", v)
			if err := c.Invalidate(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.Get(ctx, "k"); ok {
				t.Error("hit after Invalidate")
			}
		})
	}
}

// TestTTL: in memory a value expires exactly TTL after the put on the
// injected clock; in Redis the key carries the TTL.
func TestTTL(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(t0)
	c, err := resultcache.New(resultcache.Options{TTL: time.Minute, MaxEntries: 1, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, "k", []byte("v"))
	clock.Advance(time.Minute - time.Nanosecond)
	if _, ok := c.Get(ctx, "k"); !ok {
		t.Fatal("expired before the TTL")
	}
	clock.Advance(time.Nanosecond)
	if _, ok := c.Get(ctx, "k"); ok {
		t.Fatal("still there at the TTL")
	}

	addr, prefix := storetest.Redis(t)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	c, err = resultcache.New(resultcache.Options{Redis: rc, Prefix: prefix, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, "k", []byte("v"))
	if ttl := rc.PTTL(ctx, prefix+"k").Val(); ttl <= 55*time.Second || ttl > time.Minute {
		t.Errorf("redis TTL %v, want about 1m", ttl)
	}
}

// TestMemoryBound: never more than MaxEntries; the least recently used
// goes first, counted as an eviction.
func TestMemoryBound(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c, err := resultcache.New(resultcache.Options{TTL: time.Hour, MaxEntries: size})
			if err != nil {
				t.Fatal(err)
			}
			for i := range size {
				c.Put(ctx, fmt.Sprint(i), []byte{byte(i)})
			}
			if c.Len() != size {
				t.Fatalf("len %d after %d puts", c.Len(), size)
			}
			c.Get(ctx, "0") // most recently used: the next put evicts "1" (or "0" when size is 1)
			c.Put(ctx, "new", []byte("n"))
			if c.Len() != size {
				t.Fatalf("len %d after one more put, want %d", c.Len(), size)
			}
			evicted := "1"
			if size == 1 {
				evicted = "0"
			}
			if _, ok := c.Get(ctx, evicted); ok {
				t.Errorf("%s still cached, want evicted", evicted)
			}
			if v, ok := c.Get(ctx, "new"); !ok || !bytes.Equal(v, []byte("n")) {
				t.Errorf("newest = %q, %v", v, ok)
			}
			if got := c.CacheCounters().Evictions; got != 1 {
				t.Errorf("%d evictions, want 1", got)
			}
		})
	}
}

// TestRedisOutage: a Redis that does not answer is a miss, counted as an
// error; for Backoff after it Redis is not asked (skipped), then it is
// again, and the cache works when Redis is back.
func TestRedisOutage(t *testing.T) {
	ctx := context.Background()
	addr, prefix := storetest.Redis(t)
	proxy := storetest.NewCutProxy(t, addr)
	rc := redis.NewClient(&redis.Options{Addr: proxy.Addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rc.Close()
	clock := storetest.NewClock(t0)
	c, err := resultcache.New(resultcache.Options{Redis: rc, Prefix: prefix, TTL: time.Hour, Backoff: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, "k", []byte("v"))
	proxy.Cut()
	if _, ok := c.Get(ctx, "k"); ok {
		t.Fatal("hit through a cut link")
	}
	c.Put(ctx, "k2", []byte("v"))                // in the backoff: skipped
	clock.Advance(time.Second - time.Nanosecond) //
	if _, ok := c.Get(ctx, "k"); ok {            // still skipped
		t.Fatal("hit during the backoff")
	}
	want := resultcache.Counters{Misses: 2, Puts: 1, Errors: 1, Skipped: 2}
	if got := c.CacheCounters(); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	proxy.Restore()
	clock.Advance(time.Nanosecond)
	if v, ok := c.Get(ctx, "k"); !ok || string(v) != "v" {
		t.Fatalf("after the backoff with Redis back: %q, %v", v, ok)
	}
}

func TestNewRefuses(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	for _, tc := range []struct {
		name string
		o    resultcache.Options
		want string
	}{
		{"no TTL", resultcache.Options{MaxEntries: 1}, "TTL"},
		{"memory without a bound", resultcache.Options{TTL: time.Second}, "max entries 0"},
		{"negative value size", resultcache.Options{TTL: time.Second, MaxEntries: 1, MaxValueSize: -1}, "max value size"},
		{"hash tag in prefix", resultcache.Options{TTL: time.Second, Redis: rc, Prefix: "a{b}"}, "{ or }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := resultcache.New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}
