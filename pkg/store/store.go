package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store is the state shared by the greylist and ratelimit plugins.
type Store interface {
	// Greylist checks a greylist triplet at req.Now and updates it.
	Greylist(ctx context.Context, req GreylistRequest) (GreylistResult, error)
	// Take asks for one event under rate r for key at now (GCRA).
	Take(ctx context.Context, key string, now time.Time, r Rate) (TakeResult, error)
	// Acquire takes or renews holder's lease on one of limit slots of key
	// until now+lease. A holder that already has a live lease always gets
	// it renewed.
	Acquire(ctx context.Context, key, holder string, limit int, lease time.Duration, now time.Time) (AcquireResult, error)
	// Release gives holder's slot of key back.
	Release(ctx context.Context, key, holder string) error
	// Ping reports whether the store can be used now.
	Ping(ctx context.Context) error
	// Close releases the store; safe to call twice.
	Close() error
}

// GreylistStatus is the outcome of a greylist check.
type GreylistStatus int

// Greylist outcomes. New and Early are refusals; the others let mail through.
const (
	// GreylistNew: first sight (or the last try was outside the retry
	// window, or the pass had expired): the triplet is recorded.
	GreylistNew GreylistStatus = iota + 1
	// GreylistEarly: seen before, but the delay has not passed yet.
	GreylistEarly
	// GreylistPassed: retried after the delay and within the retry window;
	// the triplet now passes until it expires.
	GreylistPassed
	// GreylistKnown: the triplet had passed before; its expiry is renewed.
	GreylistKnown
	// GreylistAutoAllowed: the client network has passed enough triplets.
	GreylistAutoAllowed
)

var statusNames = map[GreylistStatus]string{GreylistNew: "new", GreylistEarly: "early",
	GreylistPassed: "passed", GreylistKnown: "known", GreylistAutoAllowed: "auto-allowed"}

func (s GreylistStatus) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Pass reports whether the status lets the mail through.
func (s GreylistStatus) Pass() bool { return s >= GreylistPassed }

// GreylistRequest is one greylist check.
type GreylistRequest struct {
	// Triplet identifies (network, sender, recipient); Network the client
	// network, used to count passed triplets for auto-allow.
	Triplet, Network string
	Now              time.Time
	// A retry passes when Delay <= elapsed <= RetryWindow. A passed triplet
	// lives for Expire after its last use.
	Delay, RetryWindow, Expire time.Duration
	// AutoAllowAfter > 0 lets every triplet of a network through once that
	// many triplets from it have passed (within Expire of the last one).
	AutoAllowAfter int
}

// GreylistResult is the outcome of a greylist check.
type GreylistResult struct {
	Status GreylistStatus
	// FirstSeen is when the triplet was first seen (zero for auto-allowed).
	FirstSeen time.Time
	// NetworkPasses counts the passed triplets of the network (only kept
	// when AutoAllowAfter > 0).
	NetworkPasses int
}

// RetryAt is when a refused triplet may pass.
func (r GreylistResult) RetryAt(delay time.Duration) time.Time { return r.FirstSeen.Add(delay) }

// Rate is Count events per Window with at most Burst back to back (GCRA:
// one event every Window/Count, and a client that was quiet may use up to
// Burst at once; Burst <= 0 means Count).
type Rate struct {
	Count  int
	Window time.Duration
	Burst  int
}

// interval is the emission interval in microseconds, burst the tolerance in events.
func (r Rate) params() (interval int64, burst int64, err error) {
	if r.Count <= 0 || r.Window <= 0 {
		return 0, 0, fmt.Errorf("invalid rate %d per %v: count and window must be positive", r.Count, r.Window)
	}
	interval = r.Window.Microseconds() / int64(r.Count)
	if interval < 1 {
		return 0, 0, fmt.Errorf("invalid rate %d per %v: more than one event per microsecond", r.Count, r.Window)
	}
	burst = int64(r.Burst)
	if burst <= 0 {
		burst = int64(r.Count)
	}
	return interval, burst, nil
}

// TakeResult is the outcome of Take.
type TakeResult struct {
	Allowed bool
	// Remaining is how many more events would be allowed right now.
	Remaining int
	// RetryAfter is how long until the next event is allowed (0 when allowed).
	RetryAfter time.Duration
}

// AcquireResult is the outcome of Acquire.
type AcquireResult struct {
	Acquired bool
	// Held is how many live leases key has after the call.
	Held int
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// micros returns t in microseconds since the epoch: exact in Lua's doubles
// (below 2^53) for the next two hundred years.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}
