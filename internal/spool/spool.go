// Package spool is Elemta's durable on-disk message queue. A message (its
// bytes, envelope and stage results) is one JSON file. Put writes it to
// tmp/, fsyncs it, renames it into queue/ and fsyncs the directory before
// it returns, so a caller that replies 250 after Put never loses the
// message, even on kill -9. Concurrent writers share directory fsyncs
// (group commit, internal/dirsync): each still returns only after an fsync of
// the directory that began after its rename. Files left in tmp/ by a crash
// were never acknowledged and are discarded by Open.
//
// Layout under the spool root:
//
//	lock         flock(2)ed by the process that owns the spool
//	tmp/         files being written (and, unlinked, messages being received: Incoming)
//	queue/       <id>.json, messages waiting for delivery
//	quarantine/  <id>.json, messages held by a quarantine verdict
//
// One process owns a spool at a time; within it a Spool is safe for
// concurrent use. Claim hands each due entry to one caller until it calls
// Complete, Defer or Quarantine (or Release).
package spool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/dirsync"
)

// Errors a caller can test with errors.Is.
var (
	ErrNotFound = errors.New("spool: no such entry")
	ErrLocked   = errors.New("spool: directory is in use by another process")
	ErrNotHeld  = errors.New("spool: entry is not claimed")
)

// Envelope is the SMTP envelope of a spooled message.
type Envelope struct {
	ClientIP string   `json:"client_ip,omitempty"`
	HELO     string   `json:"helo,omitempty"`
	MailFrom string   `json:"mail_from"` // "" is the null sender
	RcptTo   []string `json:"rcpt_to"`
	AuthUser string   `json:"auth_user,omitempty"`
	TLS      bool     `json:"tls,omitempty"`
	// SMTPUTF8 is MAIL FROM's SMTPUTF8 parameter (RFC 6531): the message
	// may hold UTF-8 addresses and header fields. Body is its BODY
	// parameter ("7BIT", "8BITMIME"; "" when not given).
	SMTPUTF8 bool   `json:"smtputf8,omitempty"`
	Body     string `json:"body,omitempty"`
}

