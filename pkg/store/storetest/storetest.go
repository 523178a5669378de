// Package storetest helps tests of the store and of the plugins that use
// it: a Redis key prefix of their own on the real test server (cleaned up
// afterwards) and a clock moved by hand.
package storetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/testenv"
)

var seq atomic.Int64

// Redis returns the address of the test Redis server (ELEMTA_TEST_REDIS, set
// by tools/testenv/start.sh) and a key prefix no other test uses. Every key
// under the prefix is deleted when the test ends. Without the server the
// test is skipped, or failed under CI=true.
func Redis(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = testenv.Require(t, testenv.Redis)
	prefix = fmt.Sprintf("elemta-test:%s:%d:%d:", strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()), time.Now().UnixNano(), seq.Add(1))
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		if err := DeletePrefix(context.Background(), c, prefix); err != nil {
			t.Errorf("clean up redis keys %s*: %v", prefix, err)
		}
	})
	return addr, prefix
}

// DeletePrefix deletes every key that starts with prefix, one key per
// command (a Cluster node refuses a DEL of keys in several slots).
func DeletePrefix(ctx context.Context, c *redis.Client, prefix string) error {
	iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		p := c.Pipeline()
		for _, k := range keys[:n] {
			p.Del(ctx, k)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Clock is a clock that only moves when told; it satisfies registry.Clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// LogRecorder keeps the records of a slog.Logger and everything derived from it.
type LogRecorder struct {
	mu      sync.Mutex
	records []string // "LEVEL msg"
}

// Handler returns a handler that records into l.
func (l *LogRecorder) Handler() slog.Handler {
	return &recHandler{rec: l, Handler: slog.NewTextHandler(io.Discard, nil)}
}

// Count returns how many records of level contain substr in their message.
func (l *LogRecorder) Count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if strings.HasPrefix(r, level.String()+" ") && strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

type recHandler struct {
	slog.Handler
	rec *LogRecorder
}

func (h *recHandler) Handle(_ context.Context, r slog.Record) error {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	h.rec.records = append(h.rec.records, r.Level.String()+" "+r.Message)
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{Handler: h.Handler.WithAttrs(as), rec: h.rec}
}

func (h *recHandler) WithGroup(g string) slog.Handler {
	return &recHandler{Handler: h.Handler.WithGroup(g), rec: h.rec}
}

// CutProxy forwards a loopback port to the real Redis so a test can cut
// the link (an outage) and restore it on the same address.
type CutProxy struct {
	t      testing.TB
	target string
	Addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

// NewCutProxy forwards a new loopback port to target until the test ends.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	p := &CutProxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.wg.Wait) // cleanups run last-in first-out: cut, then wait
	t.Cleanup(p.Cut)
	return p
}

func (p *CutProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.Addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
}

// Cut closes the listener and every forwarded connection.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore listens again on the same address.
func (p *CutProxy) Restore() { p.listen(p.Addr) }
