package spool

import (
	"fmt"
	"os"
	"sync"
)

// dirSyncer fsyncs one directory for many writers at once (group commit).
// A writer that has renamed its file into the directory calls sync, which
// returns once an fsync of the directory that began after the call has
// finished: that fsync covers the rename. While one fsync runs, every writer
// arriving waits for the next one, which a single writer then runs for all
// of them, so k concurrent transactions share one directory fsync instead
// of making k. A lone writer pays exactly one fsync, with no added delay.
type dirSyncer struct {
	dir   string
	fsync func(dir string) error // syncDir; replaced in tests

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // number of the last fsync begun
	completed uint64 // number of the last fsync finished
	failed    uint64 // number of the last fsync that failed, 0 if none
	failErr   error
	waiting   int // writers waiting for an fsync to end (tests watch it)
}

func newDirSyncer(dir string) *dirSyncer {
	d := &dirSyncer{dir: dir, fsync: syncDir}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// count reports how many directory fsyncs have begun.
func (d *dirSyncer) count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started
}

// sync returns when a directory fsync begun after the call has finished,
// with its error. Should a later fsync than the one that covered the call
// have failed by then, that error is returned too: a caller is never told
// "durable" by a sync that might not have been.
func (d *dirSyncer) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := d.started + 1 // the first fsync to begin from now on
	for d.completed < want {
		if d.running {
			d.waiting++
			d.cond.Wait()
			d.waiting--
			continue
		}
		d.running = true
		d.started++
		n := d.started
		d.mu.Unlock()
		err := d.fsync(d.dir)
		d.mu.Lock()
		d.running = false
		d.completed = n
		if err != nil {
			d.failed, d.failErr = n, err
		}
		d.cond.Broadcast()
	}
	if d.failed >= want {
		return d.failErr // syncDir's error names the directory
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}
