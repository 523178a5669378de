// Package resultcache keeps results that are pure functions of a message
// and a plugin's config — a virus scan by body hash and signature database
// version, a DKIM key record, a spam score — so a plugin computes each one
// once per TTL: in process memory (bounded by entries, least recently used
// dropped first), or in Redis, where every node of a site shares it.
//
// The key is the plugin's: it must name everything the result depends on
// (a hash of the bytes that decide it, the version of the data or rules
// that judged it). Values are opaque bytes; the plugin encodes them and
// must treat one it cannot decode as a miss, since Redis is shared.
//
//	c, err := resultcache.New(resultcache.Options{
//		Redis:  host.Redis, // nil: in memory
//		Prefix: "elemta:myplugin:cache:",
//		TTL:    time.Hour, MaxEntries: 10000,
//		Now:    host.Clock.Now,
//	})
//	if v, ok := c.Get(ctx, key); ok { ... }
//	c.Put(ctx, key, encoded)
//
// A cache never fails its caller: a Redis error is a miss (Get) or a value
// not kept (Put), counted in Counters.Errors; after one, Redis is left
// alone for Options.Backoff, so an outage costs each message at most one
// Redis timeout per backoff period, not two per message. Counters are
// plain numbers a metrics exporter reads (Reporter).
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version. It imports
// nothing from internal/.
package resultcache
