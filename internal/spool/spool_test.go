package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func entry(from string, rcpts ...string) *Entry {
	return &Entry{
		Envelope: Envelope{MailFrom: from, RcptTo: rcpts, ClientIP: "127.0.0.1", HELO: "client.test"},
		Results:  []StageResult{{Stage: "post-reception", Plugin: "t", Action: "accept"}},
		Message:  []byte("Subject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\x00\xff\r\n"),
	}
}

func open(t *testing.T, dir string, opts ...Option) *Spool {
	t.Helper()
	s, _, err := Open(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPutGetRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tests := []struct {
		name       string
		e          *Entry
		quarantine bool
	}{
		{"queued", entry("a@x.test", "b@y.test", "c@y.test"), false},
		{"null sender", entry("", "b@y.test"), false},
		{"quarantined", entry("a@x.test", "b@y.test"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.Put(tt.e, tt.quarantine)
			require.NoError(t, err)
			get := s.Get
			if tt.quarantine {
				get = s.GetQuarantined
			}
			got, err := get(id)
			require.NoError(t, err)
			assert.Equal(t, tt.e.Message, got.Message)
			assert.Equal(t, tt.e.Envelope, got.Envelope)
			assert.Equal(t, tt.e.Results, got.Results)
			assert.True(t, tt.e.ReceivedAt.Equal(got.ReceivedAt))
			_, err = os.Stat(filepath.Join(dir, map[bool]string{false: queueDir, true: quarantineDir}[tt.quarantine], id+suffix))
			assert.NoError(t, err)
		})
	}
	tmp, err := os.ReadDir(filepath.Join(dir, tmpDir))
	require.NoError(t, err)
	assert.Empty(t, tmp, "nothing may be left in tmp/")
	assert.Len(t, s.List(), 2)
	q, err := s.Quarantined()
	require.NoError(t, err)
	assert.Len(t, q, 1)
}

func TestOpenDiscardsHalfWrittenAndKeepsQueued(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir)
	require.NoError(t, err)
	id, err := s.Put(entry("a@x.test", "b@y.test"), false)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// A crash between create and rename leaves files in tmp/: partial JSON,
	// an empty file, a complete-looking one. None was acknowledged.
	leftovers := map[string]string{
		"0001.123":   `{"id":"0001","message":"aGVs`,
		"0002.456":   ``,
		"0003.789":   `{"id":"0003","envelope":{"rcpt_to":["x@y"]},"message":"eA=="}`,
		"weird name": "x",
	}
	for name, data := range leftovers {
		require.NoError(t, os.WriteFile(filepath.Join(dir, tmpDir, name), []byte(data), 0o600))
	}
	// And an unreadable file in queue/ (disk corruption).
	require.NoError(t, os.WriteFile(filepath.Join(dir, queueDir, "bad1"+suffix), []byte("{"), 0o600))

	s2, discarded, err := Open(dir)
	require.NoError(t, err)
	defer s2.Close()
	assert.Equal(t, len(leftovers), discarded)
	assert.Equal(t, 1, s2.Corrupt())
	tmp, err := os.ReadDir(filepath.Join(dir, tmpDir))
	require.NoError(t, err)
	assert.Empty(t, tmp)
	items := s2.List()
	require.Len(t, items, 1)
	assert.Equal(t, id, items[0].ID)
	_, err = os.Stat(filepath.Join(dir, quarantineDir, "bad1"+suffix+".corrupt"))
	assert.NoError(t, err)
}

func TestLockedBySecondOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, _, err := Open(dir)
	assert.ErrorIs(t, err, ErrLocked)
	require.NoError(t, s.Close())
	s2, _, err := Open(dir)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestClaimDeferComplete(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	s := open(t, dir, WithClock(clk.now))
	idA, err := s.Put(entry("a@x.test", "r1@y.test", "r2@y.test", "r3@y.test"), false)
	require.NoError(t, err)
	clk.advance(time.Microsecond) // ids sort by time; ties are random
	idB, err := s.Put(entry("b@x.test", "r3@y.test"), false)
	require.NoError(t, err)
	select {
	case <-s.Notify():
	default:
		t.Fatal("Put of a due entry did not signal")
	}

	got, err := s.Claim(10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, idA, got[0].ID)
	again, err := s.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, again, "claimed entries are not handed out twice")

	// A: r1 delivered, r3 failed, r2 deferred by a minute.
	a := got[0]
	a.Delivered = append(a.Delivered, "r1@y.test")
	a.Failed = append(a.Failed, "r3@y.test")
	a.Attempts++
	a.LastError = "disk full"
	require.NoError(t, s.Defer(a, clk.now().Add(time.Minute)))
	require.NoError(t, s.Complete(idB))
	assert.ErrorIs(t, s.Complete(idB), ErrNotHeld)

	none, err := s.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, none, "deferred entry is not due yet")
	next, ok := s.NextDue()
	require.True(t, ok)
	assert.Equal(t, clk.now().Add(time.Minute), next)

	// Reopen (a restart) before it is due: the deferral survives.
	require.NoError(t, s.Close())
	s2 := open(t, dir, WithClock(clk.now))
	none, err = s2.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, none)
	clk.advance(time.Minute)
	due, err := s2.Claim(10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, []string{"r2@y.test"}, due[0].Pending())
	assert.Equal(t, 1, due[0].Attempts)
	assert.Equal(t, "disk full", due[0].LastError)

	s2.ReleaseUntil(idA, clk.now().Add(time.Second))
	none, err = s2.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, none, "released until later")
	clk.advance(time.Second)
	due, err = s2.Claim(10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	require.NoError(t, s2.Quarantine(due[0], "held by test"))
	assert.Empty(t, s2.List())
	q, err := s2.GetQuarantined(idA)
	require.NoError(t, err)
	assert.Equal(t, "held by test", q.Reason)
	_, err = s2.Get(idA)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const writers, each = 8, 25
	var g errgroup.Group
	var mu sync.Mutex
	ids := map[string]bool{}
	for w := range writers {
		g.Go(func() error {
			for i := range each {
				e := entry(fmt.Sprintf("w%d@x.test", w), fmt.Sprintf("r%d@y.test", i))
				e.Message = fmt.Appendf(nil, "Message-ID: <%d.%d@x>\r\n\r\nbody %d %d\r\n", w, i, w, i)
				id, err := s.Put(e, false)
				if err != nil {
					return err
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
			return nil
		})
	}
	// Claimers run alongside the writers.
	var cmu sync.Mutex
	claimed := map[string]int{}
	var cg errgroup.Group
	stop := make(chan struct{})
	for range 2 {
		cg.Go(func() error {
			for {
				es, err := s.Claim(5)
				if err != nil {
					return err
				}
				cmu.Lock()
				for _, e := range es {
					claimed[e.ID]++
				}
				cmu.Unlock()
				select {
				case <-stop:
					return nil
				case <-s.Notify():
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
	}
	require.NoError(t, g.Wait())
	close(stop)
	require.NoError(t, cg.Wait())
	assert.Len(t, ids, writers*each, "ids are unique")
	for id, n := range claimed {
		assert.Equal(t, 1, n, "entry %s claimed twice", id)
	}
	require.NoError(t, s.Close())

	s2 := open(t, dir)
	items := s2.List()
	require.Len(t, items, writers*each)
	for _, it := range items {
		assert.True(t, ids[it.ID])
		e, err := s2.Get(it.ID)
		require.NoError(t, err)
		assert.Contains(t, string(e.Message), "body ")
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{0, time.Minute}, {1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute},
		{6, 32 * time.Minute}, {7, time.Hour}, {50, time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempts), func(t *testing.T) {
			assert.Equal(t, tt.want, Backoff(tt.attempts, time.Minute, time.Hour))
		})
	}
}

func TestInvalidIDs(t *testing.T) {
	s := open(t, t.TempDir())
	for _, id := range []string{"../x", "a/b", "", "with space"} {
		t.Run(id, func(t *testing.T) {
			_, err := s.Get(id)
			assert.True(t, errors.Is(err, ErrNotFound))
			e := entry("a@x", "b@y")
			e.ID = id
			if id != "" {
				_, err = s.Put(e, false)
				assert.Error(t, err)
			}
		})
	}
}

// TestPutOverClaimedEntry: a Put that replaces an entry someone holds (a
// DSN spooled again under its derived id when the bounced message is
// retried) must not hand it out a second time while the first holder is
// still delivering it.
func TestPutOverClaimedEntry(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), WithClock(clk.now))
	e := entry("", "a@x.test")
	e.ID = "q1b0"
	_, err := s.Put(e, false)
	require.NoError(t, err)
	got, err := s.Claim(10)
	require.NoError(t, err)
	require.Len(t, got, 1)

	again := entry("", "a@x.test")
	again.ID = "q1b0"
	_, err = s.Put(again, false)
	require.NoError(t, err)
	twice, err := s.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, twice, "a held entry is not handed out again")
	require.NoError(t, s.Complete("q1b0"))
	assert.Empty(t, s.List())
}
