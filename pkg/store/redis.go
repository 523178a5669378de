package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/registry"
)

// RedisOptions configure a Redis store.
type RedisOptions struct {
	// Client is a pool the store shares (registry.Host.Redis, the [store]
	// table): the store uses it and never closes it. When nil, the store
	// opens a pool of its own from Config, or else from Addr and the
	// fields after it.
	Client redis.UniversalClient
	// Config describes a pool of the store's own: one server, Sentinel or
	// Cluster, with TLS. Used when Client is nil and Config.Enabled().
	Config RedisConfig

	Addr     string // host:port
	Username string
	Password string
	DB       int
	// Prefix starts every key the store writes ("elemta:greylist:"), so
	// several plugins and test runs can share one server. It must not
	// contain "{" or "}": the store adds hash tags of its own.
	Prefix string
	// Timeout bounds dialing and each command (default 1s).
	Timeout time.Duration
	// PoolSize bounds the open connections (default 10 per CPU, go-redis's).
	PoolSize int
}

// Redis is the shared store: every primitive is one Lua script, which Redis
// runs atomically. Expiry uses PEXPIRE relative to the server's clock; the
// decisions use the time the caller passes.
//
// Every script touches the keys of one hash slot (the greylist's triplet
// and network keys share the hash tag {<network>}), so the store works on
// a Redis Cluster as on one server or a Sentinel-managed master.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	owned  bool // Close closes c
}

// NewRedis returns a Redis store. It does not connect: the first command
// (or Ping) does, so an unreachable server at start-up does not stop
// Elemta.
func NewRedis(o RedisOptions) (*Redis, error) {
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("redis store: prefix %q: must not contain { or } (the store adds hash tags)", o.Prefix)
	}
	if o.Client != nil {
		return &Redis{c: o.Client, prefix: o.Prefix}, nil
	}
	cfg := o.Config
	if !cfg.Enabled() {
		if o.Addr == "" {
			return nil, errors.New("redis store: no address")
		}
		if o.Timeout <= 0 {
			o.Timeout = DefaultRedisTimeout
		}
		cfg = RedisConfig{Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			Timeout: registry.Duration(o.Timeout), PoolSize: o.PoolSize, MaxRetries: DefaultRedisMaxRetries}
	}
	c, err := cfg.NewClient()
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return &Redis{c: c, prefix: o.Prefix, owned: true}, nil
}

// go-redis logs every failed dial on its own, once per command during an
// outage; the plugins log an outage once (Outage). Its lines go to slog at
// debug level instead. The logger is process-wide: only this package uses
// go-redis in Elemta.
var quietOnce sync.Once

type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// Client returns the underlying client (for tests and tools).
func (s *Redis) Client() redis.UniversalClient { return s.c }

// Prefix returns the key prefix.
func (s *Redis) Prefix() string { return s.prefix }

// greylistScript: KEYS[1] triplet hash {f first, l last, p passed},
// KEYS[2] network hash {n count, l last}. ARGV: now, delay, window, expire
// (microseconds), auto-allow-after. Returns {status, first, network passes}
// with the statuses of GreylistStatus. Mirrors Bolt.Greylist.
var greylistScript = redis.NewScript(`
local now, delay, window, expire = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local auto = tonumber(ARGV[5])
local function ms(us) return math.max(1, math.ceil(us / 1000)) end
local function d(x) return string.format('%d', x) end
local netcount = 0
if auto > 0 then
  local nv = redis.call('HMGET', KEYS[2], 'n', 'l')
  if nv[1] and nv[2] and now <= tonumber(nv[2]) + expire then netcount = tonumber(nv[1]) end
  if netcount >= auto then
    redis.call('HSET', KEYS[2], 'n', d(netcount), 'l', d(now))
    redis.call('PEXPIRE', KEYS[2], ms(expire))
    return {5, 0, netcount}
  end
end
local t = redis.call('HMGET', KEYS[1], 'f', 'l', 'p')
if t[1] and t[2] and t[3] then
  local first, last, passed = tonumber(t[1]), tonumber(t[2]), t[3] == '1'
  if passed and now <= last + expire then
    redis.call('HSET', KEYS[1], 'l', d(now))
    redis.call('PEXPIRE', KEYS[1], ms(expire))
    return {4, first, netcount}
  end
  if not passed and now < first + delay then
    return {2, first, netcount}
  end
  if not passed and now <= first + window then
    if auto > 0 then
      netcount = netcount + 1
      redis.call('HSET', KEYS[2], 'n', d(netcount), 'l', d(now))
      redis.call('PEXPIRE', KEYS[2], ms(expire))
    end
    redis.call('HSET', KEYS[1], 'l', d(now), 'p', '1')
    redis.call('PEXPIRE', KEYS[1], ms(expire))
    return {3, first, netcount}
  end
end
redis.call('HSET', KEYS[1], 'f', d(now), 'l', d(now), 'p', '0')
redis.call('PEXPIRE', KEYS[1], ms(window))
return {1, now, netcount}
`)

