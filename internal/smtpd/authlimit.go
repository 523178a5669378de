// AUTH throttling across connections: failures counted per client (IPv4
// address, IPv6 /64) and per user name in a fixed window from the first
// failure.

package smtpd

import (
	"sync"
	"time"
)

// maxThrottleEntries bounds each map of the throttle: past it, expired
// entries are swept, and if that is not enough the oldest half goes.
const maxThrottleEntries = 1 << 16

type failures struct {
	n     int
	first time.Time
}

type authThrottle struct {
	lim     Limits
	now     func() time.Time
	mu      sync.Mutex
	clients map[clientKey]*failures
	users   map[string]*failures
}

func newAuthThrottle(l Limits, now func() time.Time) *authThrottle {
	return &authThrottle{lim: l, now: now, clients: map[clientKey]*failures{}, users: map[string]*failures{}}
}

// blocked reports whether the client or the user has used up its failures
// in the window.
func (a *authThrottle) blocked(client clientKey, user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	return a.count(a.clients[client], now) >= a.lim.AuthFailuresPerClient ||
		a.count(a.users[user], now) >= a.lim.AuthFailuresPerUser
}

// fail records a failure and returns how long to wait before answering
// it: AuthFailureDelay doubled for each earlier failure of the client or
// user in the window, at most AuthFailureDelayMax.
func (a *authThrottle) fail(client clientKey, user string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	earlier := max(a.count(a.clients[client], now), a.count(a.users[user], now))
	record(a.clients, client, now, a.lim.AuthFailureWindow.D())
	record(a.users, user, now, a.lim.AuthFailureWindow.D())
	d := a.lim.AuthFailureDelay.D()
	for range min(earlier, 32) {
		d *= 2
		if d >= a.lim.AuthFailureDelayMax.D() {
			break
		}
	}
	return min(d, a.lim.AuthFailureDelayMax.D())
}

func (a *authThrottle) count(f *failures, now time.Time) int {
	if f == nil || now.Sub(f.first) >= a.lim.AuthFailureWindow.D() {
		return 0
	}
	return f.n
}

func record[K comparable](m map[K]*failures, k K, now time.Time, window time.Duration) {
	f := m[k]
	if f == nil || now.Sub(f.first) >= window {
		if f == nil && len(m) >= maxThrottleEntries {
			prune(m, now, window)
		}
		m[k] = &failures{n: 1, first: now}
		return
	}
	f.n++
}

func prune[K comparable](m map[K]*failures, now time.Time, window time.Duration) {
	var oldest time.Time
	for k, f := range m {
		if now.Sub(f.first) >= window {
			delete(m, k)
		} else if oldest.IsZero() || f.first.Before(oldest) {
			oldest = f.first
		}
	}
	if len(m) < maxThrottleEntries/2 {
		return
	}
	cut := oldest.Add(now.Sub(oldest) / 2)
	for k, f := range m {
		if f.first.Before(cut) {
			delete(m, k)
		}
	}
}
