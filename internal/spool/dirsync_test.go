package spool

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// Writers arriving while a directory fsync runs share the next one: k
// writers that all renamed before that fsync began cost two fsyncs, not k.
// Each returns only after an fsync that began after it called.
func TestDirSyncGroupsConcurrentWriters(t *testing.T) {
	const k = 8
	d := newDirSyncer(t.TempDir())
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
		return syncDir(dir)
	}
	first := make(chan error, 1)
	go func() { first <- d.sync() }()
	<-inFirst
	errs := make(chan error, k)
	for range k {
		go func() { errs <- d.sync() }()
	}
	// Let the first fsync end only once all k wait for the next one.
	for {
		d.mu.Lock()
		n := d.waiting
		d.mu.Unlock()
		if n == k {
			break
		}
		runtime.Gosched()
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
	if calls != 2 {
		t.Fatalf("%d fsyncs for 1 + %d writers, want 2", calls, k)
	}
	if d.completed != uint64(calls) {
		t.Fatalf("completed %d, fsyncs %d", d.completed, calls)
	}
}

// A lone writer pays one fsync per call, and a failed fsync is the error
// of every writer it was to cover, and of no later one.
func TestDirSyncAloneAndErrors(t *testing.T) {
	d := newDirSyncer(t.TempDir())
	calls := 0
	boom := errors.New("disk on fire")
	d.fsync = func(string) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	}
	if err := d.sync(); err != nil || calls != 1 {
		t.Fatalf("first: %v, %d fsyncs", err, calls)
	}
	if err := d.sync(); !errors.Is(err, boom) {
		t.Fatalf("second: %v, want the fsync's error", err)
	}
	if err := d.sync(); err != nil || calls != 3 {
		t.Fatalf("third: %v, %d fsyncs: a later writer gets its own fsync and its own result", err, calls)
	}
}
