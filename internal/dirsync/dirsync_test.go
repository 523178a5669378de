package dirsync

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Writers arriving while a directory fsync runs share the next one: k
// writers that all renamed before that fsync began cost two fsyncs, not k.
// Each returns only after an fsync that began after it called.
func TestSyncGroupsConcurrentWriters(t *testing.T) {
	const k = 8
	d := New(t.TempDir(), nil)
	inFirst, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	calls := 0
	d.fsync = func(dir string) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			close(inFirst)
			<-release // the first fsync runs until every writer waits
		}
		return Dir(dir)
	}
	first := make(chan error, 1)
	go func() { first <- d.Sync() }()
	<-inFirst
	errs := make(chan error, k)
	for range k {
		go func() { errs <- d.Sync() }()
	}
	waitForWaiting(d, k) // let the first fsync end only once all k wait for the next one
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range k {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2 {
		t.Fatalf("%d fsyncs for 1 + %d writers, want 2", calls, k)
	}
	if d.completed != uint64(calls) {
		t.Fatalf("completed %d, fsyncs %d", d.completed, calls)
	}
}

// A lone writer pays one fsync per call, and a failed fsync is the error
// of every writer it was to cover, and of no later one.
func TestSyncAloneAndErrors(t *testing.T) {
	d := New(t.TempDir(), nil)
	calls := 0
	boom := errors.New("disk on fire")
	d.fsync = func(string) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	}
	if err := d.Sync(); err != nil || calls != 1 {
		t.Fatalf("first: %v, %d fsyncs", err, calls)
	}
	if err := d.Sync(); !errors.Is(err, boom) {
		t.Fatalf("second: %v, want the fsync's error", err)
	}
	if err := d.Sync(); err != nil || calls != 3 {
		t.Fatalf("third: %v, %d fsyncs: a later writer gets its own fsync and its own result", err, calls)
	}
}

// A Set shares one directory's fsyncs among its concurrent callers, keeps
// other directories apart, and holds no directory nobody syncs.
func TestSet(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	inFirst, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	s := NewSet(func(dir string) error {
		mu.Lock()
		calls[dir]++
		n := calls[dir]
		mu.Unlock()
		if dir == a && n == 1 {
			close(inFirst)
			<-release
		}
		return Dir(dir)
	})
	const k = 8
	first := make(chan error, 1)
	go func() { first <- s.Sync(a) }()
	<-inFirst
	errs := make(chan error, k)
	for range k {
		go func() { errs <- s.Sync(a) }()
	}
	s.mu.Lock()
	m := s.dirs[a]
	s.mu.Unlock()
	waitForWaiting(m.Syncer, k)       // every writer waits on a's syncer
	if err := s.Sync(b); err != nil { // b is not held up by a's fsync
		t.Fatal(err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range k {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls[a] != 2 || calls[b] != 1 {
		t.Fatalf("fsyncs %v: want 2 of a (1 + %d writers), 1 of b", calls, k)
	}
	if s.Count() != 3 {
		t.Fatalf("Count %d, want the 3 fsyncs made", s.Count())
	}
	if len(s.dirs) != 0 {
		t.Fatalf("%d directories held after every Sync returned", len(s.dirs))
	}
	if err := s.Sync(filepath.Join(a, "gone")); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("Sync of a missing directory: %v", err)
	}
}

// waitForWaiting returns once k writers wait for s's next fsync.
func waitForWaiting(s *Syncer, k int) {
	for {
		s.mu.Lock()
		n := s.waiting
		s.mu.Unlock()
		if n == k {
			return
		}
		runtime.Gosched()
	}
}
