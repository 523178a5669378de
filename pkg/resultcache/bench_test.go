package resultcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/resultcache"
	"github.com/elemta/elemta/pkg/store/storetest"
)

// BenchmarkGetHit: one hit of a 100-byte value, in memory and on the test
// Redis (one round trip on loopback).
func BenchmarkGetHit(b *testing.B) {
	ctx := context.Background()
	value := make([]byte, 100)
	run := func(b *testing.B, c *resultcache.Cache) {
		c.Put(ctx, "key", value)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.Get(ctx, "key"); !ok {
				b.Fatal("miss")
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		c, err := resultcache.New(resultcache.Options{TTL: time.Hour, MaxEntries: 1000})
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
	b.Run("redis", func(b *testing.B) {
		addr, prefix := storetest.Redis(b)
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		c, err := resultcache.New(resultcache.Options{Redis: rc, Prefix: prefix, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
}
