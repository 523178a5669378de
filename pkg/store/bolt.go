package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the bbolt file. Every value starts with the record's expiry
// (microseconds since the epoch, big-endian) so the sweeper can drop it
// without knowing its shape.
var (
	bucketTriplet = []byte("greylist")
	bucketNetwork = []byte("greylist_network")
	bucketGCRA    = []byte("gcra")
	bucketLease   = []byte("lease")
	allBuckets    = [][]byte{bucketTriplet, bucketNetwork, bucketGCRA, bucketLease}
)

// BoltOptions configure a bbolt store.
type BoltOptions struct {
	// Path of the database file; its directory is created.
	Path string
	// LockTimeout bounds the wait for the file lock another process holds
	// (default 1s).
	LockTimeout time.Duration
	// SweepInterval is how often expired records are removed (default
	// 10m; negative: never, call Sweep yourself).
	SweepInterval time.Duration
	// Now tells the sweeper the time (the plugin's clock).
	Now func() time.Time
}

// boltFile is the embedded store: one bbolt file, one writer at a time, so
// every primitive runs inside a write transaction. A single writer
// goroutine commits them (group commit): a lone caller is committed at
// once, and callers that arrive while a commit is running share the next
// transaction and its fsync. (bolt.DB.Batch would make a lone caller wait
// its 10ms batch delay.)
type boltFile struct {
	db   *bolt.DB
	now  func() time.Time
	ops  chan *boltOp
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// boltOp is one primitive waiting for the writer.
type boltOp struct {
	fn   func(tx *bolt.Tx) error
	done chan error
}

// maxGroup bounds how many primitives share one write transaction.
const maxGroup = 256

// openBoltFile opens (creating when missing) the bbolt store at o.Path and
// starts its sweeper.
func openBoltFile(o BoltOptions) (*boltFile, error) {
	if o.Path == "" {
		return nil, errors.New("bolt store: no path")
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("bolt store: create directory of %s: %w", o.Path, err)
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: o.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("bolt store: open %s: %w", o.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt store: create buckets in %s: %w", o.Path, err)
	}
	s := &boltFile{db: db, now: o.Now, ops: make(chan *boltOp), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	if o.SweepInterval > 0 {
		s.wg.Add(1)
		go s.sweeper(o.SweepInterval)
	}
	return s, nil
}

func (s *boltFile) sweeper(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.Sweep(context.Background(), s.now())
		}
	}
}

// sweepBatch bounds how many records one sweep transaction deletes, so the
// sweeper never holds the write lock for long.
const sweepBatch = 1000

// Sweep deletes every record that expired at or before now and returns how
// many it deleted.
func (s *boltFile) Sweep(ctx context.Context, now time.Time) (int, error) {
	cut := micros(now)
	total := 0
	for _, name := range allBuckets {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n := 0
			err := s.db.Update(func(tx *bolt.Tx) error {
				c := tx.Bucket(name).Cursor()
				for k, v := c.First(); k != nil && n < sweepBatch; k, v = c.Next() {
					if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) <= cut {
						if err := c.Delete(); err != nil {
							return err
						}
						n++
					}
				}
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("bolt store: sweep %s: %w", name, err)
			}
			total += n
			if n < sweepBatch {
				break
			}
		}
	}
	return total, nil
}

