package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of store, as written in a plugin's `store` key.
const (
	KindBolt  = "bolt"
	KindRedis = "redis"
)

// Options choose and configure a store.
type Options struct {
	Kind  string // KindBolt or KindRedis
	Bolt  BoltOptions
	Redis RedisOptions
}

// Open opens the store o describes.
func Open(o Options) (Store, error) {
	switch o.Kind {
	case KindBolt:
		return OpenBolt(o.Bolt)
	case KindRedis:
		return NewRedis(o.Redis)
	}
	return nil, fmt.Errorf("unknown store %q (valid: %s, %s)", o.Kind, KindBolt, KindRedis)
}

// Outage logs a store's failures once per outage: the first failure is
// logged as an error, later ones only counted, and the first success after
// them logs the recovery with how long it took and how many calls failed.
type Outage struct {
	log  *slog.Logger
	what string
	now  func() time.Time

	isDown atomic.Bool // fast path for the common case: up and fine
	mu     sync.Mutex
	down   bool
	since  time.Time
	failed int64
}

// NewOutage returns an outage logger for the store described by what
// ("redis 127.0.0.1:6379"), logging to log with time from now.
func NewOutage(log *slog.Logger, what string, now func() time.Time) *Outage {
	return &Outage{log: log, what: what, now: now}
}

// Observe records the outcome of one store call. A cancelled context is
// the caller giving up, not the store failing, and is not recorded.
func (o *Outage) Observe(err error) {
	if err == nil && !o.isDown.Load() || err != nil && errors.Is(err, context.Canceled) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err != nil && !o.down:
		o.down, o.since, o.failed = true, o.now(), 1
		o.isDown.Store(true)
		o.log.Error("state store unavailable; on_error applies until it recovers (logged once per outage)",
			"store", o.what, "err", err)
	case err != nil:
		o.failed++
	case o.down:
		o.down = false
		o.isDown.Store(false)
		o.log.Info("state store recovered", "store", o.what,
			"outage", o.now().Sub(o.since), "failed_calls", o.failed)
	}
}

// Down reports whether the last recorded call failed.
func (o *Outage) Down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.down
}
