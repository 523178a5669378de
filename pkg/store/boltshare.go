package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Bolt is a handle on the embedded store: one bbolt file, one writer at a
// time, every primitive inside a write transaction, committed by a single
// writer goroutine (group commit: a lone caller is committed at once,
// callers that arrive during a commit share the next transaction and its
// fsync; bolt.DB.Batch would make a lone caller wait its 10ms delay).
//
// bbolt locks its file for one open at a time, so a file already open in
// this process (by the same absolute path) is shared, not opened again: a config reload builds the new
// plugin instance (OpenBolt in its Start) while the old one still serves,
// and both use the one open file until the old closes. The file is closed
// when its last handle is; the first opener's LockTimeout, SweepInterval
// and clock stay in force until then. Another process holding the file
// (a second server, or the old binary of an upgrade) still makes
// OpenBolt wait up to LockTimeout and fail.
type Bolt struct {
	f      *boltFile
	key    string
	closed atomic.Bool
	once   sync.Once
}

var _ Store = (*Bolt)(nil)

// boltFiles are the bbolt files open in this process, by absolute path.
var boltFiles = struct {
	mu    sync.Mutex
	files map[string]*sharedBolt
}{files: map[string]*sharedBolt{}}

type sharedBolt struct {
	f    *boltFile
	refs int
}

// OpenBolt opens (creating when missing) the bbolt store at o.Path and
// starts its sweeper, or shares the file when this process has it open.
func OpenBolt(o BoltOptions) (*Bolt, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("bolt store: no path")
	}
	key, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("bolt store: %s: %w", o.Path, err)
	}
	boltFiles.mu.Lock()
	defer boltFiles.mu.Unlock()
	if sh, ok := boltFiles.files[key]; ok {
		sh.refs++
		return &Bolt{f: sh.f, key: key}, nil
	}
	f, err := openBoltFile(o)
	if err != nil {
		return nil, err
	}
	boltFiles.files[key] = &sharedBolt{f: f, refs: 1}
	return &Bolt{f: f, key: key}, nil
}

// Close gives the handle back, closing the file with the last one; safe
// to call twice. Calls on a closed handle fail with ErrClosed.
func (s *Bolt) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		boltFiles.mu.Lock()
		sh := boltFiles.files[s.key]
		sh.refs--
		last := sh.refs == 0
		if last {
			delete(boltFiles.files, s.key)
		}
		boltFiles.mu.Unlock()
		if last {
			err = s.f.close()
		}
	})
	return err
}

func (s *Bolt) check(what string) error {
	if s.closed.Load() {
		return fmt.Errorf("bolt store: %s: %w", what, ErrClosed)
	}
	return nil
}

// Greylist implements Store.
func (s *Bolt) Greylist(ctx context.Context, req GreylistRequest) (GreylistResult, error) {
	if err := s.check("greylist"); err != nil {
		return GreylistResult{}, err
	}
	return s.f.Greylist(ctx, req)
}

// Take implements Store.
func (s *Bolt) Take(ctx context.Context, key string, at time.Time, r Rate) (TakeResult, error) {
	if err := s.check("take"); err != nil {
		return TakeResult{}, err
	}
	return s.f.Take(ctx, key, at, r)
}

// Acquire implements Store.
func (s *Bolt) Acquire(ctx context.Context, key, holder string, limit int, lease time.Duration, at time.Time) (AcquireResult, error) {
	if err := s.check("acquire"); err != nil {
		return AcquireResult{}, err
	}
	return s.f.Acquire(ctx, key, holder, limit, lease, at)
}

// Release implements Store.
func (s *Bolt) Release(ctx context.Context, key, holder string) error {
	if err := s.check("release"); err != nil {
		return err
	}
	return s.f.Release(ctx, key, holder)
}

// Ping implements Store.
func (s *Bolt) Ping(ctx context.Context) error {
	if err := s.check("ping"); err != nil {
		return err
	}
	return s.f.Ping(ctx)
}

// Sweep deletes every record that expired at or before now and returns how
// many it deleted.
func (s *Bolt) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.check("sweep"); err != nil {
		return 0, err
	}
	return s.f.Sweep(ctx, now)
}