// writer commits the queued primitives, as many as are waiting (up to
// maxGroup) per transaction.
func (s *boltFile) writer() {
	defer s.wg.Done()
	for {
		var group []*boltOp
		select {
		case <-s.stop:
			return
		case op := <-s.ops:
			group = append(group, op)
		}
	more:
		for len(group) < maxGroup {
			select {
			case op := <-s.ops:
				group = append(group, op)
			default:
				break more
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, op := range group {
				if err := op.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil || len(group) == 1 {
			for _, op := range group {
				op.done <- err
			}
			continue
		}
		// One failed and took the group down: run each alone so the
		// failure is its own.
		for _, op := range group {
			op.done <- s.db.Update(op.fn)
		}
	}
}

// update runs fn in a write transaction, possibly shared with concurrent
// callers; fn must only touch the transaction and its own results, and
// set them afresh each time it runs.
func (s *boltFile) update(ctx context.Context, what string, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt store: %s: %w", what, err)
	}
	op := &boltOp{fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- op:
	case <-s.stop:
		return fmt.Errorf("bolt store: %s: %w", what, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("bolt store: %s: %w", what, ctx.Err())
	}
	// Once queued the op is committed or failed; wait for which.
	if err := <-op.done; err != nil {
		return fmt.Errorf("bolt store: %s: %w", what, err)
	}
	return nil
}

func putInts(vals ...int64) []byte {
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.BigEndian.PutUint64(b[8*i:], uint64(v))
	}
	return b
}

// getInts decodes n int64s; ok is false when v is too short.
func getInts(v []byte, n int) ([]int64, bool) {
	if len(v) < 8*n {
		return nil, false
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
	}
	return out, true
}

// Greylist implements Store. The logic is the same as greylistScript's.
func (s *boltFile) Greylist(ctx context.Context, req GreylistRequest) (GreylistResult, error) {
	var res GreylistResult
	now := micros(req.Now)
	delay, window, expire := req.Delay.Microseconds(), req.RetryWindow.Microseconds(), req.Expire.Microseconds()
	err := s.update(ctx, "greylist check", func(tx *bolt.Tx) error {
		res = GreylistResult{}
		nets, trips := tx.Bucket(bucketNetwork), tx.Bucket(bucketTriplet)
		nkey, tkey := []byte(req.Network), []byte(req.Triplet)
		var netCount int64
		if req.AutoAllowAfter > 0 {
			// network record: expiry, count, last
			if v, ok := getInts(nets.Get(nkey), 3); ok && now <= v[2]+expire {
				netCount = v[1]
			}
			if netCount >= int64(req.AutoAllowAfter) {
				res = GreylistResult{Status: GreylistAutoAllowed, NetworkPasses: int(netCount)}
				return nets.Put(nkey, putInts(now+expire, netCount, now))
			}
		}
		// triplet record: expiry, first, last, passed
		if v, ok := getInts(trips.Get(tkey), 4); ok {
			first, last, passed := v[1], v[2], v[3] == 1
			switch {
			case passed && now <= last+expire:
				res = GreylistResult{Status: GreylistKnown, FirstSeen: fromMicros(first), NetworkPasses: int(netCount)}
				return trips.Put(tkey, putInts(now+expire, first, now, 1))
			case !passed && now < first+delay:
				res = GreylistResult{Status: GreylistEarly, FirstSeen: fromMicros(first), NetworkPasses: int(netCount)}
				return nil
			case !passed && now <= first+window:
				if req.AutoAllowAfter > 0 {
					netCount++
					if err := nets.Put(nkey, putInts(now+expire, netCount, now)); err != nil {
						return err
					}
				}
				res = GreylistResult{Status: GreylistPassed, FirstSeen: fromMicros(first), NetworkPasses: int(netCount)}
				return trips.Put(tkey, putInts(now+expire, first, now, 1))
			}
		}
		res = GreylistResult{Status: GreylistNew, FirstSeen: req.Now, NetworkPasses: int(netCount)}
		return trips.Put(tkey, putInts(now+window, now, now, 0))
	})
	return res, err
}

// Take implements Store with GCRA: the record holds the theoretical
// arrival time (TAT) of the next event.
func (s *boltFile) Take(ctx context.Context, key string, at time.Time, r Rate) (TakeResult, error) {
	interval, burst, err := r.params()
	if err != nil {
		return TakeResult{}, fmt.Errorf("bolt store: take %s: %w", key, err)
	}
	var res TakeResult
	now := micros(at)
	err = s.update(ctx, "rate take", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGCRA)
		tat := now
		if v, ok := getInts(b.Get([]byte(key)), 2); ok && v[1] > now {
			tat = v[1]
		}
		newTAT := tat + interval
		allowAt := newTAT - burst*interval
		if now < allowAt {
			res = TakeResult{RetryAfter: time.Duration(allowAt-now) * time.Microsecond}
			return nil
		}
		res = TakeResult{Allowed: true, Remaining: int((now - allowAt) / interval)}
		return b.Put([]byte(key), putInts(newTAT, newTAT))
	})
	return res, err
}

type lease struct {
	expiry int64
	holder string
}

func decodeLeases(v []byte) []lease {
	var ls []lease
	for p := 8; p+10 <= len(v); {
		exp := int64(binary.BigEndian.Uint64(v[p:]))
		n := int(binary.BigEndian.Uint16(v[p+8:]))
		p += 10
		if p+n > len(v) {
			break
		}
		ls = append(ls, lease{exp, string(v[p : p+n])})
		p += n
	}
	return ls
}

func encodeLeases(ls []lease) []byte {
	var b bytes.Buffer
	var max int64
	for _, l := range ls {
		max = maxInt(max, l.expiry)
	}
	b.Write(putInts(max))
	for _, l := range ls {
		b.Write(putInts(l.expiry))
		b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(l.holder))))
		b.WriteString(l.holder)
	}
	return b.Bytes()
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// maxHolder bounds a lease holder's name (it is stored with a 16-bit length).
const maxHolder = 1024

// Acquire implements Store.
func (s *boltFile) Acquire(ctx context.Context, key, holder string, limit int, leaseFor time.Duration, at time.Time) (AcquireResult, error) {
	if len(holder) > maxHolder || holder == "" {
		return AcquireResult{}, fmt.Errorf("bolt store: acquire %s: holder name must have 1 to %d bytes", key, maxHolder)
	}
	var res AcquireResult
	now := micros(at)
	err := s.update(ctx, "acquire lease", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLease)
		var live []lease
		found := false
		for _, l := range decodeLeases(b.Get([]byte(key))) {
			if l.expiry <= now {
				continue
			}
			if l.holder == holder {
				found = true
				l.expiry = now + leaseFor.Microseconds()
			}
			live = append(live, l)
		}
		if !found {
			if len(live) >= limit {
				res = AcquireResult{Held: len(live)}
				return nil
			}
			live = append(live, lease{now + leaseFor.Microseconds(), holder})
		}
		res = AcquireResult{Acquired: true, Held: len(live)}
		return b.Put([]byte(key), encodeLeases(live))
	})
	return res, err
}

// Release implements Store.
func (s *boltFile) Release(ctx context.Context, key, holder string) error {
	return s.update(ctx, "release lease", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLease)
		ls := decodeLeases(b.Get([]byte(key)))
		kept := ls[:0]
		for _, l := range ls {
			if l.holder != holder {
				kept = append(kept, l)
			}
		}
		if len(kept) == 0 {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), encodeLeases(kept))
	})
}

// Ping implements Store: a read transaction.
func (s *boltFile) Ping(ctx context.Context) error {
	if err := s.db.View(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("bolt store: ping: %w", err)
	}
	return nil
}

// close stops the sweeper and closes the file; safe to call twice.
func (s *boltFile) close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if e := s.db.Close(); e != nil {
			err = fmt.Errorf("bolt store: close: %w", e)
		}
	})
	return err
}