// StageResult records one plugin's outcome at one stage, for the record.
type StageResult struct {
	Stage   string  `json:"stage"`
	Plugin  string  `json:"plugin"`
	Action  string  `json:"action"`
	Score   float64 `json:"score,omitempty"`
	Details string  `json:"details,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Entry is one spooled message.
type Entry struct {
	ID         string        `json:"id"`
	ReceivedAt time.Time     `json:"received_at"`
	Envelope   Envelope      `json:"envelope"`
	Results    []StageResult `json:"results,omitempty"`
	// Delivered lists the recipients already delivered and Failed those
	// that failed for good (and were bounced): a later attempt only
	// handles the others.
	Delivered []string `json:"delivered,omitempty"`
	Failed    []string `json:"failed,omitempty"`
	// Attempts counts deferred delivery attempts; NextAttempt is when the
	// entry is due again; LastError says why the last attempt failed.
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	// Reason says why a quarantined entry is held.
	Reason  string `json:"reason,omitempty"`
	Message []byte `json:"message"`
}

// Pending returns the recipients neither delivered nor failed, in
// envelope order.
func (e *Entry) Pending() []string {
	var out []string
	for _, r := range e.Envelope.RcptTo {
		if !slices.Contains(e.Delivered, r) && !slices.Contains(e.Failed, r) {
			out = append(out, r)
		}
	}
	return out
}

// Spool is an open spool directory.
type Spool struct {
	root string
	lock *os.File
	now  func() time.Time

	mu      sync.Mutex
	index   map[string]*meta // queue/ entries
	closed  bool
	corrupt int
	notify  chan struct{}
	// dirSync group-commits the directory fsyncs of concurrent writers.
	dirSync map[string]*dirsync.Syncer
}

type meta struct {
	next    time.Time
	claimed bool
}

// Option configures Open.
type Option func(*Spool)

// WithClock makes the spool read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(s *Spool) { s.now = now } }

const (
	tmpDir        = "tmp"
	queueDir      = "queue"
	quarantineDir = "quarantine"
	suffix        = ".json"
)

// Open opens (creating if needed) the spool at root, takes its lock,
// discards half-written files in tmp/ and indexes queue/. It returns the
// number of files discarded along with the spool.
func Open(root string, opts ...Option) (*Spool, int, error) {
	for _, d := range []string{root, filepath.Join(root, tmpDir), filepath.Join(root, queueDir), filepath.Join(root, quarantineDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, 0, fmt.Errorf("spool: create %s: %w", d, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: open lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrLocked, root, err)
	}
	s := &Spool{root: root, lock: lock, now: time.Now, index: map[string]*meta{}, notify: make(chan struct{}, 1), dirSync: map[string]*dirsync.Syncer{}}
	for _, d := range []string{queueDir, quarantineDir} {
		s.dirSync[d] = dirsync.New(filepath.Join(root, d), syncDir)
	}
	for _, o := range opts {
		o(s)
	}
	discarded, err := s.recover()
	if err != nil {
		lock.Close()
		return nil, 0, err
	}
	return s, discarded, nil
}

// recover removes tmp/ leftovers and loads queue/ into the index.
func (s *Spool) recover() (int, error) {
	tmp := filepath.Join(s.root, tmpDir)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return 0, fmt.Errorf("spool: read %s: %w", tmp, err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil {
			return 0, fmt.Errorf("spool: discard half-written %s: %w", e.Name(), err)
		}
	}
	if len(ents) > 0 {
		if err := syncDir(tmp); err != nil {
			return 0, err
		}
	}
	q := filepath.Join(s.root, queueDir)
	qents, err := os.ReadDir(q)
	if err != nil {
		return 0, fmt.Errorf("spool: read %s: %w", q, err)
	}
	for _, e := range qents {
		id, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || !validID(id) {
			continue
		}
		ent, err := readEntry(filepath.Join(q, e.Name()))
		if err != nil {
			// Unreadable (disk corruption; a crash cannot cause it): keep
			// it out of the way for a human rather than refuse to start.
			if rerr := os.Rename(filepath.Join(q, e.Name()), filepath.Join(s.root, quarantineDir, e.Name()+".corrupt")); rerr != nil {
				return 0, errors.Join(err, rerr)
			}
			s.corrupt++
			continue
		}
		s.index[id] = &meta{next: ent.NextAttempt}
	}
	return len(ents), nil
}

// Close releases the spool's lock. Entries stay on disk.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lock.Close()
}

// DirSyncs reports how many fsyncs of the queue/ and quarantine/
// directories the spool has made since Open (with group commit, fewer than
// the entries written when writers overlap).
func (s *Spool) DirSyncs() uint64 {
	var n uint64
	for _, d := range s.dirSync {
		n += d.Count()
	}
	return n
}

// Corrupt returns how many unreadable queue files Open moved to
// quarantine/ (with the suffix .corrupt).
func (s *Spool) Corrupt() int { return s.corrupt }

// Root returns the spool directory.
func (s *Spool) Root() string { return s.root }

// Notify returns a channel that receives a value after Put adds an entry
// that is due now (buffered: one pending signal at most).
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// NewID returns a fresh queue id: sortable by time, safe in file names.
func NewID(now time.Time) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("%013x%s", now.UnixMicro(), hex.EncodeToString(b[:]))
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Put writes e durably into queue/ (or quarantine/ when quarantine is
// true) and returns its id. e.ID and e.ReceivedAt are set when empty; a
// zero NextAttempt makes the entry due at once. When Put returns nil the
// entry is on stable storage. Putting an id that is queued replaces the
// entry; a claim on it stays with its holder.
func (s *Spool) Put(e *Entry, quarantine bool) (string, error) {
	id, _, err := s.PutMessage(e, quarantine, nil)
	return id, err
}

// PutMessage is Put with the message's bytes written by msg instead of
// taken from e.Message (which it leaves alone), so that a caller holding
// the message in pieces never builds it whole: msg.WriteTo streams into
// the file. It returns the message's size too. With msg nil it is Put.
func (s *Spool) PutMessage(e *Entry, quarantine bool, msg io.WriterTo) (string, int64, error) {
	now := s.now()
	if e.ID == "" {
		e.ID = NewID(now)
	}
	if !validID(e.ID) {
		return "", 0, fmt.Errorf("spool: invalid id %q", e.ID)
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = now
	}
	dir := queueDir
	if quarantine {
		dir = quarantineDir
	}
	size, err := s.write(dir, e, msg)
	if err != nil {
		return "", 0, err
	}
	if !quarantine {
		s.mu.Lock()
		if m, ok := s.index[e.ID]; ok {
			// It replaced an entry: whoever holds it keeps it (and settles
			// the new content with Complete or Defer).
			m.next = e.NextAttempt
		} else {
			s.index[e.ID] = &meta{next: e.NextAttempt}
		}
		s.mu.Unlock()
		if !e.NextAttempt.After(now) {
			s.signal()
		}
	}
	return e.ID, size, nil
}

func (s *Spool) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// write stores e as dir/<id>.json atomically and durably, its message
// from msg when not nil (else e.Message), streamed (see encodeEntry). It
// returns the message's size.
func (s *Spool) write(dir string, e *Entry, msg io.WriterTo) (int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), e.ID+".*")
	if err != nil {
		return 0, fmt.Errorf("spool: write %s: %w", e.ID, err)
	}
	tmp := f.Name()
	fail := func(err error) (int64, error) {
		f.Close()
		os.Remove(tmp)
		return 0, fmt.Errorf("spool: write %s: %w", e.ID, err)
	}
	size, err := encodeEntry(f, e, msg)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	final := filepath.Join(s.root, dir, e.ID+suffix)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("spool: write %s: %w", e.ID, err)
	}
	return size, s.dirSync[dir].Sync()
}

func readEntry(path string) (*Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, filepath.Base(path))
		}
		return nil, fmt.Errorf("spool: read %s: %w", path, err)
	}
	defer f.Close()
	e, err := decodeEntry(f)
	if err != nil {
		return nil, fmt.Errorf("spool: decode %s: %w", path, err)
	}
	return e, nil
}

// Get reads the queued entry id.
func (s *Spool) Get(id string) (*Entry, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return readEntry(filepath.Join(s.root, queueDir, id+suffix))
}

// GetQuarantined reads the quarantined entry id.
func (s *Spool) GetQuarantined(id string) (*Entry, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return readEntry(filepath.Join(s.root, quarantineDir, id+suffix))
}

// Item is a queued entry as List reports it.
type Item struct {
	ID          string
	NextAttempt time.Time
	Claimed     bool
}

// List returns the queued entries, oldest id first.
func (s *Spool) List() []Item {
	s.mu.Lock()
	out := make([]Item, 0, len(s.index))
	for id, m := range s.index {
		out = append(out, Item{ID: id, NextAttempt: m.next, Claimed: m.claimed})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Item) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Quarantined lists the ids in quarantine/.
func (s *Spool) Quarantined() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, quarantineDir))
	if err != nil {
		return nil, fmt.Errorf("spool: list quarantine: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), suffix); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Claim returns up to max entries due at the spool's current time that
// nobody holds, oldest id first, and marks them held.
func (s *Spool) Claim(max int) ([]*Entry, error) {
	now := s.now()
	s.mu.Lock()
	var ids []string
	for id, m := range s.index {
		if !m.claimed && !m.next.After(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > max {
		ids = ids[:max]
	}
	for _, id := range ids {
		s.index[id].claimed = true
	}
	s.mu.Unlock()
	out := make([]*Entry, 0, len(ids))
	var errs []error
	for _, id := range ids {
		e, err := s.Get(id)
		if err != nil {
			s.Release(id)
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// NextDue returns the earliest NextAttempt of the entries nobody holds.
func (s *Spool) NextDue() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best time.Time
	found := false
	for _, m := range s.index {
		if !m.claimed && (!found || m.next.Before(best)) {
			best, found = m.next, true
		}
	}
	return best, found
}

func (s *Spool) held(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.index[id]; !ok || !m.claimed {
		return fmt.Errorf("%w: %s", ErrNotHeld, id)
	}
	return nil
}

// Release gives a claimed entry back without changing it.
func (s *Spool) Release(id string) {
	s.mu.Lock()
	if m, ok := s.index[id]; ok {
		m.claimed = false
	}
	s.mu.Unlock()
}

// ReleaseUntil gives a claimed entry back, not due before next. Only the
// in-memory index changes (for an attempt that could not even write its
// outcome); after a restart the entry is due at its stored time.
func (s *Spool) ReleaseUntil(id string, next time.Time) {
	s.mu.Lock()
	if m, ok := s.index[id]; ok {
		m.claimed = false
		m.next = next
	}
	s.mu.Unlock()
}

// Complete removes a claimed entry from the queue for good.
func (s *Spool) Complete(id string) error {
	if err := s.held(id); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.root, queueDir, id+suffix)); err != nil {
		return fmt.Errorf("spool: complete %s: %w", id, err)
	}
	if err := s.dirSync[queueDir].Sync(); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.index, id)
	s.mu.Unlock()
	return nil
}

// Defer writes back a claimed entry (its Delivered, Attempts, LastError
// as the caller updated them) to be due again at next, and releases it.
func (s *Spool) Defer(e *Entry, next time.Time) error {
	if err := s.held(e.ID); err != nil {
		return err
	}
	e.NextAttempt = next
	if _, err := s.write(queueDir, e, nil); err != nil {
		return err
	}
	s.mu.Lock()
	s.index[e.ID] = &meta{next: next}
	s.mu.Unlock()
	return nil
}

// Update writes back a claimed entry's progress (Delivered) and keeps it
// claimed.
func (s *Spool) Update(e *Entry) error {
	if err := s.held(e.ID); err != nil {
		return err
	}
	_, err := s.write(queueDir, e, nil)
	return err
}

// Quarantine moves a claimed entry to quarantine/ with reason.
func (s *Spool) Quarantine(e *Entry, reason string) error {
	if err := s.held(e.ID); err != nil {
		return err
	}
	e.Reason = reason
	if _, err := s.write(quarantineDir, e, nil); err != nil {
		return err
	}
	return s.Complete(e.ID)
}

// Backoff returns the delay before attempt number attempts+1: base
// doubled per attempt, capped at max.
func Backoff(attempts int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