// Greylist implements Store.
func (s *Redis) Greylist(ctx context.Context, req GreylistRequest) (GreylistResult, error) {
	if strings.ContainsAny(req.Network, "{}") {
		return GreylistResult{}, fmt.Errorf("redis store: greylist check: network %q: must not contain { or }", req.Network)
	}
	// One hash tag for both keys: a Cluster runs the script on one node.
	tag := s.prefix + "{" + req.Network + "}"
	v, err := greylistScript.Run(ctx, s.c, []string{tag + "t:" + req.Triplet, tag + "n"},
		micros(req.Now), req.Delay.Microseconds(), req.RetryWindow.Microseconds(), req.Expire.Microseconds(), req.AutoAllowAfter,
	).Int64Slice()
	if err != nil {
		return GreylistResult{}, fmt.Errorf("redis store: greylist check: %w", err)
	}
	if len(v) != 3 {
		return GreylistResult{}, fmt.Errorf("redis store: greylist check: script returned %d values, want 3", len(v))
	}
	return GreylistResult{Status: GreylistStatus(v[0]), FirstSeen: fromMicros(v[1]), NetworkPasses: int(v[2])}, nil
}

// takeScript: GCRA. KEYS[1] holds the theoretical arrival time. ARGV: now,
// interval (microseconds), burst. Returns {allowed, remaining, retry after
// in microseconds}. Mirrors Bolt.Take.
var takeScript = redis.NewScript(`
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local newtat = tat + interval
local allowat = newtat - burst * interval
if now < allowat then return {0, 0, allowat - now} end
redis.call('SET', KEYS[1], string.format('%d', newtat), 'PX', math.max(1, math.ceil((newtat - now) / 1000)))
return {1, math.floor((now - allowat) / interval), 0}
`)

// Take implements Store.
func (s *Redis) Take(ctx context.Context, key string, now time.Time, r Rate) (TakeResult, error) {
	interval, burst, err := r.params()
	if err != nil {
		return TakeResult{}, fmt.Errorf("redis store: take %s: %w", key, err)
	}
	v, err := takeScript.Run(ctx, s.c, []string{s.prefix + "r:" + key}, micros(now), interval, burst).Int64Slice()
	if err != nil {
		return TakeResult{}, fmt.Errorf("redis store: rate take: %w", err)
	}
	if len(v) != 3 {
		return TakeResult{}, fmt.Errorf("redis store: rate take: script returned %d values, want 3", len(v))
	}
	return TakeResult{Allowed: v[0] == 1, Remaining: int(v[1]), RetryAfter: time.Duration(v[2]) * time.Microsecond}, nil
}

// acquireScript: KEYS[1] is a sorted set of holders scored by lease
// expiry. ARGV: now, holder, limit, lease (microseconds). Returns
// {acquired, held}. Mirrors Bolt.Acquire.
var acquireScript = redis.NewScript(`
local now, holder, limit, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if not redis.call('ZSCORE', KEYS[1], holder) then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= limit then return {0, n} end
end
redis.call('ZADD', KEYS[1], string.format('%d', now + lease), holder)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(top[2]) - now) / 1000)))
return {1, redis.call('ZCARD', KEYS[1])}
`)

// Acquire implements Store.
func (s *Redis) Acquire(ctx context.Context, key, holder string, limit int, lease time.Duration, now time.Time) (AcquireResult, error) {
	if holder == "" || len(holder) > maxHolder {
		return AcquireResult{}, fmt.Errorf("redis store: acquire %s: holder name must have 1 to %d bytes", key, maxHolder)
	}
	v, err := acquireScript.Run(ctx, s.c, []string{s.prefix + "c:" + key}, micros(now), holder, limit, lease.Microseconds()).Int64Slice()
	if err != nil {
		return AcquireResult{}, fmt.Errorf("redis store: acquire lease: %w", err)
	}
	if len(v) != 2 {
		return AcquireResult{}, fmt.Errorf("redis store: acquire lease: script returned %d values, want 2", len(v))
	}
	return AcquireResult{Acquired: v[0] == 1, Held: int(v[1])}, nil
}

// Release implements Store.
func (s *Redis) Release(ctx context.Context, key, holder string) error {
	if err := s.c.ZRem(ctx, s.prefix+"c:"+key, holder).Err(); err != nil {
		return fmt.Errorf("redis store: release lease: %w", err)
	}
	return nil
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis store: ping: %w", err)
	}
	return nil
}

// Close implements Store; safe to call twice. A shared client
// (RedisOptions.Client) stays open for its other users.
func (s *Redis) Close() error {
	if !s.owned {
		return nil
	}
	if err := s.c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redis store: close: %w", err)
	}
	return nil
}
