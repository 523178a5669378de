package clamav

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/resultcache"
	"github.com/elemta/elemta/pkg/store"
	"github.com/elemta/elemta/registry"
)

// Cache stores (cache_store).
const (
	CacheMemory = "memory"
	CacheRedis  = "redis"
)

// Defaults of the cache keys.
const (
	DefaultCacheRedisPrefix     = "elemta:clamav:cache:"
	DefaultCacheVersionInterval = time.Minute
	// maxThreat bounds one threat name read back from a shared cache.
	maxThreat = 256
)

// cache is the plugin's result cache: the SDK's (pkg/resultcache), in
// memory or in Redis, keyed by what decides clamd's verdict and by the
// signature database clamd judged it with, so a database update makes
// every earlier result a miss.
type cache struct {
	c        *resultcache.Cache
	own      redis.UniversalClient // a pool of its own, closed by close
	interval time.Duration
	now      func() time.Time

	version   atomic.Value  // string: "1.4.6/27834"; "" while unknown
	known     chan struct{} // closed once a version is known
	knownOnce sync.Once
	once      sync.Once // start
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// newCache builds the cache cfg describes; nil when it is off. With
// cache_store = "redis" it uses the host's [store] pool, or a pool of its
// own to 127.0.0.1:6379 when there is none. No I/O.
func newCache(cfg Config, host registry.Host) (*cache, error) {
	if cfg.CacheTTL <= 0 || cfg.CacheSize <= 0 {
		return nil, nil
	}
	c := &cache{interval: cfg.CacheVersionInterval.D(), now: host.Clock.Now, known: make(chan struct{})}
	o := resultcache.Options{TTL: cfg.CacheTTL.D(), MaxEntries: cfg.CacheSize, Now: host.Clock.Now}
	if cfg.CacheStore == CacheRedis {
		o.Redis, o.Prefix = host.Redis, cfg.CacheRedisPrefix
		if o.Redis == nil {
			own, err := store.RedisConfig{Addr: store.DefaultRedisAddr, Timeout: registry.Duration(store.DefaultRedisTimeout),
				MaxRetries: store.DefaultRedisMaxRetries}.NewClient()
			if err != nil {
				return nil, fmt.Errorf("cache: %w", err)
			}
			c.own, o.Redis = own, own
		}
	}
	rc, err := resultcache.New(o)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.c = rc
	return c, nil
}

func (c *cache) close() {
	if c == nil {
		return
	}
	c.closeOnce.Do(func() {
		c.once.Do(func() {}) // no start after close
		if c.stop != nil {
			close(c.stop)
			<-c.done
		}
		if c.own != nil {
			c.own.Close()
		}
	})
}

// key returns the cache key of msg under clamd's current database, or ""
// while the version is unknown (then nothing is cached or looked up).
func (c *cache) key(msg *registry.Message) string {
	v, _ := c.version.Load().(string)
	if v == "" {
		return ""
	}
	h := contentHash(msg)
	return hex.EncodeToString(h[:]) + ":" + v
}

// start asks clamd for its version now and then every
// cache_version_interval, in the background: a scan never waits for
// VERSION. The goroutine ends on close.
func (c *cache) start(s *Scanner) {
	if c == nil {
		return
	}
	c.once.Do(func() {
		c.stop = make(chan struct{})
		c.done = make(chan struct{})
		go func() {
			defer close(c.done)
			t := time.NewTicker(c.interval)
			defer t.Stop()
			for {
				c.probe(s)
				select {
				case <-c.stop:
					return
				case <-t.C:
				}
			}
		}()
	})
}

// probe stores the version of the first clamd that answers VERSION, or
// "" when none does (bounded by twice connect_timeout).
func (c *cache) probe(s *Scanner) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.ConnectTimeout.D())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	v := ""
	for _, srv := range s.client.order(c.now()) {
		if r, err := s.Version(ctx, srv.srv); err == nil {
			v = parseDBVersion(r)
			break
		}
	}
	c.version.Store(v)
	if v != "" {
		c.knownOnce.Do(func() { close(c.known) })
	}
}

// parseDBVersion turns "ClamAV 1.4.6/27834/Tue Nov 25 09:00:00 2026" into
// "1.4.6/27834": the engine and the database, not its date.
func parseDBVersion(v string) string {
	v = strings.TrimPrefix(v, "ClamAV ")
	parts := strings.SplitN(v, "/", 3)
	if len(parts) >= 2 {
		v = parts[0] + "/" + parts[1]
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > unicode.MaxASCII }) || len(v) > 64 {
		return ""
	}
	return v
}

// cached is a scan result as the cache keeps it.
type cached struct {
	Status  registry.Status `json:"s"`
	Threats []string        `json:"t,omitempty"`
	Details string          `json:"d"`
}

func (c *cache) get(ctx context.Context, key string) (*registry.ScanResult, bool) {
	b, ok := c.c.Get(ctx, key)
	if !ok {
		return nil, false
	}
	var v cached
	if err := json.Unmarshal(b, &v); err != nil || !v.valid() {
		// Another node (or anyone who can write to Redis) put something
		// else there: scan again rather than trust it.
		c.c.Corrupt(ctx, key)
		return nil, false
	}
	return &registry.ScanResult{Status: v.Status, Threats: v.Threats, Details: v.Details}, true
}

func (c *cache) put(ctx context.Context, key string, sr *registry.ScanResult) {
	b, err := json.Marshal(cached{Status: sr.Status, Threats: sr.Threats, Details: sr.Details})
	if err != nil {
		return
	}
	c.c.Put(ctx, key, b)
}

// valid: clean without threats, or infected with 1 to 64 printable names.
func (v cached) valid() bool {
	switch v.Status {
	case registry.StatusClean:
		return len(v.Threats) == 0
	case registry.StatusInfected:
		if len(v.Threats) == 0 || len(v.Threats) > 64 {
			return false
		}
		for _, t := range v.Threats {
			if t == "" || len(t) > maxThreat || strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				return false
			}
		}
		return len(v.Details) <= 4096
	}
	return false
}

// contentHash hashes what decides clamd's verdict and stays the same
// between reception and delivery: the MIME header fields and the body.
// Trace fields added in transit (Received, X-*) do not change it.
func contentHash(msg *registry.Message) [32]byte {
	h := sha256.New()
	for _, name := range []string{"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition"} {
		for _, v := range msg.Header.Values(name) {
			fmt.Fprintf(h, "%s:%s\n", name, v)
		}
	}
	h.Write([]byte{0})
	h.Write(msg.Body())
	var k [32]byte
	h.Sum(k[:0])
	return k
}
