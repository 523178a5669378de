package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// holdDir holds entries an operator put on hold: never claimed for
// delivery until released (Unhold), kept across restarts.
const holdDir = "hold"

// ErrClaimed is returned for an operation on an entry a delivery attempt
// holds right now: try again once it is settled.
var ErrClaimed = errors.New("spool: entry is being delivered")

// Hold moves a queued entry nobody has claimed to hold/: it is not
// delivered until Unhold.
func (s *Spool) Hold(id string) error {
	if err := s.take(id); err != nil {
		return err
	}
	if err := s.move(id, queueDir, holdDir); err != nil {
		s.mu.Lock()
		s.index[id] = &meta{next: s.now()}
		s.mu.Unlock()
		return fmt.Errorf("spool: hold %s: %w", id, err)
	}
	return nil
}

// Unhold moves a held entry back into the queue, due at once.
func (s *Spool) Unhold(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err := s.move(id, holdDir, queueDir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s is not held", ErrNotFound, id)
		}
		return fmt.Errorf("spool: release %s: %w", id, err)
	}
	s.mu.Lock()
	s.index[id] = &meta{next: s.now()}
	s.mu.Unlock()
	s.signal()
	return nil
}

// RetryNow makes a queued entry nobody has claimed due at once (in memory:
// after a restart it is due at its stored time).
func (s *Spool) RetryNow(id string) error {
	s.mu.Lock()
	m, ok := s.index[id]
	switch {
	case !ok:
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case m.claimed:
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrClaimed, id)
	}
	m.next = s.now()
	s.mu.Unlock()
	s.signal()
	return nil
}

// Delete removes a queued entry nobody has claimed, or a held one, for
// good: no delivery, no DSN.
func (s *Spool) Delete(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	held := filepath.Join(s.root, holdDir, id+suffix)
	if err := os.Remove(held); err == nil {
		return syncDir(filepath.Dir(held))
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete %s: %w", id, err)
	}
	if err := s.take(id); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.root, queueDir, id+suffix)); err != nil {
		s.mu.Lock()
		s.index[id] = &meta{next: s.now()}
		s.mu.Unlock()
		return fmt.Errorf("spool: delete %s: %w", id, err)
	}
	return syncDir(filepath.Join(s.root, queueDir))
}

// Held lists the ids in hold/, oldest first.
func (s *Spool) Held() ([]string, error) { return s.ids(holdDir) }

// GetHeld reads a held entry.
func (s *Spool) GetHeld(id string) (*Entry, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e, err := readEntry(filepath.Join(s.root, holdDir, id+suffix))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return e, err
}

// IDTime returns when an id made by NewID was made (ids of DSNs start
// with the id of the message they report on).
func IDTime(id string) (time.Time, bool) {
	if len(id) < 13 {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(id[:13], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

// take removes an unclaimed queued entry from the index, so no delivery
// claims it while the caller moves or removes its file.
func (s *Spool) take(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.index[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case m.claimed:
		return fmt.Errorf("%w: %s", ErrClaimed, id)
	}
	delete(s.index, id)
	return nil
}

// move renames id's file from one directory of the spool to another and
// syncs both.
func (s *Spool) move(id, from, to string) error {
	if err := os.MkdirAll(filepath.Join(s.root, to), 0o750); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(s.root, from, id+suffix), filepath.Join(s.root, to, id+suffix)); err != nil {
		return err
	}
	if err := syncDir(filepath.Join(s.root, to)); err != nil {
		return err
	}
	return syncDir(filepath.Join(s.root, from))
}

func (s *Spool) ids(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), suffix); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
