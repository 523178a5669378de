// Package dirsync fsyncs directories for many writers at once (group
// commit): a writer that has linked or renamed a file into a directory
// calls Sync, which returns once an fsync of the directory that began after
// the call has finished, and so covers the name. Writers that arrive while
// one fsync runs share the next, so k concurrent writers cost two fsyncs
// instead of k; a lone writer pays exactly one, with no added delay.
package dirsync

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Syncer group-commits the fsyncs of one directory.
type Syncer struct {
	dir   string
	fsync func(dir string) error

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // number of the last fsync begun
	completed uint64 // number of the last fsync finished
	failed    uint64 // number of the last fsync that failed, 0 if none
	failErr   error
	waiting   int // writers waiting for an fsync to end (tests watch it)
}

// New returns the Syncer of dir; fsync fsyncs a directory (nil: Dir).
func New(dir string, fsync func(dir string) error) *Syncer {
	if fsync == nil {
		fsync = Dir
	}
	s := &Syncer{dir: dir, fsync: fsync}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Count reports how many fsyncs have begun.
func (s *Syncer) Count() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Sync returns when an fsync of the directory begun after the call has
// finished, with its error. Should a later fsync than the one that covered
// the call have failed by then, that error is returned too: a caller is
// never told "durable" by a sync that might not have been.
func (s *Syncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.started + 1 // the first fsync to begin from now on
	for s.completed < want {
		if s.running {
			s.waiting++
			s.cond.Wait()
			s.waiting--
			continue
		}
		s.running = true
		s.started++
		n := s.started
		s.mu.Unlock()
		err := s.fsync(s.dir)
		s.mu.Lock()
		s.running = false
		s.completed = n
		if err != nil {
			s.failed, s.failErr = n, err
		}
		s.cond.Broadcast()
	}
	if s.failed >= want {
		return s.failErr
	}
	return nil
}

// Set group-commits the fsyncs of any directories: callers syncing one
// directory at the same time share its fsyncs, as a Syncer's. It holds a
// directory only while someone syncs it, so its size is bounded by the
// callers, not by the directories ever synced (every Maildir's new/).
type Set struct {
	fsync  func(dir string) error
	fsyncs atomic.Uint64

	mu   sync.Mutex
	dirs map[string]*member
}

type member struct {
	*Syncer
	users int
}

// NewSet returns an empty Set; fsync fsyncs a directory (nil: Dir).
func NewSet(fsync func(dir string) error) *Set {
	if fsync == nil {
		fsync = Dir
	}
	s := &Set{dirs: map[string]*member{}}
	s.fsync = func(dir string) error {
		s.fsyncs.Add(1)
		return fsync(dir)
	}
	return s
}

// Count reports how many fsyncs the Set has begun, of all directories.
func (s *Set) Count() uint64 { return s.fsyncs.Load() }

// Sync is Syncer.Sync for dir.
func (s *Set) Sync(dir string) error {
	s.mu.Lock()
	m := s.dirs[dir]
	if m == nil {
		m = &member{Syncer: New(dir, s.fsync)}
		s.dirs[dir] = m
	}
	m.users++
	s.mu.Unlock()

	err := m.Sync()

	s.mu.Lock()
	if m.users--; m.users == 0 {
		delete(s.dirs, dir)
	}
	s.mu.Unlock()
	return err
}

// Dir fsyncs the directory dir, making the names linked into it durable.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
